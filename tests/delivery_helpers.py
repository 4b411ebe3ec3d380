"""What the delivery tests share: a backend that fails on purpose, and outbox shortcuts."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from rapport.messaging.channels.base import Backend, OutgoingMessage, SendResult
from rapport.messaging.outbox import QueuedMessage, enqueue, get_message
from rapport.store.engine import writing


class FlakyBackend(Backend):
    """A real backend whose provider is down while ``down`` is set: every send fails.

    It counts every message it was handed (``calls``) and keeps the ones it accepted
    (``accepted``), so tests see what reached the provider.
    """

    def __init__(self, channel: str, *, down: bool = False, fail_first: int = 0) -> None:
        self.channel = channel
        self.down = down
        self.fail_first = fail_first
        self.calls: list[str] = []
        self.accepted: list[OutgoingMessage] = []
        self._lock = threading.Lock()

    async def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        results = []
        with self._lock:
            for msg in messages:
                self.calls.append(msg.id)
                if self.down or self.fail_first > 0:
                    self.fail_first = max(0, self.fail_first - 1)
                    results.append(SendResult(msg.id, "failed", error="503 try later"))
                else:
                    self.accepted.append(msg)
                    results.append(SendResult(msg.id, "sent", provider_id=f"p-{msg.id}"))
        return results


def message(key: str, customer_id: int | None = None, **kw: Any) -> QueuedMessage:
    options: dict[str, Any] = {
        "channel": "email",
        "recipient": f"{key}@example.com",
        "body_text": "Hello",
        "subject": "Hi",
    }
    options.update(kw)
    return QueuedMessage(idempotency_key=key, customer_id=customer_id, **options)


def put(engine: sa.Engine, now: Any, *messages: QueuedMessage) -> list[Any]:
    with writing(engine) as conn:
        return enqueue(conn, list(messages), now)


def row(engine: sa.Engine, key: str) -> dict[str, Any]:
    with engine.connect() as conn:
        found = get_message(conn, key)
    assert found is not None, key
    return found
