"""Web push against a local fake push service over real HTTP.

The fake does what a real push service and browser do between them: it checks the VAPID
Authorization header (RFC 8292: an ES256 JWT for this origin, signed by the key it names)
and decrypts the aes128gcm body with the subscription's private key (RFC 8291), so the
test proves the browser would read the payload we meant.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import http_ece
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rapport.clock import SimulatedClock
from rapport.messaging.channels.base import OutgoingMessage
from rapport.messaging.channels.webpush import WebPushBackend, generate_vapid_keys
from tests.channel_fakes import serve

SUBJECT = "mailto:ops@shop.example"
NOW = datetime.now(UTC)  # the fake checks exp against real time, as a push service would


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class Browser:
    """A subscribed browser: its ECDH key pair and auth secret, as PushManager makes them."""

    key: ec.EllipticCurvePrivateKey
    auth: bytes

    @classmethod
    def new(cls) -> Browser:
        return cls(ec.generate_private_key(ec.SECP256R1()), os.urandom(16))

    def subscription(self, endpoint: str) -> str:
        public = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        keys = {"p256dh": _b64e(public), "auth": _b64e(self.auth)}
        return json.dumps({"endpoint": endpoint, "expirationTime": None, "keys": keys})

    def decrypt(self, body: bytes) -> bytes:
        return http_ece.decrypt(
            body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
        )


def check_vapid(header: str, origin: str) -> str:
    """Verify a ``vapid t=<jwt>,k=<key>`` header; returns the public key or raises."""
    scheme, _, params = header.partition(" ")
    assert scheme == "vapid"
    parts = dict(p.split("=", 1) for p in params.split(","))
    signing_input, _, signature = parts["t"].rpartition(".")
    head_b64, claims_b64 = signing_input.split(".")
    assert json.loads(_b64d(head_b64)) == {"typ": "JWT", "alg": "ES256"}
    claims = json.loads(_b64d(claims_b64))
    assert claims["aud"] == origin
    assert claims["sub"] == SUBJECT
    assert NOW.timestamp() < claims["exp"] <= NOW.timestamp() + 86400 + 60
    raw = _b64d(signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _b64d(parts["k"]))
    key.verify(der, signing_input.encode(), ec.ECDSA(hashes.SHA256()))  # raises if forged
    return parts["k"]


@dataclass
class Delivered:
    subscription: str
    vapid_key: str
    headers: dict[str, str]
    body: bytes


@pytest.fixture
def push_service() -> Iterator[tuple[str, list[Delivered]]]:
    """Subscription ids choose the answer: gone 410, missing 404, busy 429, oops 500."""
    delivered: list[Delivered] = []

    async def push(request: Request) -> Response:
        sid = request.path_params["sid"]
        origin = f"{request.url.scheme}://{request.url.netloc}"
        try:
            key = check_vapid(request.headers.get("authorization", ""), origin)
        except (AssertionError, KeyError, ValueError, InvalidSignature) as exc:
            return JSONResponse({"reason": f"bad VAPID: {exc!r}"}, status_code=403)
        if sid == "gone":
            return Response("unsubscribed", status_code=410)
        if sid == "missing":
            return Response("no such subscription", status_code=404)
        if sid == "busy":
            return Response("slow down", status_code=429, headers={"Retry-After": "60"})
        if sid == "oops":
            return Response("internal", status_code=500)
        body = await request.body()
        delivered.append(Delivered(sid, key, dict(request.headers), body))
        return Response(status_code=201, headers={"Location": f"{origin}/m/{len(delivered)}"})

    with serve(Starlette(routes=[Route("/push/{sid}", push, methods=["POST"])])) as url:
        yield url, delivered


def _send(backend: WebPushBackend, messages: list[OutgoingMessage]):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        try:
            return await backend.send(messages)
        finally:
            await backend.close()

    return asyncio.run(run())


def _msg(mid: str, to: str, **data: object) -> OutgoingMessage:
    return OutgoingMessage(
        mid, "webpush", to, "Your cart is waiting", subject="Back soon?", data=dict(data)
    )


def test_push_is_vapid_signed_and_readable_only_by_the_browser(push_service):  # type: ignore[no-untyped-def]
    url, delivered = push_service
    keys = generate_vapid_keys()
    ann, bob = Browser.new(), Browser.new()
    backend = WebPushBackend(keys.private_key, SUBJECT, ttl=3600)
    results = _send(
        backend,
        [
            _msg("m1", ann.subscription(f"{url}/push/ann"), url="https://shop.example/cart"),
            _msg("m2", bob.subscription(f"{url}/push/bob"), urgency="high"),
        ],
    )
    assert [r.status for r in results] == ["sent", "sent"]
    assert results[0].provider_id == f"{url}/m/1" or results[0].provider_id == f"{url}/m/2"
    by_sub = {d.subscription: d for d in delivered}
    for d in delivered:
        assert d.vapid_key == keys.public_key  # the key the browser subscribed with
        assert d.headers["content-encoding"] == "aes128gcm"
        assert d.headers["ttl"] == "3600"
        assert b"cart" not in d.body  # encrypted on the wire
    assert json.loads(ann.decrypt(by_sub["ann"].body)) == {
        "id": "m1",
        "title": "Back soon?",
        "body": "Your cart is waiting",
        "data": {"url": "https://shop.example/cart"},
    }
    assert by_sub["bob"].headers["urgency"] == "high"
    with pytest.raises(Exception):  # noqa: B017 - any failure: bob's key cannot read ann's push
        bob.decrypt(by_sub["ann"].body)
    assert len(backend._tokens) == 1  # one VAPID token for the one push service


def test_maps_push_service_answers(push_service):  # type: ignore[no-untyped-def]
    url, _ = push_service
    keys, browser = generate_vapid_keys(), Browser.new()
    results = _send(
        WebPushBackend(keys.private_key, SUBJECT),
        [
            _msg(s, browser.subscription(f"{url}/push/{s}"))
            for s in ("gone", "missing", "busy", "oops")
        ],
    )
    assert [r.status for r in results] == ["rejected", "rejected", "failed", "failed"]
    assert "subscription gone" in (results[0].error or "")
    assert "retry after 60" in (results[2].error or "")


def test_a_wrong_vapid_setup_fails_rather_than_drops_subscriptions(push_service):  # type: ignore[no-untyped-def]
    url, _ = push_service
    keys = generate_vapid_keys()
    # Our clock is two days behind: the token has already expired for the push service.
    late = WebPushBackend(keys.private_key, SUBJECT, clock=SimulatedClock(NOW - timedelta(days=2)))
    [result] = _send(late, [_msg("m", Browser.new().subscription(f"{url}/push/ann"))])
    assert result.status == "failed" and "403" in (result.error or "")


def test_broken_subscriptions_are_rejected_before_any_request(push_service):  # type: ignore[no-untyped-def]
    url, delivered = push_service
    keys = generate_vapid_keys()
    good = Browser.new().subscription(f"{url}/push/ann")
    no_keys = json.dumps({"endpoint": f"{url}/push/ann"})
    results = _send(
        WebPushBackend(keys.private_key, SUBJECT),
        [
            _msg("a", "not json"),
            _msg("b", "[1]"),
            _msg("c", json.dumps({"endpoint": "ftp://x", "keys": {"p256dh": "x", "auth": "y"}})),
            _msg("d", no_keys),
            _msg("e", good, blob="x" * 5000),
        ],
    )
    assert [r.status for r in results] == ["rejected"] * 5
    assert "not JSON" in (results[0].error or "")
    assert "p256dh" in (results[3].error or "")
    assert "over" in (results[4].error or "")
    assert delivered == []


def test_vapid_tokens_are_reused_until_near_expiry():
    keys = generate_vapid_keys()
    clock = SimulatedClock(NOW)
    backend = WebPushBackend(keys.private_key, SUBJECT, clock=clock)
    first = backend.authorization("https://push.example")
    clock.advance(timedelta(hours=10))
    assert backend.authorization("https://push.example") == first
    clock.advance(timedelta(hours=1, minutes=1))
    assert backend.authorization("https://push.example") != first
    assert backend.authorization("https://other.example") != first


def test_pem_keys_are_accepted_and_bad_configuration_is_refused():
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    WebPushBackend(pem.decode(), SUBJECT)
    key = generate_vapid_keys().private_key
    with pytest.raises(ValueError, match="not a VAPID private key"):
        WebPushBackend("not-a-key", SUBJECT)
    with pytest.raises(ValueError, match="mailto"):
        WebPushBackend(key, "ops@shop.example")
    with pytest.raises(ValueError, match="urgency"):
        WebPushBackend(key, SUBJECT, urgency="asap")
