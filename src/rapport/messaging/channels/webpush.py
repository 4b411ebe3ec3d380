"""Web push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payload encryption (RFC 8291).

``to`` is the browser's subscription as JSON, exactly what ``PushSubscription.toJSON()``
gives: ``{"endpoint": ..., "keys": {"p256dh": ..., "auth": ...}}``. The payload is
encrypted for that browser with pywebpush (so the push service, which relays it, cannot
read it) and POSTed with our own pooled HTTP client rather than pywebpush's, so one
connection pool serves every send. The decrypted payload a service worker receives is
JSON: ``{"id", "title", "body", "data"}``, where ``title`` is the message subject and
``data`` is ``message.data`` (a click URL, an icon...).

The VAPID token is signed once per push service origin and reused until an hour before it
expires (RFC 8292 caps its life at 24 hours): signing is cheap but not free, and a big
campaign hits only a handful of push services.

Status mapping: any 2xx (201 Created is the standard answer) → sent, with the ``Location``
of the created push message as the provider id; 404/410 → rejected, the subscription is
gone and should be dropped; everything else (429 with Retry-After, 5xx, 400/401/403 which
mean our VAPID setup is wrong) → failed.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02
from pywebpush import WebPusher, WebPushException

from rapport.clock import Clock, SystemClock
from rapport.messaging.channels._http import HttpBackend, short
from rapport.messaging.channels.base import OutgoingMessage, SendResult

# A push message carries at most 4096 bytes of encrypted record; aes128gcm spends 86 on
# its header, 16 on the tag and 1 on the padding delimiter.
MAX_PAYLOAD = 4096 - 86 - 16 - 1
TOKEN_LIFETIME = timedelta(hours=12)
URGENCIES = ("very-low", "low", "normal", "high")


@dataclass(frozen=True)
class VapidKeys:
    private_key: str  # base64url raw P-256 scalar: keep secret, give to WebPushBackend
    public_key: str  # base64url uncompressed point: the browser's applicationServerKey


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def generate_vapid_keys() -> VapidKeys:
    """A fresh VAPID key pair. Subscriptions are bound to the public key, so keep it."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_numbers().private_value.to_bytes(32, "big")
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return VapidKeys(_b64url(private), _b64url(public))


class WebPushBackend(HttpBackend):
    channel = "webpush"

    def __init__(
        self,
        vapid_private_key: str,
        vapid_subject: str,
        *,
        ttl: int = 86400,
        urgency: str = "normal",
        timeout: float = 10.0,
        concurrency: int = 20,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(timeout=timeout, concurrency=concurrency)
        if not vapid_subject.startswith(("mailto:", "https://")):
            raise ValueError("the VAPID subject must be a mailto: or https: URL (RFC 8292)")
        if urgency not in URGENCIES:
            raise ValueError(f"urgency must be one of {', '.join(URGENCIES)}")
        if not 0 <= ttl <= 28 * 86400:
            raise ValueError("ttl must be between 0 and 28 days")
        key = vapid_private_key.strip()
        try:
            self.vapid = (
                Vapid02.from_pem(key.encode()) if "-----BEGIN" in key else Vapid02.from_string(key)
            )
        except Exception as exc:  # py_vapid raises whatever the decoder raised
            raise ValueError(f"not a VAPID private key: {exc}") from None
        self.subject = vapid_subject
        self.ttl = ttl
        self.urgency = urgency
        self.clock = clock or SystemClock()
        self._tokens: dict[str, tuple[str, float]] = {}  # audience → (header, expires at)

    def authorization(self, audience: str) -> str:
        """The ``Authorization: vapid t=...,k=...`` value for one push service origin."""
        now = self.clock.now().timestamp()
        cached = self._tokens.get(audience)
        if cached and cached[1] - 3600 > now:
            return cached[0]
        expires = int(now + TOKEN_LIFETIME.total_seconds())
        claims = {"aud": audience, "exp": expires, "sub": self.subject}
        header = str(self.vapid.sign(claims)["Authorization"])
        self._tokens[audience] = (header, expires)
        return header

    async def send_one(self, msg: OutgoingMessage) -> SendResult:
        try:
            subscription = _subscription(msg.to)
            payload = orjson.dumps(
                {"id": msg.id, "title": msg.subject, "body": msg.body_text, "data": msg.data}
            )
            if len(payload) > MAX_PAYLOAD:
                raise ValueError(f"payload is {len(payload)} bytes, over {MAX_PAYLOAD}")
            body = WebPusher(subscription).encode(payload, "aes128gcm")["body"]
        except (ValueError, WebPushException) as exc:
            return SendResult(msg.id, "rejected", error=str(exc))
        endpoint = subscription["endpoint"]
        parts = urlsplit(endpoint)
        headers = {
            "Authorization": self.authorization(f"{parts.scheme}://{parts.netloc}"),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(self.ttl),
            "Urgency": str(msg.data.get("urgency", self.urgency)),
        }
        response = await self.http().post(endpoint, content=body, headers=headers)
        status = response.status_code
        if 200 <= status < 300:
            return SendResult(msg.id, "sent", provider_id=response.headers.get("Location"))
        error = f"HTTP {status}: {short(response.text)}"
        if "Retry-After" in response.headers:
            error += f" (retry after {response.headers['Retry-After']})"
        if status in (404, 410):
            return SendResult(msg.id, "rejected", error=f"subscription gone: {error}")
        return SendResult(msg.id, "failed", error=error)


def _subscription(raw: str) -> dict[str, Any]:
    """The subscription JSON, checked enough that a broken one is rejected, not retried."""
    try:
        sub = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError("subscription is not JSON") from None
    if not isinstance(sub, dict):
        raise ValueError("subscription is not a JSON object")
    endpoint = sub.get("endpoint")
    parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
    if parts is None or parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError("subscription has no http(s) endpoint")
    keys = sub.get("keys")
    if not isinstance(keys, dict) or not keys.get("p256dh") or not keys.get("auth"):
        raise ValueError("subscription has no p256dh and auth keys")
    return sub
