"""The generic HTTP SMS gateway backend against a local fake gateway over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rapport.messaging.channels.base import OutgoingMessage
from rapport.messaging.channels.sms_http import HttpSmsBackend, dig, render_template
from tests.channel_fakes import Recorded, serve

KEY = ("Authorization", "Bearer gw-key")


@pytest.fixture
def gateway() -> Iterator[tuple[str, list[Recorded]]]:
    """The last three digits of the number choose the answer: 400, 429, 500, 999 = slow."""
    received: list[Recorded] = []

    async def sms(request: Request) -> Response:
        body = await request.body()
        received.append(
            Recorded(
                request.method,
                request.url.path,
                dict(request.headers),
                body,
                dict(request.query_params),
            )
        )
        if request.headers.get("authorization") != KEY[1]:
            return JSONResponse({"error": "bad key"}, status_code=401)
        to = (await request.json())["to"] if request.method != "GET" else request.query_params["to"]
        code = str(to)[-3:]
        if code == "400":
            return JSONResponse({"error": "invalid destination"}, status_code=400)
        if code in ("429", "500"):
            return Response("busy", status_code=int(code))
        if code == "999":
            await asyncio.sleep(1)
        return JSONResponse({"messages": [{"id": f"gw-{len(received)}", "status": "queued"}]})

    routes = [Route("/v1/sms", sms, methods=["POST", "PUT", "GET"])]
    with serve(Starlette(routes=routes)) as url:
        yield url, received


def _msg(mid: str, to: str, text: str = "Code {1234}: 20% off", **data: object) -> OutgoingMessage:
    return OutgoingMessage(mid, "sms", to, text, data=dict(data))


def _send(backend: HttpSmsBackend, messages: list[OutgoingMessage]):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        try:
            return await backend.send(messages)
        finally:
            await backend.close()

    return asyncio.run(run())


def test_posts_the_template_and_reads_the_provider_id(gateway):  # type: ignore[no-untyped-def]
    url, received = gateway
    backend = HttpSmsBackend(
        f"{url}/v1/sms",
        auth_header=KEY,
        sender="Shop",
        body_template={
            "to": "{to}",
            "text": "{text}",
            "from": "{sender}",
            "meta": {"ref": "rapport-{id}", "tags": ["crm", "{id}"]},
            "flash": False,
        },
        id_path="messages.0.id",
    )
    [result] = _send(backend, [_msg("m1", "+7 916 000 0001")])
    assert result.status == "sent" and result.provider_id == "gw-1"
    [request] = received
    assert request.method == "POST" and request.headers["authorization"] == "Bearer gw-key"
    assert request.json() == {
        "to": "+79160000001",
        "text": "Code {1234}: 20% off",  # braces in the text pass through untouched
        "from": "Shop",
        "meta": {"ref": "rapport-m1", "tags": ["crm", "m1"]},
        "flash": False,
    }


def test_maps_statuses(gateway):  # type: ignore[no-untyped-def]
    url, _ = gateway
    backend = HttpSmsBackend(f"{url}/v1/sms", auth_header=KEY, id_path="messages.0.id", timeout=0.3)
    results = _send(
        backend,
        [
            _msg("ok", "+15550000001"),
            _msg("bad", "+15550000400"),
            _msg("limit", "+15550000429"),
            _msg("down", "+15550000500"),
            _msg("slow", "+15550000999"),
        ],
    )
    assert [(r.message_id, r.status) for r in results] == [
        ("ok", "sent"),
        ("bad", "rejected"),
        ("limit", "failed"),
        ("down", "failed"),
        ("slow", "failed"),
    ]
    assert "invalid destination" in (results[1].error or "")
    assert results[4].error == "timed out"


def test_bad_credentials_fail_rather_than_reject(gateway):  # type: ignore[no-untyped-def]
    url, _ = gateway
    backend = HttpSmsBackend(f"{url}/v1/sms", auth_header=("Authorization", "Bearer wrong"))
    [result] = _send(backend, [_msg("m", "+15550000001")])
    assert result.status == "failed" and "401" in (result.error or "")
    strict = HttpSmsBackend(
        f"{url}/v1/sms", auth_header=("Authorization", "x"), transient_statuses=()
    )
    [result] = _send(strict, [_msg("m", "+15550000001")])
    assert result.status == "rejected"


def test_get_gateway_with_query_string(gateway):  # type: ignore[no-untyped-def]
    url, received = gateway
    backend = HttpSmsBackend(
        f"{url}/v1/sms",
        method="GET",
        auth_header=KEY,
        body_template={"to": "{to}", "msg": "{text}", "sender": "{sender}"},
        id_path="messages.-1.id",
    )
    [result] = _send(backend, [_msg("m1", "+15550000001", sender="Promo")])
    assert result.status == "sent" and result.provider_id == "gw-1"
    assert received[0].method == "GET"
    assert received[0].query == {
        "to": "+15550000001",
        "msg": "Code {1234}: 20% off",
        "sender": "Promo",
    }


def test_missing_id_in_answer_is_still_sent(gateway):  # type: ignore[no-untyped-def]
    url, _ = gateway
    backend = HttpSmsBackend(f"{url}/v1/sms", auth_header=KEY, id_path="result.sms_id")
    [result] = _send(backend, [_msg("m1", "+15550000001")])
    assert result.status == "sent" and result.provider_id is None


def test_unsendable_messages_are_rejected_before_any_request(gateway):  # type: ignore[no-untyped-def]
    url, received = gateway
    results = _send(
        HttpSmsBackend(f"{url}/v1/sms", auth_header=KEY),
        [_msg("a", "ann@example.com"), _msg("b", "+0123456"), _msg("c", "+15550000001", text="")],
    )
    assert [r.status for r in results] == ["rejected"] * 3
    assert "not a phone number" in (results[0].error or "")
    assert received == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "DELETE"}, "POST, PUT or GET"),
        ({"method": "GET", "body_template": {"a": {"b": "{to}"}}}, "flat"),
        ({"url": "ftp://gw"}, "http\\(s\\)"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, object], message: str) -> None:
    kwargs.setdefault("url", "https://gw.example/sms")
    with pytest.raises(ValueError, match=message):
        HttpSmsBackend(**kwargs)  # type: ignore[arg-type]


def test_template_and_path_helpers():
    values = {"to": "+1555", "text": "hi", "sender": None, "id": "m1"}
    assert render_template({"n": 3, "s": "{sender}", "x": "a{sender}b"}, values) == {
        "n": 3,
        "s": None,
        "x": "ab",
    }
    doc = {"a": [{"b": 1}, {"b": 2}]}
    assert dig(doc, "a.1.b") == 2
    assert dig(doc, "a.5.b") is None
    assert dig(doc, "a.x") is None
    assert dig(None, "a") is None
