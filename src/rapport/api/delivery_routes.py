"""Delivery reports in, and the suppression list (management API, Bearer secret key).

``POST /api/deliveries/bounce`` takes a returned e-mail as it arrived (a DSN, an ARF
complaint, a plain-text failure notice), for a mail server's pipe or a mailbox poller;
``POST /api/deliveries/events`` takes a provider's status webhook in Rapport's generic JSON
shape. Both act in one transaction with the events they put on the card, and both are
safe to repeat. ``/api/suppressions`` lists, adds and removes suppressed addresses.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from rapport.api.audit_key import record_key_change
from rapport.api.auth import require_secret_key
from rapport.api.errors import ApiError
from rapport.errors import Problem
from rapport.ingest.normalize import normalize_email, normalize_phone
from rapport.messaging.bounces import UnparseableReport, parse_report
from rapport.messaging.channels.base import CHANNELS
from rapport.messaging.delivery_reports import (
    Applied,
    DeliveryEvent,
    apply_delivery_events,
    apply_report,
)
from rapport.messaging.suppressions import (
    REASONS,
    get_suppression,
    list_suppressions,
    normalize_address,
    suppress,
    unsuppress,
)
from rapport.store.engine import writing

router = APIRouter(prefix="/api", tags=["deliveries"], dependencies=[Depends(require_secret_key)])

MAX_REPORT_BYTES = 10 * 1024 * 1024  # a bounce can carry the whole original back
MAX_EVENTS = 1000
_REPORT_TYPES = ("message/rfc822", "text/plain")


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status_code=status,
        media_type="application/json",
    )


def _answer(applied: Applied, **head: Any) -> dict[str, Any]:
    return head | {
        "recorded_events": len(applied.events),
        "results": [r.as_dict() for r in applied.results],
    }


# -- bounces and complaints ---------------------------------------------------------------


@router.post(
    "/deliveries/bounce",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {t: {"schema": {"type": "string"}} for t in _REPORT_TYPES},
        }
    },
)
async def post_bounce(request: Request) -> Response:
    """A bounce (DSN), complaint (ARF) or plain failure notice, as raw RFC 822 bytes."""
    ctype = request.headers.get("content-type", "message/rfc822").split(";")[0].strip().lower()
    if ctype not in _REPORT_TYPES:
        raise ApiError(
            415, f"content-type {ctype!r}: send the message as {' or '.join(_REPORT_TYPES)}"
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_REPORT_BYTES:
        raise ApiError(413, f"body is larger than the limit of {MAX_REPORT_BYTES} bytes")
    raw = await request.body()
    if len(raw) > MAX_REPORT_BYTES:
        raise ApiError(413, f"body is larger than the limit of {MAX_REPORT_BYTES} bytes")
    try:
        report = parse_report(raw)
    except UnparseableReport as exc:
        raise ApiError(422, f"body: {exc}", [Problem("body", str(exc))]) from None
    state = request.app.state
    now = state.clock.now()
    with writing(state.engine) as conn:
        applied = apply_report(conn, report, now)
        state.pipeline.record_many(conn, applied.events)
    return _json(
        _answer(
            applied,
            kind=report.kind,
            format=report.format,
            message_id=report.message_id,
            feedback_type=report.feedback_type,
        )
    )


# -- provider status webhooks -------------------------------------------------------------


class DeliveryItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message_id: str = Field(min_length=1, max_length=998)
    status: Literal["delivered", "bounced", "complained", "failed", "opened", "clicked"]
    recipient: str | None = Field(None, min_length=1, max_length=320)
    bounce_type: Literal["hard", "soft"] | None = None
    diagnostic: str | None = Field(None, max_length=2000)
    occurred_at: datetime | None = None
    id: str | None = Field(None, min_length=1, max_length=200, description="provider event id")
    url: str | None = Field(None, max_length=2000, description="the link, for clicks")


class DeliveryBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[DeliveryItem] = Field(min_length=1, max_length=MAX_EVENTS)


_BATCH = TypeAdapter(DeliveryBatch)


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """The schema with its ``$defs`` references written out, for embedding in OpenAPI."""
    if isinstance(schema, dict):
        ref = schema.get("$ref", "")
        if ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


_BATCH_SCHEMA = DeliveryBatch.model_json_schema()
_BATCH_SCHEMA = _inline(_BATCH_SCHEMA, _BATCH_SCHEMA.get("$defs", {}))


def _where(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@router.post(
    "/deliveries/events",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _BATCH_SCHEMA}},
        }
    },
)
async def post_events(request: Request) -> Response:
    """Delivered, bounced, complained, failed, opened and clicked, from a provider.

    The body is ``{"events": [...]}`` (a bare list is accepted too). The batch is checked
    whole before anything is stored: one bad item is a 422 naming it (``events[3].status``)
    and nothing is recorded. Items about messages Rapport did not send are ignored and
    reported as unmatched, so a provider shared with other senders does not retry forever.
    """
    try:
        doc = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"body: malformed JSON ({exc})") from None
    if isinstance(doc, list):
        doc = {"events": doc}
    try:
        batch = _BATCH.validate_python(doc)
    except ValidationError as exc:
        problems = [
            Problem(_where(tuple(e["loc"])) or "body", e["msg"].removeprefix("Value error, "))
            for e in exc.errors()
        ]
        raise ApiError(422, "; ".join(str(p) for p in problems[:20]), problems) from None
    items = [
        DeliveryEvent(
            message_id=item.message_id,
            status=item.status,
            recipient=item.recipient,
            bounce_type=item.bounce_type,
            diagnostic=item.diagnostic,
            occurred_at=_aware(item.occurred_at),
            event_id=item.id,
            url=item.url,
        )
        for item in batch.events
    ]
    state = request.app.state
    now = state.clock.now()
    with writing(state.engine) as conn:
        applied = apply_delivery_events(conn, items, now)
        state.pipeline.record_many(conn, applied.events)
    return _json(_answer(applied, received=len(items)))


def _aware(value: datetime | None) -> datetime | None:
    """A time without an offset is read as UTC, as the rest of the API does."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


