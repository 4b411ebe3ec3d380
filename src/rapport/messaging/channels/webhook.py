"""Outgoing webhooks: a message POSTed as JSON to the recipient URL, signed with HMAC-SHA256.

The signature header is ``X-Rapport-Signature: t=<unix ts>,v1=<hex>``, the HMAC of
``"<ts>.<raw body>"`` under the shared secret. Signing the timestamp together with the body
is what lets a receiver refuse replays: a captured request stops verifying once its
timestamp is older than the receiver's tolerance (:func:`verify_signature`). Several ``v1``
values may appear, so a receiver accepts old and new secrets while rotating them.

One backend serves senders with different secrets: a message whose ``data["secret"]``
is set is signed with it instead of the backend's (an event subscription signs with its
own secret), and the secret is never part of the body. ``data["payload"]``, when set, is
posted as the whole body instead of the message envelope (an event subscription posts
the event itself). A backend made with ``secret=None`` only sends messages that bring
their own secret, and fails the others: nothing unsigned ever leaves.

Status mapping: 2xx → sent; 410 Gone → rejected (the receiver says the endpoint is
retired for good); anything else, timeouts and connection errors → failed (retried).
Redirects are not followed: a webhook URL that moved is a configuration change, and
following it would send signed data somewhere nobody configured.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from rapport.clock import Clock, SystemClock
from rapport.messaging.channels._http import HttpBackend, short
from rapport.messaging.channels.base import OutgoingMessage, SendResult

SIGNATURE_HEADER = "X-Rapport-Signature"
DEFAULT_TOLERANCE = 300  # seconds a signed request stays acceptable


class InvalidSignature(ValueError):
    """The request was not signed with our secret, or too long ago."""


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The value of the signature header for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={_digest(secret, body, timestamp)}"


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str | Sequence[str],
    header: str | None,
    body: bytes,
    now: datetime,
    tolerance: int = DEFAULT_TOLERANCE,
) -> int:
    """Check a received signature header; returns its timestamp or raises InvalidSignature.

    ``body`` must be the raw bytes as received: re-serialising parsed JSON changes them.
    A timestamp further than ``tolerance`` seconds from ``now``, in either direction, is
    refused, so a captured request cannot be replayed later.
    """
    if not header:
        raise InvalidSignature(f"missing {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise InvalidSignature("timestamp is not a number") from None
        elif key == "v1":
            candidates.append(value)
    if timestamp is None:
        raise InvalidSignature("no timestamp in signature header")
    if not candidates:
        raise InvalidSignature("no v1 signature in signature header")
    age = now.timestamp() - timestamp
    if abs(age) > tolerance:
        raise InvalidSignature(f"timestamp is {int(age)} s away from now (tolerance {tolerance} s)")
    secrets = [secret] if isinstance(secret, str) else list(secret)
    expected = [_digest(s, body, timestamp) for s in secrets]
    if not any(hmac.compare_digest(e, c) for e in expected for c in candidates):
        raise InvalidSignature("signature does not match")
    return timestamp


NO_SECRET = "no signing secret: configure the webhook channel's secret"


def envelope(msg: OutgoingMessage) -> dict[str, Any]:
    """The default body: the rendered message, its ``data`` without the signing secret."""
    return {
        "id": msg.id,
        "customer_id": msg.customer_id,
        "subject": msg.subject,
        "text": msg.body_text,
        "html": msg.body_html,
        "data": {k: v for k, v in msg.data.items() if k != "secret"},
    }


class WebhookBackend(HttpBackend):
    """POSTs each message to the URL in ``to``.

    The body carries the message id, which receivers should use to drop duplicates: the
    dispatcher retries failures, so a receiver that timed out after processing will see the
    same id again. It is also sent as ``Idempotency-Key``.
    """

    channel = "webhook"

    def __init__(
        self,
        secret: str | None,
        *,
        timeout: float = 10.0,
        concurrency: int = 10,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(timeout=timeout, concurrency=concurrency)
        if secret is not None and not secret:
            raise ValueError("a webhook secret is required: receivers verify with it")
        self.secret = secret
        self.clock = clock or SystemClock()

    async def send_one(self, msg: OutgoingMessage) -> SendResult:
        url = urlsplit(msg.to)
        if url.scheme not in ("http", "https") or not url.netloc:
            return SendResult(msg.id, "rejected", error=f"not an http(s) URL: {msg.to!r}")
        secret = msg.data.get("secret") or self.secret
        if not isinstance(secret, str) or not secret:
            return SendResult(msg.id, "failed", error=NO_SECRET)
        body = orjson.dumps(msg.data["payload"] if "payload" in msg.data else envelope(msg))
        timestamp = int(self.clock.now().timestamp())
        headers = {
            **msg.headers,
            "Content-Type": "application/json",
            "Idempotency-Key": msg.id,
            SIGNATURE_HEADER: sign(secret, body, timestamp),
        }
        response = await self.http().post(msg.to, content=body, headers=headers)
        if response.is_success:
            return SendResult(msg.id, "sent", provider_id=response.headers.get("X-Request-Id"))
        error = f"HTTP {response.status_code}: {short(response.text)}"
        if response.status_code == 410:
            return SendResult(msg.id, "rejected", error=error)
        return SendResult(msg.id, "failed", error=error)
