"""The webhook backend against a local receiver over real HTTP, and the signature helper."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rapport.clock import SimulatedClock
from rapport.messaging.channels.base import OutgoingMessage
from rapport.messaging.channels.webhook import (
    SIGNATURE_HEADER,
    InvalidSignature,
    WebhookBackend,
    sign,
    verify_signature,
)
from tests.channel_fakes import Recorded, free_port, serve

SECRET = "whsec-test"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[Recorded]]]:
    received: list[Recorded] = []

    async def hook(request: Request) -> Response:
        body = await request.body()
        received.append(Recorded(request.method, request.url.path, dict(request.headers), body))
        kind = request.path_params["kind"]
        if kind == "slow":
            await asyncio.sleep(1)
        if kind == "gone":
            return Response("endpoint retired", status_code=410)
        if kind == "boom":
            return Response("oops", status_code=500)
        if kind == "redirect":
            return Response(status_code=302, headers={"Location": "/hook/ok"})
        # A well-behaved receiver verifies before it trusts anything.
        try:
            verify_signature(SECRET, request.headers.get(SIGNATURE_HEADER), body, NOW)
        except InvalidSignature as exc:
            return JSONResponse({"error": str(exc)}, status_code=401)
        return JSONResponse({"ok": True}, headers={"X-Request-Id": f"rcv-{len(received)}"})

    with serve(Starlette(routes=[Route("/hook/{kind}", hook, methods=["POST"])])) as url:
        yield url, received


def _msg(mid: str, to: str, **kw: object) -> OutgoingMessage:
    return OutgoingMessage(mid, "webhook", to, "Your order shipped", customer_id=7, **kw)  # type: ignore[arg-type]


def _send(backend: WebhookBackend, messages: list[OutgoingMessage]):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        try:
            return await backend.send(messages)
        finally:
            await backend.close()

    return asyncio.run(run())


def test_posts_signed_json_and_maps_statuses(receiver):  # type: ignore[no-untyped-def]
    url, received = receiver
    backend = WebhookBackend(SECRET, clock=SimulatedClock(NOW), timeout=5)
    results = _send(
        backend,
        [
            _msg("m1", f"{url}/hook/ok", subject="Shipped", data={"order": "A-1"}),
            _msg("m2", f"{url}/hook/gone"),
            _msg("m3", f"{url}/hook/boom"),
            _msg("m4", f"{url}/hook/redirect"),
        ],
    )
    assert [(r.message_id, r.status) for r in results] == [
        ("m1", "sent"),
        ("m2", "rejected"),
        ("m3", "failed"),
        ("m4", "failed"),  # redirects are not followed
    ]
    assert results[0].provider_id and results[0].provider_id.startswith("rcv-")
    assert "410" in (results[1].error or "") and "retired" in (results[1].error or "")
    assert "500" in (results[2].error or "")
    first = next(r for r in received if r.path == "/hook/ok")
    assert first.headers["content-type"] == "application/json"
    assert first.headers["idempotency-key"] == "m1"
    assert first.headers[SIGNATURE_HEADER.lower()].startswith(f"t={int(NOW.timestamp())},v1=")
    assert first.json() == {
        "id": "m1",
        "customer_id": 7,
        "subject": "Shipped",
        "text": "Your order shipped",
        "html": None,
        "data": {"order": "A-1"},
    }
    assert len(received) == 4  # the redirect target was never requested


def test_receiver_refuses_a_stale_signature(receiver):  # type: ignore[no-untyped-def]
    url, _ = receiver
    an_hour_ago = SimulatedClock(NOW - timedelta(hours=1))
    [result] = _send(WebhookBackend(SECRET, clock=an_hour_ago), [_msg("m1", f"{url}/hook/ok")])
    assert result.status == "failed"
    assert "401" in (result.error or "") and "timestamp" in (result.error or "")


def test_timeout_and_refused_connection_are_transient(receiver):  # type: ignore[no-untyped-def]
    url, _ = receiver
    closed = f"http://127.0.0.1:{free_port()}/hook"
    results = _send(
        WebhookBackend(SECRET, timeout=0.3),
        [_msg("slow", f"{url}/hook/slow"), _msg("closed", closed)],
    )
    assert [r.status for r in results] == ["failed", "failed"]
    assert results[0].error == "timed out"
    assert "connection error" in (results[1].error or "")


def test_bad_urls_are_rejected_without_a_request(receiver):  # type: ignore[no-untyped-def]
    _, received = receiver
    results = _send(
        WebhookBackend(SECRET),
        [_msg("a", "ftp://example.com/x"), _msg("b", "not a url"), _msg("c", "")],
    )
    assert [r.status for r in results] == ["rejected"] * 3
    assert "not an http(s) URL" in (results[0].error or "")
    assert received == []


def test_backend_is_reusable_after_close(receiver):  # type: ignore[no-untyped-def]
    url, received = receiver
    backend = WebhookBackend(SECRET, clock=SimulatedClock(NOW))

    async def run() -> list[str]:
        statuses = []
        for i in range(2):
            [r] = await backend.send([_msg(f"m{i}", f"{url}/hook/ok")])
            statuses.append(r.status)
            await backend.close()
        return statuses

    assert asyncio.run(run()) == ["sent", "sent"]
    assert len(received) == 2


def test_empty_secret_is_refused():
    with pytest.raises(ValueError, match="secret is required"):
        WebhookBackend("")


# --- the verification helper -------------------------------------------------------------

BODY = b'{"id":"m1"}'
TS = int(NOW.timestamp())


def test_verify_accepts_a_fresh_signature_and_returns_its_time():
    assert verify_signature(SECRET, sign(SECRET, BODY, TS), BODY, NOW) == TS
    # within tolerance either side (clock skew between sender and receiver)
    assert verify_signature(SECRET, sign(SECRET, BODY, TS - 299), BODY, NOW) == TS - 299
    assert verify_signature(SECRET, sign(SECRET, BODY, TS + 299), BODY, NOW) == TS + 299


@pytest.mark.parametrize(
    ("header", "body", "message"),
    [
        (None, BODY, "missing"),
        ("", BODY, "missing"),
        (sign(SECRET, BODY, TS - 301), BODY, "tolerance"),
        (sign(SECRET, BODY, TS + 3600), BODY, "tolerance"),
        (sign(SECRET, BODY, TS), b'{"id":"m2"}', "does not match"),
        (sign("other-secret", BODY, TS), BODY, "does not match"),
        (f"t={TS}", BODY, "no v1"),
        ("v1=abc", BODY, "no timestamp"),
        ("t=yesterday,v1=abc", BODY, "not a number"),
        # the timestamp is signed too: moving it forward breaks the signature
        (sign(SECRET, BODY, TS - 400).replace(f"t={TS - 400}", f"t={TS}"), BODY, "does not match"),
    ],
)
def test_verify_refuses(header: str | None, body: bytes, message: str) -> None:
    with pytest.raises(InvalidSignature, match=message):
        verify_signature(SECRET, header, body, NOW)


def test_verify_during_secret_rotation():
    new = "whsec-new"
    header = sign(new, BODY, TS) + "," + sign(SECRET, BODY, TS).split(",")[1]
    assert verify_signature([SECRET], header, BODY, NOW) == TS
    assert verify_signature([new], header, BODY, NOW) == TS
    assert verify_signature(["old", new], sign(new, BODY, TS), BODY, NOW) == TS
