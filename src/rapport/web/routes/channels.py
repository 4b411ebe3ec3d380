"""Settings → Channels (``manage_channels``): each channel's backend and settings with
secrets masked, the last test, editing a channel, stopping it, and the Test button.

Saving and removing go through ``messaging.channel_settings.change_channels`` and the
test through ``send_test`` — what ``PUT``/``DELETE /api/channels`` and
``POST /api/channels/{channel}/test`` call — with the audit entry (``channel.update``,
``channel.remove``, ``channel.test``) in the same transaction. The "last test" shown per
channel is the newest ``channel.test`` entry, whichever door it came through. Forms are
in ``web/channel_forms.py``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query
from fastapi.responses import RedirectResponse, Response

from rapport.access import audit
from rapport.access.roles import Permission
from rapport.errors import InvalidInput, Problem
from rapport.messaging.backends import ChannelNotConfigured
from rapport.messaging.channel_config import (
    CHANNEL_NAMES,
    ChannelsConfig,
    load_channels,
    with_section,
)
from rapport.messaging.channel_settings import audit_details_of_test, change_channels, send_test
from rapport.store.engine import writing
from rapport.web import channel_forms as forms
from rapport.web.context import NotFound, Page, render, require
from rapport.web.i18n import N_

router = APIRouter(include_in_schema=False)

MANAGE = Permission.MANAGE_CHANNELS
NOT_CONFIGURED = N_("This channel is not configured: save its settings first.")
TO_REQUIRED = N_("Say where the test goes.")
CONFIRM_REMOVE = N_("Tick the box to confirm.")
DONE = {
    "saved": N_("The settings were saved; sending picks them up within seconds."),
    "removed": N_(
        "The channel was removed; its messages wait in the outbox until it is set again."
    ),
}


def _channel(channel: str) -> str:
    if channel not in CHANNEL_NAMES:
        raise NotFound(f"channel {channel}")
    return channel


def _config(page: Page) -> ChannelsConfig:
    with page.engine.connect() as conn:
        return load_channels(conn).config


def _last_tests(page: Page) -> dict[str, audit.Entry]:
    with page.engine.connect() as conn:
        found = {
            c: audit.entries(
                conn, limit=1, action="channel.test", object_type="channel", object_id=c
            )
            for c in CHANNEL_NAMES
        }
    return {c: rows[0] for c, rows in found.items() if rows}


def _list(
    page: Page,
    *,
    test_problems: dict[str, list[Problem]] | None = None,
    test_to: dict[str, str] | None = None,
    done: str = "",
    tested: str = "",
    status: int = 200,
) -> Response:
    config = _config(page)
    channels = [
        {
            "name": c,
            "backend": getattr(getattr(config, c), "backend", None),
            "settings": forms.summary(config, c),
        }
        for c in CHANNEL_NAMES
    ]
    return render(
        page,
        "channels.html",
        {
            "channels": channels,
            "last_tests": _last_tests(page),
            "labels": forms.CHANNEL_LABELS,
            "backend_labels": forms.BACKEND_LABELS,
            "targets": forms.TEST_TARGETS,
            "test_status": forms.TEST_STATUS,
            "test_problems": test_problems or {},
            "test_to": test_to or {},
            "done": DONE.get(done),
            "tested": tested if tested in CHANNEL_NAMES else "",
        },
        status=status,
    )


@router.get("/settings/channels")
def channels_page(
    done: str = Query("", max_length=20),
    tested: str = Query("", max_length=20),
    page: Page = Depends(require(MANAGE)),
) -> Response:
    return _list(page, done=done, tested=tested)


def _editor(page: Page, form: forms.ChannelForm, status: int = 200) -> Response:
    return render(
        page,
        "channel_edit.html",
        {
            "form": form,
            "label": forms.CHANNEL_LABELS[form.channel],
            "backends": list(forms.backends_of(form.channel)),
            "backend_labels": forms.BACKEND_LABELS,
            "algorithms": forms.DKIM_ALGORITHMS,
            "stored_backend": getattr(getattr(_config(page), form.channel), "backend", None),
        },
        status=status,
    )


def _backend(channel: str, wanted: str, config: ChannelsConfig) -> str:
    choices = forms.backends_of(channel)
    if wanted in choices:
        return wanted
    stored = getattr(getattr(config, channel), "backend", None)
    return str(stored) if stored in choices else next(iter(choices))


@router.get("/settings/channels/{channel}")
def edit_channel(
    channel: str,
    backend: str = Query("", max_length=20),
    page: Page = Depends(require(MANAGE)),
) -> Response:
    config = _config(page)
    chosen = _backend(_channel(channel), backend, config)
    return _editor(page, forms.blank_form(config, channel, chosen))


async def _read_form(page: Page = Depends(require(MANAGE))) -> Page:
    """The settings form has as many inputs as the backend has settings: read it whole."""
    page.request.state.form = await page.request.form()
    return page


def _reload_dispatchers(page: Page) -> None:
    dispatcher = getattr(page.request.app.state, "dispatcher", None)
    if dispatcher is not None:
        dispatcher.reload_soon()


@router.post("/settings/channels/{channel}")
def save_channel(channel: str, page: Page = Depends(_read_form)) -> Response:
    """Check the form with the API's model, keep stored secrets left empty, store (422 with
    each problem beside its input, nothing stored)."""
    sent = {k: v for k, v in page.request.state.form.items() if isinstance(v, str)}
    config = _config(page)
    backend = _backend(_channel(channel), sent.get("backend", ""), config)
    now = page.clock.now()
    rows: list[int] = []
    try:
        with writing(page.engine) as conn:
            done = change_channels(
                conn, lambda stored: forms.apply_form(stored, channel, backend, sent, rows), now
            )
            for action, name, details in done.audit_entries():
                audit.record(conn, page.actor, action, "channel", name, now, details)
    except InvalidInput as exc:
        shown = forms.refilled(config, channel, backend, sent)
        shown.problems = forms.place(exc.problems, channel, rows)
        return _editor(page, shown, status=422)
    _reload_dispatchers(page)
    return RedirectResponse(f"/settings/channels?done=saved#channel-{channel}", status_code=303)


@router.post("/settings/channels/{channel}/remove")
def remove_channel(
    channel: str,
    confirm: Annotated[str, Form(max_length=10)] = "",
    page: Page = Depends(require(MANAGE)),
) -> Response:
    """Stop delivering on the channel, as ``DELETE /api/channels/{channel}``."""
    _channel(channel)
    if not confirm:
        problems = {channel: [Problem("confirm", CONFIRM_REMOVE)]}
        return _list(page, test_problems=problems, status=422)
    now = page.clock.now()
    with writing(page.engine) as conn:
        done = change_channels(conn, lambda stored: with_section(stored, channel, None), now)
        for action, name, details in done.audit_entries():
            audit.record(conn, page.actor, action, "channel", name, now, details)
    _reload_dispatchers(page)
    return RedirectResponse("/settings/channels?done=removed", status_code=303)


@router.post("/settings/channels/{channel}/test")
def test_channel(
    channel: str,
    to: Annotated[str, Form(max_length=4000)] = "",
    page: Page = Depends(require(MANAGE)),
) -> Response:
    """Send one message now through the stored settings; the answer is shown as the
    channel's last test (an audit entry, like every test through the API)."""
    _channel(channel)
    to = to.strip()
    config = _config(page)
    problem = None
    if not to:
        problem = Problem("to", TO_REQUIRED)
    elif getattr(config, channel) is None:
        problem = Problem("to", NOT_CONFIGURED)
    if problem is not None:
        return _list(page, test_problems={channel: [problem]}, test_to={channel: to}, status=422)
    try:
        result = send_test(config, channel, to)
    except ChannelNotConfigured:  # removed since the page was read
        problems = {channel: [Problem("to", NOT_CONFIGURED)]}
        return _list(page, test_problems=problems, status=422)
    now = page.clock.now()
    with writing(page.engine) as conn:
        details: dict[str, Any] = audit_details_of_test(to, result)
        audit.record(conn, page.actor, "channel.test", "channel", channel, now, details)
    return RedirectResponse(
        f"/settings/channels?tested={channel}#channel-{channel}", status_code=303
    )
