"""The links inside messages: open pixel, click redirect, one-click unsubscribe, preferences.

No authentication: these URLs are fetched by mail clients, image proxies and link
scanners, and opened by recipients. The signed token in the path is the whole
credential (``messaging.tracking``): a forged, altered or truncated token, or a token of
another kind, is refused with 400 before anything is read or written.

Requests that change the card never happen on GET alone: an open and a click are
recorded (that is what they report), but unsubscribing takes a POST, because link
scanners and prefetchers follow every link in a message.

The routes stay out of the OpenAPI schema: they are not an API anyone calls, only URLs
Rapport writes into its own messages (docs/tracking.md describes them).
"""

from __future__ import annotations

import base64
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from rapport.api.public_pages import (
    PAGE_HEADERS,
    channel_name,
    choose_lang,
    mask_email,
    mask_phone,
    problem_page,
    render_page,
)
from rapport.ingest.traits import CONSENT_CHANNELS
from rapport.messaging.engagement import Found, NoCustomer, message_event, survivor
from rapport.messaging.outbox import CLICKED, OPENED
from rapport.messaging.tracking import BadToken, verify
from rapport.messaging.unsubscribe import (
    PREFERENCES_SOURCE,
    change_consents,
    consent_status,
    customer_locale,
    preference_choices,
    unsubscribe,
    wanted_from_form,
)
from rapport.public_links import links_of
from rapport.store.engine import writing

router = APIRouter(tags=["tracking"], include_in_schema=False)

# The classic 43-byte transparent 1×1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
# Every fetch must reach us to be counted, so no client, proxy or CDN may keep a copy.
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, private, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}
# A form is a few checkboxes; anything far bigger is not ours.
MAX_FORM_BYTES = 16 * 1024

Form = dict[str, list[str]]


# -- tokens -----------------------------------------------------------------------------


def _parts(request: Request, kind: str, token: str, count: int) -> list[str]:
    parts = verify(links_of(request.app).key, kind, token)
    if len(parts) != count:
        raise BadToken("malformed token")
    return parts


def _customer(value: str) -> int:
    if not value.isdigit() or len(value) > 19:
        raise BadToken("malformed token")
    return int(value)


def _safe_target(url: str) -> bool:
    """Only absolute http(s) URLs without control characters are redirected to.

    The target is signed, so this is defence in depth: even a token made with our key
    for another scheme (``javascript:``, ``data:``) or with a header-splitting newline
    never becomes a Location.
    """
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _bad_token(detail: str = "invalid link") -> PlainTextResponse:
    return PlainTextResponse(f"{detail}\n", status_code=400, headers=NO_CACHE)


# -- open pixel and click redirect ------------------------------------------------------

_PIXEL_STATUS = {Found.MESSAGE: 200, Found.UNKNOWN: 404, Found.GONE: 410}


@router.get("/t/o/{token}")
def open_pixel(request: Request, token: str) -> Response:
    """The 1×1 GIF; every fetch records ``Message Opened`` on the message's card.

    An unknown message answers 404 and an erased customer's 410, each still with the GIF
    (so no broken-image icon shows) and with nothing recorded.
    """
    try:
        (message_key,) = _parts(request, "o", token, 1)
    except BadToken as exc:
        return _bad_token(str(exc))
    with writing(request.app.state.engine) as conn:
        found, events = message_event(conn, message_key, OPENED)
        if events:
            request.app.state.pipeline.record_many(conn, events)
    return Response(
        PIXEL, status_code=_PIXEL_STATUS[found], media_type="image/gif", headers=NO_CACHE
    )


@router.get("/t/c/{token}")
def click(request: Request, token: str) -> Response:
    """302 to the URL signed in the token, recording ``Message Clicked`` with ``url``.

    A genuine token always redirects (the recipient asked to go there); only a message
    that exists and whose customer is still on file records the click.
    """
    try:
        message_key, url = _parts(request, "c", token, 2)
    except BadToken as exc:
        return _bad_token(str(exc))
    if not _safe_target(url):
        return _bad_token("not an http(s) link")
    with writing(request.app.state.engine) as conn:
        _, events = message_event(conn, message_key, CLICKED, url=url)
        if events:
            request.app.state.pipeline.record_many(conn, events)
    return RedirectResponse(url, status_code=302, headers=NO_CACHE)


# -- forms ------------------------------------------------------------------------------


def _multipart(content_type: str, body: bytes) -> Form | None:
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return None
    form: Form = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            form.setdefault(name, []).append(payload.decode("utf-8", "replace").strip())
    return form


async def read_form(request: Request) -> Form | None:
    """The POSTed form, urlencoded or multipart (RFC 8058 allows both); None if unreadable.

    Parsed here rather than with FastAPI's ``Form`` so that no multipart dependency is
    needed for four fields, and so that an oversized body is cut off while streaming.
    """
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("multipart/form-data"):
        return _multipart(content_type, bytes(body))
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return parse_qs(text, keep_blank_values=True)


def _is_one_click(form: Form) -> bool:
    """RFC 8058 §3.2: ``List-Unsubscribe=One-Click``; an empty body is accepted too."""
    return not form or form.get("List-Unsubscribe", [""])[-1] == "One-Click"


def _action(request: Request, token: str, **extra: str) -> str:
    """A relative reference to this page, so it works behind any path prefix."""
    query = {k: v for k, v in {"lang": request.query_params.get("lang", ""), **extra}.items() if v}
    return token + ("?" + urlencode(query) if query else "")


