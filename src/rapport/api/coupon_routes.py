"""Coupons (management API, Bearer secret key): series, codes, issue, personal discounts.

Changes need a marketer or admin key, reads any key (access/roles.py); the codes CSV is
an export. Each change writes an audit entry in its own transaction. Bad settings are
answered 422 naming each field (``body.value``) and nothing is stored. The checkout
itself (quote, redeem) is the loyalty API's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from rapport.access import audit
from rapport.api.audit_key import key_actor
from rapport.api.auth import require_secret_key
from rapport.api.errors import ApiError
from rapport.customers.profile import live_id
from rapport.errors import InvalidInput
from rapport.loyalty.coupons import (
    CouponError,
    CouponRefused,
    SeriesSettings,
    clear_personal_discount,
    code_status,
    customer_coupons,
    issue,
    parse_settings,
    personal_discount,
    set_personal_discount,
)
from rapport.loyalty.coupons.codes import MAX_PER_REQUEST, generate_codes
from rapport.loyalty.coupons.personal import SOURCES, discounts_of
from rapport.loyalty.coupons.store import (
    Series,
    all_series,
    create_series,
    get_series,
    series_codes_csv,
    series_counts,
    set_paused,
    update_series,
)
from rapport.store.engine import writing

MAX_API_CODES = MAX_PER_REQUEST


def _errors() -> Iterator[None]:
    try:
        yield
    except InvalidInput as exc:
        raise ApiError(422, str(exc), exc.problems) from None
    except CouponError as exc:
        raise ApiError(exc.status, exc.message) from None
    except CouponRefused as exc:  # looking up a code nobody made
        raise ApiError(404, exc.reason) from None


router = APIRouter(
    prefix="/api/coupons",
    tags=["coupons"],
    dependencies=[Depends(require_secret_key), Depends(_errors)],
)

_SETTINGS_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": SeriesSettings.model_json_schema()}},
    }
}


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _series_answer(conn: sa.Connection, series: Series) -> dict[str, Any]:
    return series.as_dict() | {"counts": series_counts(conn, [series.id])[series.id]}


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, le=MAX_API_CODES, description="how many codes to generate")


class IssueRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: int
    key: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="idempotency key: the same key gives back the same code",
    )


class DiscountRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    percent: float
    valid_until: datetime | None = None
    source: str = "manual"
    note: str = ""


@router.post("/series", status_code=201, openapi_extra=_SETTINGS_BODY)
def create(request: Request, body: dict[str, Any] = Body(...)) -> Response:
    """A new series (docs/coupons.md lists the settings); a shared one gets its code."""
    settings = parse_settings(body, "body")
    now = request.app.state.clock.now()
    with writing(request.app.state.engine) as conn:
        series = create_series(conn, settings, now, where="body")
        audit.record(
            conn,
            key_actor(request),
            "coupon_series.create",
            "coupon_series",
            series.name,
            now,
            {"settings": settings.stored()},
        )
        answer = _series_answer(conn, series)
    return _json(answer, 201)


@router.get("/series")
def list_series(request: Request) -> Response:
    with request.app.state.engine.connect() as conn:
        found = all_series(conn)
        counts = series_counts(conn, [s.id for s in found])
    return _json({"series": [s.as_dict() | {"counts": counts[s.id]} for s in found]})


@router.get("/series/{name}")
def one_series(request: Request, name: str) -> Response:
    with request.app.state.engine.connect() as conn:
        return _json(_series_answer(conn, get_series(conn, name)))


@router.patch("/series/{name}")
def change_series(request: Request, name: str, body: dict[str, Any] = Body(...)) -> Response:
    """Change some settings; the result is checked whole. The name stays, and so does
    the code mode once the series has codes."""
    now = request.app.state.clock.now()
    with writing(request.app.state.engine) as conn:
        series = update_series(conn, name, body, now, where="body")
        audit.record(
            conn,
            key_actor(request),
            "coupon_series.update",
            "coupon_series",
            name,
            now,
            {"changes": body},
        )
        answer = _series_answer(conn, series)
    return _json(answer)


def _pause(request: Request, name: str, paused: bool) -> Response:
    now = request.app.state.clock.now()
    with writing(request.app.state.engine) as conn:
        series = set_paused(conn, name, paused, now)
        action = "coupon_series.pause" if paused else "coupon_series.resume"
        audit.record(conn, key_actor(request), action, "coupon_series", name, now)
        answer = _series_answer(conn, series)
    return _json(answer)


@router.post("/series/{name}/pause")
def pause(request: Request, name: str) -> Response:
    """Every code of the series is refused at the checkout, and none is issued."""
    return _pause(request, name, True)


@router.post("/series/{name}/resume")
def resume(request: Request, name: str) -> Response:
    return _pause(request, name, False)


@router.post("/series/{name}/codes", status_code=201)
def generate(request: Request, name: str, body: GenerateRequest) -> Response:
    """Generate printed codes (belonging to nobody) in one transaction; the answer lists
    them. `rapport coupons generate` does the same for up to a million, into a CSV."""
    now = request.app.state.clock.now()
    with writing(request.app.state.engine) as conn:
        series = get_series(conn, name)
        codes = generate_codes(conn, series.id, series.settings, body.count, now)
        audit.record(
            conn,
            key_actor(request),
            "coupon_series.generate",
            "coupon_series",
            name,
            now,
            {"count": len(codes)},
        )
    return _json({"series": name, "generated": len(codes), "codes": codes}, 201)


@router.get("/series/{name}/codes.csv")
def codes_csv(request: Request, name: str) -> Response:
    """Every code of the series with its owner and uses, for printing or a shop's import."""
    with request.app.state.engine.connect() as conn:
        text = series_codes_csv(conn, name)
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="coupons-{name}.csv"'},
    )


