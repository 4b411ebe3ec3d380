"""Telegram over the Bot API's ``sendMessage``, with inline keyboard buttons.

``to`` is the chat id (a number, or ``@channelname``); linking a chat to a customer is the
deep-link webhook's job, not this transport's. ``data["buttons"]`` becomes the inline
keyboard: a list of rows, each a list of buttons, or a flat list for one button per row;
a button is ``{"text": ..., "url": ...}`` or ``{"text": ..., "callback_data": ...}``.
A malformed button is the template's fault and never gets better on retry, so the message
is rejected before any request.

Status mapping follows what Telegram's answers mean for the recipient: 403 (the user
blocked the bot or left the chat) and 400 (chat not found, message unusable) → rejected;
429 → failed, and the backend stops calling the API until ``retry_after`` has passed, so
the rest of the batch fails fast instead of deepening the flood ban; 401 (a bad token)
and 5xx → failed: nothing is wrong with the recipient, the operator must fix the setup.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from rapport.messaging.channels._http import HttpBackend, json_or_none, short
from rapport.messaging.channels.base import OutgoingMessage, SendResult

DEFAULT_BASE_URL = "https://api.telegram.org"
MAX_TEXT = 4096  # characters, Telegram's limit for one message
MAX_CALLBACK_DATA = 64  # bytes


class ButtonError(ValueError):
    pass


def inline_keyboard(buttons: Any) -> list[list[dict[str, str]]]:
    """``data["buttons"]`` as Telegram's ``inline_keyboard``, or ButtonError saying why not."""
    if not isinstance(buttons, list) or not buttons:
        raise ButtonError("buttons must be a non-empty list")
    rows = buttons if all(isinstance(b, list) for b in buttons) else [[b] for b in buttons]
    keyboard = []
    for row in rows:
        if not row:
            raise ButtonError("a row of buttons is empty")
        keyboard.append([_button(b) for b in row])
    return keyboard


def _button(button: Any) -> dict[str, str]:
    if not isinstance(button, dict) or not isinstance(button.get("text"), str):
        raise ButtonError(f"a button needs a text: {button!r}")
    if not button["text"].strip():
        raise ButtonError("a button's text is empty")
    actions = [k for k in ("url", "callback_data") if k in button]
    if len(actions) != 1:
        raise ButtonError(f"a button needs exactly one of url, callback_data: {button!r}")
    action = actions[0]
    value = button[action]
    if not isinstance(value, str) or not value:
        raise ButtonError(f"a button's {action} must be a non-empty string")
    if action == "url" and not value.startswith(("https://", "http://", "tg://")):
        raise ButtonError(f"a button's url must be http(s) or tg: {value!r}")
    if action == "callback_data" and len(value.encode()) > MAX_CALLBACK_DATA:
        raise ButtonError(f"callback_data is over {MAX_CALLBACK_DATA} bytes: {value!r}")
    return {"text": button["text"], action: value}


class TelegramBackend(HttpBackend):
    channel = "telegram"

    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        parse_mode: str | None = None,
        disable_link_preview: bool = False,
        timeout: float = 10.0,
        concurrency: int = 10,
    ) -> None:
        super().__init__(timeout=timeout, concurrency=concurrency)
        if not token:
            raise ValueError("a bot token is required")
        self.token = token
        self.base_url = base_url.rstrip("/")
        self.parse_mode = parse_mode  # "HTML" or "MarkdownV2" when templates produce markup
        self.disable_link_preview = disable_link_preview
        self._paused_until = 0.0  # time.monotonic() before which we do not call the API

    async def send_one(self, msg: OutgoingMessage) -> SendResult:
        wait = self._paused_until - time.monotonic()
        if wait > 0:
            return SendResult(msg.id, "failed", error=_rate_limited(wait))
        payload: dict[str, Any] = {"chat_id": msg.to.strip(), "text": msg.body_text}
        if not payload["chat_id"]:
            return SendResult(msg.id, "rejected", error="no chat id")
        if not msg.body_text.strip():
            return SendResult(msg.id, "rejected", error="empty text")
        if len(msg.body_text) > MAX_TEXT:
            return SendResult(msg.id, "rejected", error=f"text is over {MAX_TEXT} characters")
        if "buttons" in msg.data:
            try:
                keyboard = inline_keyboard(msg.data["buttons"])
            except ButtonError as exc:
                return SendResult(msg.id, "rejected", error=str(exc))
            payload["reply_markup"] = {"inline_keyboard": keyboard}
        if self.parse_mode:
            payload["parse_mode"] = self.parse_mode
        if self.disable_link_preview:
            payload["link_preview_options"] = {"is_disabled": True}
        url = f"{self.base_url}/bot{self.token}/sendMessage"
        try:
            response = await self.http().post(url, json=payload)
        except httpx.TransportError as exc:
            # The URL holds the token: keep it out of the error text.
            kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "connection error"
            return SendResult(msg.id, "failed", error=kind)
        return self._result(msg, response)

    def _result(self, msg: OutgoingMessage, response: httpx.Response) -> SendResult:
        body = json_or_none(response)
        if isinstance(body, dict) and body.get("ok") is True:
            result = body.get("result") or {}
            message_id = result.get("message_id") if isinstance(result, dict) else None
            return SendResult(
                msg.id, "sent", provider_id=None if message_id is None else str(message_id)
            )
        status = response.status_code
        if isinstance(body, dict):
            status = int(body.get("error_code") or status)
            description = str(body.get("description") or "")
            parameters = body.get("parameters") or {}
        else:
            description, parameters = short(response.text), {}
        if status == 429:
            retry_after = float(parameters.get("retry_after") or 1)
            self._paused_until = max(self._paused_until, time.monotonic() + retry_after)
            return SendResult(msg.id, "failed", error=_rate_limited(retry_after))
        error = f"{status}: {description}"
        if "migrate_to_chat_id" in parameters:
            error += f" (the group is now chat {parameters['migrate_to_chat_id']})"
        if status in (400, 403):
            return SendResult(msg.id, "rejected", error=error)
        return SendResult(msg.id, "failed", error=error)


def _rate_limited(seconds: float) -> str:
    return f"rate limited: retry after {max(1, round(seconds))} s"
