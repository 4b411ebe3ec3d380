"""Channel settings (management API, Bearer secret key): read, replace, change one channel,
and the settings page's "test" button.

Secrets never leave the server: GET shows them as ``"***"``, and a write that sends
``"***"`` back keeps the stored value, so a page can show the configuration, let the
operator change the port, and send the whole thing back. Every write is validated and
every backend is built before anything is stored; a bad field is answered 422 naming it
(``email.port``). Running dispatchers pick the change up within seconds. Each change is
written to the audit log (one entry per channel changed, never a setting's value), and so
is each test; the settings page does the same through ``messaging.channel_settings``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from rapport.api.audit_key import record_key_change
from rapport.api.auth import require_secret_key
from rapport.api.errors import ApiError
from rapport.errors import InvalidInput
from rapport.messaging.backends import ChannelNotConfigured
from rapport.messaging.channel_config import (
    CHANNEL_NAMES,
    ChannelsConfig,
    load_channels,
    parse_channels,
    redacted,
    with_section,
)
from rapport.messaging.channel_settings import (
    DEFAULT_TEST_SUBJECT,
    DEFAULT_TEST_TEXT,
    audit_details_of_test,
    change_channels,
    send_test,
)
from rapport.messaging.channels.base import SendResult
from rapport.store.engine import writing


def _errors(request: Request) -> Iterator[None]:
    try:
        yield
    except InvalidInput as exc:
        raise ApiError(422, str(exc), exc.problems) from None
    except ChannelNotConfigured as exc:
        raise ApiError(409, str(exc)) from None


router = APIRouter(
    prefix="/api/channels",
    tags=["channels"],
    dependencies=[Depends(require_secret_key), Depends(_errors)],
)


class TestMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # An email address, E.164 phone, push subscription JSON or token, chat id or URL.
    to: str = Field(min_length=1, max_length=4000)
    subject: str = Field(DEFAULT_TEST_SUBJECT, max_length=500)
    text: str = Field(DEFAULT_TEST_TEXT, max_length=4000)


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _channel(channel: str) -> str:
    if channel not in CHANNEL_NAMES:
        raise ApiError(404, f"no channel {channel!r} (one of {', '.join(CHANNEL_NAMES)})")
    return channel


def _store(request: Request, change: Callable[[ChannelsConfig], ChannelsConfig]) -> Response:
    """Validate and store a configuration made from the stored one, with an audit entry per
    changed channel in the same transaction, then tell dispatchers."""
    app = request.app
    with writing(app.state.engine) as conn:
        done = change_channels(conn, change, app.state.clock.now())
        for action, channel, details in done.audit_entries():
            record_key_change(conn, request, action, "channel", channel, details)
    dispatcher = getattr(app.state, "dispatcher", None)
    if dispatcher is not None:
        dispatcher.reload_soon()
    return _json(redacted(done.after))


def send_result(result: SendResult) -> dict[str, Any]:
    return {
        "message_id": result.message_id,
        "status": result.status,
        "provider_id": result.provider_id,
        "error": result.error,
    }


@router.get("")
def get_channels(request: Request) -> Response:
    """The configuration with secrets as "***"; PUT it back as it is to keep them."""
    with request.app.state.engine.connect() as conn:
        return _json(redacted(load_channels(conn).config))


@router.put("")
def put_channels(request: Request, body: dict[str, Any] = Body(...)) -> Response:
    """Replace the whole configuration; a channel left out is no longer configured."""
    return _store(request, lambda stored: parse_channels(body, stored))


@router.patch("/{channel}")
def patch_channel(request: Request, channel: str, body: dict[str, Any] = Body(...)) -> Response:
    """Change one channel: the fields given are laid over the stored section (a section
    naming another ``backend`` replaces it)."""
    _channel(channel)
    return _store(request, lambda stored: with_section(stored, channel, body))


@router.delete("/{channel}")
def delete_channel(request: Request, channel: str) -> Response:
    """Stop delivering on a channel: its messages wait in the outbox until it is set again."""
    _channel(channel)
    return _store(request, lambda stored: with_section(stored, channel, None))


@router.post("/{channel}/test")
def test_channel(request: Request, channel: str, body: TestMessage) -> Response:
    """Send one message now through the stored configuration (not through the outbox) and
    answer what the provider said."""
    _channel(channel)
    with request.app.state.engine.connect() as conn:
        config = load_channels(conn).config
    result = send_test(config, channel, body.to, body.subject, body.text)
    with writing(request.app.state.engine) as conn:
        details = audit_details_of_test(body.to, result)
        record_key_change(conn, request, "channel.test", "channel", channel, details)
    return _json(send_result(result))
