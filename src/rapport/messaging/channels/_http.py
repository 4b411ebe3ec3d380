"""What every HTTP-API backend shares: one pooled client, bounded concurrency, and the rule
that a transport error is a transient failure.

Providers answer one message per request, so a batch is sent concurrently, but never more
than ``concurrency`` requests at once: the provider's rate limits and our sockets are both
finite. The client is created on first use and dropped by ``close()``, so the backend can
be used again afterwards (and from another event loop, which a fresh client needs).
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import httpx

from rapport.messaging.channels.base import Backend, OutgoingMessage, SendResult

USER_AGENT = "Rapport/0.1"


class HttpBackend(Backend):
    def __init__(self, *, timeout: float = 10.0, concurrency: int = 10) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.timeout = timeout
        self.concurrency = concurrency
        self._client: httpx.AsyncClient | None = None

    def http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.timeout,
                headers={"User-Agent": USER_AGENT},
                follow_redirects=False,
                limits=httpx.Limits(max_connections=self.concurrency),
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(msg: OutgoingMessage) -> SendResult:
            async with gate:
                try:
                    return await self.send_one(msg)
                except httpx.TimeoutException:
                    return SendResult(msg.id, "failed", error="timed out")
                except httpx.TransportError as exc:
                    return SendResult(msg.id, "failed", error=f"connection error: {exc!r}")

        return list(await asyncio.gather(*(one(m) for m in messages)))

    @abstractmethod
    async def send_one(self, msg: OutgoingMessage) -> SendResult:
        """Send one message; transport errors may propagate, they are mapped to ``failed``."""


def json_or_none(response: httpx.Response) -> Any:
    """The response body as JSON, or None: error pages from proxies are often HTML."""
    try:
        return response.json()
    except ValueError:
        return None


def short(text: str, limit: int = 300) -> str:
    """Provider error bodies end up in results and logs; keep them readable."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