# -- the suppression list -----------------------------------------------------------------


Channel = Literal[CHANNELS]  # type: ignore[valid-type]
Reason = Literal[REASONS]  # type: ignore[valid-type]


class NewSuppression(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Channel = "email"
    address: str = Field(min_length=1, max_length=320)
    reason: Reason = "manual"
    note: str | None = Field(None, max_length=2000)


def _address(request: Request, channel: str, address: str) -> str:
    """E-mail and phone numbers are checked and normalised; other channels kept as given."""
    try:
        if channel == "email":
            return normalize_email(address)
        if channel == "sms":
            return normalize_phone(address, request.app.state.settings.default_phone_region)
    except ValueError as exc:
        raise ApiError(422, f"address: {exc}", [Problem("address", str(exc))]) from None
    return normalize_address(channel, address)


@router.get("/suppressions", tags=["suppressions"])
def get_suppressions(
    request: Request,
    channel: Channel | None = None,
    address: str | None = Query(None, min_length=1, description="exactly this address"),
    contains: str | None = Query(None, min_length=1, description="address contains"),
    reason: Reason | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> Response:
    """Suppressed addresses, newest first, a page at a time."""
    with request.app.state.engine.connect() as conn:
        found, total = list_suppressions(
            conn,
            channel=channel,
            address=address,
            contains=contains,
            reason=reason,
            limit=limit,
            offset=offset,
        )
    return _json(
        {
            "suppressions": [s.as_dict() for s in found],
            "total": total,
            "limit": limit,
            "offset": offset,
        }
    )


@router.post("/suppressions", tags=["suppressions"], status_code=201)
def post_suppression(request: Request, body: NewSuppression) -> Response:
    """Suppress an address by hand; 201 when added, 200 when it was already suppressed."""
    address = _address(request, body.channel, body.address)
    details: dict[str, Any] = {"source": "api"}
    if body.note:
        details["note"] = body.note
    with writing(request.app.state.engine) as conn:
        added = suppress(
            conn, body.channel, address, body.reason, request.app.state.clock.now(), details
        )
        entry = get_suppression(conn, body.channel, address)
        if added:  # the address is the object; the audit keeps the channel and reason only
            record_key_change(
                conn,
                request,
                "suppression.add",
                "suppression",
                body.channel,
                {"reason": body.reason},
            )
    assert entry is not None
    return _json(entry.as_dict() | {"created": added}, 201 if added else 200)


@router.delete("/suppressions/{channel}/{address}", tags=["suppressions"])
def delete_suppression(request: Request, channel: Channel, address: str) -> Response:
    """Send to the address again (the mailbox was fixed, the block was a mistake)."""
    with writing(request.app.state.engine) as conn:
        removed = unsuppress(conn, channel, address)
        if removed:
            record_key_change(conn, request, "suppression.remove", "suppression", channel)
    if not removed:
        raise ApiError(404, f"{address} is not suppressed on {channel}")
    return _json({"deleted": {"channel": channel, "address": normalize_address(channel, address)}})