@router.post("/series/{name}/issue", status_code=201)
def issue_code(request: Request, name: str, body: IssueRequest) -> Response:
    """A personal code for one customer; the `Coupon Issued` event goes on their
    timeline. Give ``key`` to make a retry safe (the same key, the same code)."""
    now = request.app.state.clock.now()
    key = body.key or f"api:{uuid.uuid4()}"
    with writing(request.app.state.engine) as conn:
        code, events = issue(conn, body.customer_id, name, key, now)
        if events:
            request.app.state.pipeline.record_many(conn, events)
            audit.record(
                conn,
                key_actor(request),
                "coupon.issue",
                "customer",
                events[0][0],
                now,
                {"series": name, "code": code},
            )
        answer = code_status(conn, code, now)
    return _json(answer | {"created": bool(events)}, 201 if events else 200)


@router.get("/codes/{code}")
def look_up(request: Request, code: str) -> Response:
    """A code's series, owner, status and every use (with its order)."""
    with request.app.state.engine.connect() as conn:
        return _json(code_status(conn, code, request.app.state.clock.now()))


def _customer(conn: sa.Connection, customer_id: int) -> int:
    cid = live_id(conn, customer_id)
    if cid is None:
        raise ApiError(404, f"customer {customer_id} does not exist")
    return cid


@router.get("/customers/{customer_id}")
def customer_wallet(request: Request, customer_id: int) -> Response:
    """The customer's codes with their status, and personal discounts."""
    now = request.app.state.clock.now()
    with request.app.state.engine.connect() as conn:
        cid = _customer(conn, customer_id)
        return _json(
            {
                "customer_id": cid,
                "personal_discount": personal_discount(conn, cid, now),
                "discounts": discounts_of(conn, cid, now),
                "coupons": customer_coupons(conn, cid, now),
            }
        )


@router.put("/customers/{customer_id}/discount")
def set_discount(request: Request, customer_id: int, body: DiscountRequest) -> Response:
    """Set the customer's personal discount from a source (manual, scenario, import);
    the largest one still running applies."""
    now = request.app.state.clock.now()
    with writing(request.app.state.engine) as conn:
        stored = set_personal_discount(
            conn,
            customer_id,
            body.percent,
            now,
            source=body.source,
            valid_until=body.valid_until,
            note=body.note,
        )
        audit.record(
            conn,
            key_actor(request),
            "personal_discount.set",
            "customer",
            stored["customer_id"],
            now,
            {
                "source": body.source,
                "percent": body.percent,
                "valid_until": None if body.valid_until is None else body.valid_until.isoformat(),
            },
        )
        current = personal_discount(conn, stored["customer_id"], now)
    return _json({"customer_id": stored["customer_id"], "personal_discount": current})


@router.delete("/customers/{customer_id}/discount")
def clear_discount(
    request: Request,
    customer_id: int,
    source: str | None = Query(None, description=f"one of {', '.join(SOURCES)}; all if left out"),
) -> Response:
    now = request.app.state.clock.now()
    with writing(request.app.state.engine) as conn:
        cid = _customer(conn, customer_id)
        removed = clear_personal_discount(conn, cid, source, where="query.source")
        if removed:
            audit.record(
                conn,
                key_actor(request),
                "personal_discount.clear",
                "customer",
                cid,
                now,
                {"source": source, "removed": removed},
            )
        current = personal_discount(conn, cid, now)
    return _json({"customer_id": cid, "removed": removed, "personal_discount": current})
