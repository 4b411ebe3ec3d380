"""The Telegram backend against a local fake of the Bot API over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rapport.messaging.channels.base import OutgoingMessage
from rapport.messaging.channels.telegram import ButtonError, TelegramBackend, inline_keyboard
from tests.channel_fakes import Recorded, serve

TOKEN = "123456:TEST-token"


def _error(code: int, description: str, **parameters: object) -> JSONResponse:
    body: dict[str, object] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return JSONResponse(body, status_code=code)


@pytest.fixture
def bot_api() -> Iterator[tuple[str, list[Recorded]]]:
    """Chat ids choose the answer: 403 blocked, 400 not found, 429 flood, 502 proxy error."""
    received: list[Recorded] = []

    async def send_message(request: Request) -> Response:
        body = await request.body()
        received.append(Recorded(request.method, request.url.path, dict(request.headers), body))
        if request.path_params["token"] != TOKEN:
            return _error(401, "Unauthorized")
        chat = str((await request.json())["chat_id"])
        if chat == "403":
            return _error(403, "Forbidden: bot was blocked by the user")
        if chat == "400":
            return _error(400, "Bad Request: chat not found")
        if chat == "429":
            return _error(429, "Too Many Requests: retry after 30", retry_after=30)
        if chat == "migrated":
            return _error(400, "Bad Request: group chat was upgraded", migrate_to_chat_id=-100)
        if chat == "502":
            return Response("<html>Bad Gateway</html>", status_code=502)
        message = {"message_id": 1000 + len(received), "chat": {"id": chat}, "text": "..."}
        return JSONResponse({"ok": True, "result": message})

    app = Starlette(routes=[Route("/bot{token}/sendMessage", send_message, methods=["POST"])])
    with serve(app) as url:
        yield url, received


def _msg(
    mid: str, chat: str, text: str = "Your cart misses you", **data: object
) -> OutgoingMessage:
    return OutgoingMessage(mid, "telegram", chat, text, data=dict(data))


def _send(backend: TelegramBackend, messages: list[OutgoingMessage]):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        try:
            return await backend.send(messages)
        finally:
            await backend.close()

    return asyncio.run(run())


def test_sends_text_with_an_inline_keyboard(bot_api):  # type: ignore[no-untyped-def]
    url, received = bot_api
    buttons = [
        [{"text": "Open cart", "url": "https://shop.example/cart"}],
        [{"text": "Stop", "callback_data": "stop"}, {"text": "Later", "callback_data": "snooze"}],
    ]
    backend = TelegramBackend(TOKEN, base_url=url, parse_mode="HTML")
    [result] = _send(backend, [_msg("m1", "4242", buttons=buttons)])
    assert result.status == "sent" and result.provider_id == "1001"
    [request] = received
    assert request.path == f"/bot{TOKEN}/sendMessage"
    assert request.json() == {
        "chat_id": "4242",
        "text": "Your cart misses you",
        "parse_mode": "HTML",
        "reply_markup": {"inline_keyboard": buttons},
    }


def test_maps_bot_api_errors(bot_api):  # type: ignore[no-untyped-def]
    url, _ = bot_api
    results = _send(
        TelegramBackend(TOKEN, base_url=url),
        [_msg("blocked", "403"), _msg("gone", "400"), _msg("mig", "migrated"), _msg("p", "502")],
    )
    assert [(r.message_id, r.status) for r in results] == [
        ("blocked", "rejected"),
        ("gone", "rejected"),
        ("mig", "rejected"),
        ("p", "failed"),
    ]
    assert results[0].error == "403: Forbidden: bot was blocked by the user"
    assert "now chat -100" in (results[2].error or "")
    assert "502" in (results[3].error or "") and "Bad Gateway" in (results[3].error or "")


def test_flood_control_pauses_the_backend(bot_api):  # type: ignore[no-untyped-def]
    url, received = bot_api
    backend = TelegramBackend(TOKEN, base_url=url, concurrency=1)
    results = _send(backend, [_msg("a", "429"), _msg("b", "1"), _msg("c", "2")])
    assert [r.status for r in results] == ["failed"] * 3
    assert results[0].error == "rate limited: retry after 30 s"
    assert all("rate limited: retry after" in (r.error or "") for r in results[1:])
    assert len(received) == 1  # b and c never reached the API during the pause


def test_a_bad_token_is_a_failure_and_stays_out_of_errors(bot_api):  # type: ignore[no-untyped-def]
    url, _ = bot_api
    [result] = _send(TelegramBackend("999:wrong", base_url=url), [_msg("m", "1")])
    assert result.status == "failed" and result.error == "401: Unauthorized"
    [down] = _send(
        TelegramBackend(TOKEN, base_url="http://127.0.0.1:9", timeout=1), [_msg("m", "1")]
    )
    assert down.status == "failed" and TOKEN not in (down.error or "")


def test_unsendable_messages_are_rejected_before_any_request(bot_api):  # type: ignore[no-untyped-def]
    url, received = bot_api
    results = _send(
        TelegramBackend(TOKEN, base_url=url),
        [
            _msg("nochat", " "),
            _msg("empty", "1", text="  "),
            _msg("long", "1", text="x" * 4097),
            _msg("btn", "1", buttons=[{"text": "no action"}]),
        ],
    )
    assert [r.status for r in results] == ["rejected"] * 4
    assert "exactly one of url, callback_data" in (results[3].error or "")
    assert received == []


def test_flat_button_list_is_one_button_per_row():
    flat = [{"text": "A", "url": "https://a.example"}, {"text": "B", "callback_data": "b"}]
    assert inline_keyboard(flat) == [[flat[0]], [flat[1]]]


@pytest.mark.parametrize(
    ("buttons", "message"),
    [
        ([], "non-empty list"),
        ("Open", "non-empty list"),
        ([[]], "row of buttons is empty"),
        ([{"url": "https://a.example"}], "needs a text"),
        ([{"text": " ", "url": "https://a.example"}], "text is empty"),
        ([{"text": "A", "url": "https://a", "callback_data": "x"}], "exactly one"),
        ([{"text": "A", "url": "javascript:alert(1)"}], "http\\(s\\) or tg"),
        ([{"text": "A", "callback_data": "x" * 65}], "over 64 bytes"),
    ],
)
def test_malformed_buttons_say_why(buttons: object, message: str) -> None:
    with pytest.raises(ButtonError, match=message):
        inline_keyboard(buttons)
