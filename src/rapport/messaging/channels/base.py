"""The one interface every channel backend implements: ``send(messages) -> results``.

A backend only transports: the outbox hands it rendered messages that already passed the
communication policy, and records what it answers. ``message.id`` is the idempotency key
(the outbox row), so a backend that supports it passes it on to the provider, and a
result always names the message it answers for.

Results say what happened, not what to do next: ``sent`` (the provider accepted it),
``failed`` (a transient problem: the dispatcher retries with backoff), ``rejected`` (a
permanent problem for this recipient: bad address, unsubscribed at the provider; no
retry). Later delivery states (delivered, opened, bounced) arrive as events.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

CHANNELS = ("email", "sms", "push", "webpush", "telegram", "webhook")
Status = Literal["sent", "failed", "rejected"]


@dataclass(frozen=True)
class OutgoingMessage:
    """A rendered message for one recipient on one channel."""

    id: str
    channel: str
    to: str  # email address, E.164 phone, device token, subscription JSON, chat id, URL
    body_text: str
    customer_id: int | None = None
    subject: str | None = None
    body_html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # channel-specific: buttons, payload


@dataclass(frozen=True)
class SendResult:
    message_id: str
    status: Status
    provider_id: str | None = None
    error: str | None = None


class Backend(ABC):
    """A transport for one channel. Backends are async: most providers are network I/O."""

    channel: str = ""

    @abstractmethod
    async def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """One result per message, in the same order."""

    async def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release connections; the backend may be used again afterwards."""


class InMemoryBackend(Backend):
    """Keeps what it is given (``outbox``), for tests and the demo; like Django's locmem.

    ``reject`` names recipients to answer ``rejected`` for, so tests can exercise the
    paths a real provider takes without a real provider.
    """

    def __init__(self, channel: str, reject: Sequence[str] = ()) -> None:
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r} (one of {', '.join(CHANNELS)})")
        self.channel = channel
        self.reject = set(reject)
        self.outbox: list[OutgoingMessage] = []
        self._lock = threading.Lock()

    async def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        results = []
        with self._lock:
            for msg in messages:
                if msg.to in self.reject:
                    results.append(SendResult(msg.id, "rejected", error="recipient rejected"))
                    continue
                self.outbox.append(msg)
                results.append(SendResult(msg.id, "sent", provider_id=f"mem-{len(self.outbox)}"))
        return results
