"""The customer card API (management API, Bearer secret key)."""

from __future__ import annotations

import base64
from datetime import date, datetime
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rapport.api.audit_key import record_key_change
from rapport.api.auth import require_secret_key
from rapport.api.errors import ApiError
from rapport.customers import card as cards
from rapport.customers.consents import ConsentChange, set_consents
from rapport.customers.edit import IdentifierTaken, patch_customer
from rapport.customers.privacy import erase_customer, export_customer
from rapport.customers.profile import live_id
from rapport.customers.timeline import timeline
from rapport.ingest.normalize import normalize_email, normalize_phone, normalize_timezone
from rapport.ingest.traits import CONSENT_CHANNELS
from rapport.loyalty.card import programme_sections
from rapport.store.engine import writing

router = APIRouter(
    prefix="/api/customers", tags=["customers"], dependencies=[Depends(require_secret_key)]
)


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status_code=status,
        media_type="application/json",
    )


def _live(request: Request, customer_id: int) -> int:
    with request.app.state.engine.connect() as conn:
        cid = live_id(conn, customer_id)
    if cid is None:
        raise ApiError(404, f"customer {customer_id} does not exist")
    return cid


@router.get("")
def find_customers(
    request: Request,
    user_id: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    anonymous_id: str | None = None,
    q: str | None = Query(None, min_length=1, description="name, email or phone contains"),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> Response:
    """Look a customer up by one identifier, or search by name, email or phone."""
    region = request.app.state.settings.default_phone_region
    try:
        lookups = [
            ("user_id", user_id),
            ("anonymous_id", anonymous_id),
            ("email", normalize_email(email) if email else None),
            ("phone", normalize_phone(phone, region) if phone else None),
        ]
    except ValueError as exc:
        raise ApiError(422, f"query: {exc}") from None
    with request.app.state.engine.connect() as conn:
        given = [(k, v) for k, v in lookups if v]
        if given:
            found = {cards.find_by_identity(conn, k, v) for k, v in given}
            ids = [] if None in found or len(found) != 1 else [int(next(iter(found)))]  # type: ignore[arg-type]
        elif q:
            ids = cards.search(conn, q, limit, offset)
        else:
            raise ApiError(422, "query: give user_id, email, phone, anonymous_id or q")
        return _json({"customers": cards.summaries(conn, ids)})


@router.get("/{customer_id}")
def get_customer(request: Request, customer_id: int) -> Response:
    """The card: profile, identities, consents, computed fields, loyalty points, coupons and
    personal recommendations; merged ids answer with the survivor."""
    now = request.app.state.clock.now()
    with request.app.state.engine.connect() as conn:
        data = cards.card(conn, customer_id, now)
        if data is not None:
            data.update(programme_sections(conn, data["id"], now))
    if data is None:
        raise ApiError(404, f"customer {customer_id} does not exist")
    return _json(data)


def _cursor(value: str) -> tuple[datetime, int]:
    try:
        at, _, event_id = base64.urlsafe_b64decode(value.encode()).decode().partition("|")
        return datetime.fromisoformat(at), int(event_id)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(422, "before: not a cursor this API gave out") from None


@router.get("/{customer_id}/timeline")
def get_timeline(
    request: Request,
    customer_id: int,
    limit: int = Query(50, ge=1, le=500),
    before: str | None = Query(None, description="the next_cursor of the previous page"),
    name: list[str] | None = Query(None, description="only these event names"),
    source: list[str] | None = Query(None, description="only these sources"),
) -> Response:
    """Every event of the customer, newest first, a page at a time."""
    cid = _live(request, customer_id)
    with request.app.state.engine.connect() as conn:
        rows = timeline(
            conn,
            cid,
            limit=limit,
            before=_cursor(before) if before else None,
            names=name,
            sources=source,
        )
    next_cursor = None
    if len(rows) == limit:
        last = rows[-1]
        next_cursor = base64.urlsafe_b64encode(
            f"{last['occurred_at'].isoformat()}|{last['id']}".encode()
        ).decode()
    return _json({"events": rows, "next_cursor": next_cursor})


class CustomerPatch(BaseModel):
    """Attributes to set; traits merge into the existing ones (null removes a trait)."""

    model_config = ConfigDict(extra="forbid")

    first_name: str | None = Field(None, max_length=200)
    last_name: str | None = Field(None, max_length=200)
    email: str | None = None
    phone: str | None = None
    birthday: date | None = None
    gender: str | None = Field(None, max_length=32)
    city: str | None = Field(None, max_length=200)
    country: str | None = Field(None, max_length=100)
    timezone: str | None = None
    locale: str | None = Field(None, max_length=35)
    traits: dict[str, Any] | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return None if value is None else normalize_email(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return None if value is None else normalize_timezone(value)


@router.patch("/{customer_id}")
def patch(request: Request, customer_id: int, body: CustomerPatch) -> Response:
    """Change attributes. An email or phone owned by another customer answers 409."""
    changes = body.model_dump(exclude_unset=True)
    if changes.get("phone") is not None:
        try:
            changes["phone"] = normalize_phone(
                changes["phone"], request.app.state.settings.default_phone_region
            )
        except ValueError as exc:
            raise ApiError(422, f"phone: {exc}") from None
    cid = _live(request, customer_id)
    now = request.app.state.clock.now()
    try:
        with writing(request.app.state.engine) as conn:
            patch_customer(conn, cid, changes, now)
            # On the timeline, and it re-evaluates the segments that read these fields.
            request.app.state.pipeline.record(
                conn, cid, "Profile Updated", {"fields": sorted(changes), "source": "api"}
            )
            # The fields' names, not their values: personal data must go with an erasure.
            fields = {"fields": sorted(changes)}
            record_key_change(conn, request, "customer.update", "customer", cid, fields, now=now)
    except IdentifierTaken as exc:
        raise ApiError(409, str(exc)) from None
    return get_customer(request, cid)


class ConsentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Literal[CONSENT_CHANNELS]  # type: ignore[valid-type]
    status: Literal["subscribed", "unsubscribed", "pending"]
    source: str = Field("api", min_length=1, max_length=100)
    double_opt_in: Literal["none", "pending", "confirmed"] = "none"


@router.post("/{customer_id}/consents")
def post_consent(request: Request, customer_id: int, body: ConsentBody) -> Response:
    """Record a consent decision; it appears on the timeline as `Consent Changed`."""
    cid = _live(request, customer_id)
    pipeline = request.app.state.pipeline
    now = request.app.state.clock.now()
    with writing(request.app.state.engine) as conn:
        set_consents(
            conn,
            [ConsentChange(cid, body.channel, body.status, body.source, now, body.double_opt_in)],
        )
        pipeline.record(conn, cid, "Consent Changed", body.model_dump())
        details = {"channel": body.channel, "status": body.status, "source": body.source}
        record_key_change(conn, request, "customer.consent", "customer", cid, details, now=now)
    return get_customer(request, cid)


@router.get("/{customer_id}/export")
def export(request: Request, customer_id: int) -> Response:
    """All personal data held about the customer, as one JSON document."""
    with request.app.state.engine.connect() as conn:
        data = export_customer(conn, customer_id, request.app.state.clock.now())
    if data is None:
        raise ApiError(404, f"customer {customer_id} does not exist")
    return _json(data)


@router.delete("/{customer_id}")
def erase(request: Request, customer_id: int) -> Response:
    """Erase personal data; anonymous aggregates (counts, order amounts) are kept."""
    cid = _live(request, customer_id)
    with writing(request.app.state.engine) as conn:
        erased = erase_customer(conn, cid, request.app.state.clock.now())
        record_key_change(conn, request, "customer.erase", "customer", cid, {"erased": erased})
    return _json({"success": True, "erased": erased})
