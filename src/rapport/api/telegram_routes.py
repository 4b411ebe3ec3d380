"""Telegram: the bot's webhook, and the deep link that connects a customer's chat.

Register the webhook once with Telegram's ``setWebhook``, giving
``url=<public_url>/telegram/webhook`` and ``secret_token=<channels.telegram.webhook_secret>``;
Telegram then sends that secret in ``X-Telegram-Bot-Api-Secret-Token`` on every call,
which is how we know a call is Telegram's and not anyone who found the URL.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from rapport.api.auth import require_secret_key
from rapport.api.errors import ApiError
from rapport.customers.profile import live_id
from rapport.errors import InvalidInput, Problem
from rapport.messaging import telegram_bot as bot
from rapport.public_links import links_of
from rapport.store.engine import writing

router = APIRouter(tags=["telegram"])

MAX_BODY = 256 * 1024  # an Update with a long message and its entities stays far below
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_NOT_CONFIGURED = "Telegram is not configured: set channels.telegram with the telegram backend"


def _config(request: Request) -> Any:
    with request.app.state.engine.connect() as conn:
        config = bot.telegram_config(conn)
    if config is None:
        raise ApiError(404, _NOT_CONFIGURED)
    return config


def _update(raw: bytes) -> bot.Update:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"body: malformed JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body: must be a JSON object (a Telegram Update)")
    try:
        return bot.Update.model_validate(body)
    except ValidationError as exc:
        raise InvalidInput(
            [
                Problem(".".join(str(p) for p in e["loc"]), e["msg"].removeprefix("Value error, "))
                for e in exc.errors()
            ]
        ) from None


@router.post("/telegram/webhook")
async def webhook(request: Request) -> Response:
    """Telegram's Update. The reply is the response itself: a Bot API call
    (`{"method": "sendMessage", ...}`) that Telegram executes; an empty 200 when there is
    nothing to say."""
    config = await run_in_threadpool(_config, request)
    if not bot.secret_matches(config, request.headers.get(SECRET_HEADER)):
        raise ApiError(401, f"{SECRET_HEADER}: missing or wrong")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError(413, f"body is larger than the limit of {MAX_BODY} bytes")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ApiError(413, f"body is larger than the limit of {MAX_BODY} bytes")
    update = _update(raw)
    links = links_of(request.app)
    pipeline = request.app.state.pipeline

    def handle() -> bot.BotAnswer:
        with writing(request.app.state.engine) as conn:
            answer = bot.handle_update(
                conn, update, links, config.bot_username, request.app.state.clock.now()
            )
            if answer.events:
                pipeline.record_many(conn, answer.events)
        return answer

    answer = await run_in_threadpool(handle)
    if answer.reply is None:
        return Response(status_code=200)
    return Response(orjson.dumps(answer.reply), media_type="application/json")


@router.get(
    "/api/customers/{customer_id}/telegram-link",
    tags=["customers"],
    dependencies=[Depends(require_secret_key)],
)
def telegram_link(request: Request, customer_id: int) -> dict[str, str]:
    """The deep link (`https://t.me/<bot>?start=<signed payload>`) that connects this
    customer's Telegram chat to their card when they press Start; show it in their account
    or send it by e-mail. The payload is signed, so it cannot be forged for another id."""
    config = _config(request)
    with request.app.state.engine.connect() as conn:
        cid = live_id(conn, customer_id)
    if cid is None:
        raise ApiError(404, f"customer {customer_id} does not exist")
    return {"url": bot.start_link(config.bot_username, links_of(request.app), cid)}
