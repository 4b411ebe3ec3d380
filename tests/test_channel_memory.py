"""The in-memory backend: what tests and the demo send through."""

from __future__ import annotations

import asyncio

import pytest

from rapport.messaging.channels.base import InMemoryBackend, OutgoingMessage


def test_keeps_messages_and_rejects_named_recipients():
    backend = InMemoryBackend("email", reject=["bounce@example.com"])
    sent = asyncio.run(
        backend.send(
            [
                OutgoingMessage("m1", "email", "ann@example.com", "Hi", subject="Hello"),
                OutgoingMessage("m2", "email", "bounce@example.com", "Hi"),
            ]
        )
    )
    assert [(r.message_id, r.status) for r in sent] == [("m1", "sent"), ("m2", "rejected")]
    assert [m.to for m in backend.outbox] == ["ann@example.com"]


def test_unknown_channel_is_refused():
    with pytest.raises(ValueError, match="unknown channel"):
        InMemoryBackend("fax")