def _no_customer(lang: str, exc: NoCustomer) -> HTMLResponse:
    if exc.erased:
        return problem_page(lang, 410, "gone_title", "gone")
    return problem_page(lang, 404, "not_found_title", "not_found")


# -- one-click unsubscribe (RFC 8058) ---------------------------------------------------


def _unsubscribe_token(request: Request, token: str) -> tuple[int, str, str]:
    customer, channel, message_key = _parts(request, "u", token, 3)
    if channel not in CONSENT_CHANNELS:
        raise BadToken(f"{channel!r} is not a channel one can unsubscribe from")
    return _customer(customer), channel, message_key


@router.get("/u/{token}")
def unsubscribe_page(request: Request, token: str) -> HTMLResponse:
    """A confirmation with a button that POSTs; fetching this page changes nothing."""
    try:
        customer, channel, _ = _unsubscribe_token(request, token)
    except BadToken:
        return problem_page(choose_lang(request), 400, "bad_link_title", "bad_link")
    with request.app.state.engine.connect() as conn:
        try:
            cid = survivor(conn, customer)
        except NoCustomer as exc:
            return _no_customer(choose_lang(request), exc)
        status = consent_status(conn, cid, channel)
        lang = choose_lang(request, customer_locale(conn, cid))
    return render_page(
        "unsubscribe.html",
        lang,
        state="already" if status == "unsubscribed" else "confirm",
        channel=channel_name(lang, channel),
        action=_action(request, token),
        preferences_url=links_of(request.app).preferences(cid),
    )


@router.post("/u/{token}")
def one_click_unsubscribe(
    request: Request, token: str, form: Form | None = Depends(read_form)
) -> HTMLResponse:
    """Unsubscribe at once, no login; repeating it changes and records nothing."""
    try:
        customer, channel, message_key = _unsubscribe_token(request, token)
    except BadToken:
        return problem_page(choose_lang(request), 400, "bad_link_title", "bad_link")
    if form is None or not _is_one_click(form):
        return problem_page(choose_lang(request), 400, "bad_link_title", "bad_request")
    now = request.app.state.clock.now()
    with writing(request.app.state.engine) as conn:
        try:
            cid = survivor(conn, customer)
        except NoCustomer as exc:
            return _no_customer(choose_lang(request), exc)
        events = unsubscribe(conn, cid, channel, message_key, now)
        if events:
            request.app.state.pipeline.record_many(conn, events)
        lang = choose_lang(request, customer_locale(conn, cid))
    return render_page(
        "unsubscribe.html",
        lang,
        state="done",
        channel=channel_name(lang, channel),
        preferences_url=links_of(request.app).preferences(cid),
    )


# -- preference page ------------------------------------------------------------------


def _preferences_token(request: Request, token: str) -> int:
    (customer,) = _parts(request, "p", token, 1)
    return _customer(customer)


@router.get("/p/{token}")
def preference_page(request: Request, token: str, saved: bool = False) -> HTMLResponse:
    """Every channel the customer can be reached on or has decided about, as checkboxes."""
    try:
        customer = _preferences_token(request, token)
    except BadToken:
        return problem_page(choose_lang(request), 400, "bad_link_title", "bad_link")
    with request.app.state.engine.connect() as conn:
        try:
            cid = survivor(conn, customer)
        except NoCustomer as exc:
            return _no_customer(choose_lang(request), exc)
        choices = preference_choices(conn, cid, CONSENT_CHANNELS)
        lang = choose_lang(request, customer_locale(conn, cid))
    email = next((c.address for c in choices if c.channel == "email" and c.address), None)
    lines = [
        {
            "channel": c.channel,
            "label": channel_name(lang, c.channel),
            "status": c.status,
            "subscribed": c.subscribed,
            "address": mask_phone(c.address) if c.channel == "sms" and c.address else None,
        }
        for c in choices
    ]
    return render_page(
        "preferences.html",
        lang,
        choices=lines,
        address=mask_email(email) if email else None,
        saved=saved,
        action=_action(request, token),
    )


@router.post("/p/{token}", response_model=None)
def save_preferences(
    request: Request, token: str, form: Form | None = Depends(read_form)
) -> HTMLResponse | RedirectResponse:
    """Apply the boxes that changed, one ``Consent Changed`` each; then show the page
    again with a confirmation (POST/redirect/GET, so a reload does not resubmit)."""
    try:
        customer = _preferences_token(request, token)
    except BadToken:
        return problem_page(choose_lang(request), 400, "bad_link_title", "bad_link")
    action = (form or {}).get("action", ["save"])[-1]
    if form is None or action not in ("save", "unsubscribe_all"):
        return problem_page(choose_lang(request), 400, "bad_link_title", "bad_form")
    now = request.app.state.clock.now()
    with writing(request.app.state.engine) as conn:
        try:
            cid = survivor(conn, customer)
        except NoCustomer as exc:
            return _no_customer(choose_lang(request), exc)
        choices = preference_choices(conn, cid, CONSENT_CHANNELS)
        wanted = wanted_from_form(
            choices, set(form.get("channel", [])), everything=action == "unsubscribe_all"
        )
        events = change_consents(conn, cid, wanted, PREFERENCES_SOURCE, now)
        if events:
            request.app.state.pipeline.record_many(conn, events)
    return RedirectResponse(_action(request, token, saved="1"), 303, headers=PAGE_HEADERS)
