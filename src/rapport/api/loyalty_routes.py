"""The loyalty API (management API, Bearer secret key): the programme's settings, the
checkout (calculate, redeem), a customer's points and manual adjustments."""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rapport.api.audit_key import key_actor
from rapport.api.auth import require_secret_key
from rapport.api.errors import ApiError
from rapport.customers.card import find_by_identity
from rapport.customers.profile import live_id
from rapport.errors import InvalidInput, Problem
from rapport.ingest.normalize import normalize_email
from rapport.loyalty import checkout, points, programme
from rapport.loyalty.order import CheckoutOrder, Line
from rapport.loyalty.summary import loyalty_summary
from rapport.store.engine import writing

router = APIRouter(
    prefix="/api/loyalty", tags=["loyalty"], dependencies=[Depends(require_secret_key)]
)


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status_code=status,
        media_type="application/json",
    )


def _invalid(exc: InvalidInput, prefix: str = "body") -> ApiError:
    problems = [
        Problem(f"{prefix}.{p.where}" if p.where else prefix, p.reason) for p in exc.problems
    ]
    return ApiError(422, "; ".join(str(p) for p in problems), problems)


def _programme_answer(stored: programme.Stored) -> dict[str, Any]:
    return {
        "version": stored.version,
        "updated_at": stored.updated_at,
        "programme": stored.programme.model_dump(mode="json"),
    }


@router.get("/programme")
def get_programme(request: Request) -> Response:
    """The programme's settings and their version (the defaults, switched off, if never set)."""
    with request.app.state.engine.connect() as conn:
        return _json(_programme_answer(programme.load_stored(conn)))


@router.put("/programme")
def put_programme(request: Request, body: programme.Programme) -> Response:
    """Replace the programme's settings; a new version, recorded in the audit log."""
    now = request.app.state.clock.now()
    with writing(request.app.state.engine) as conn:
        stored = programme.save(conn, body, key_actor(request), now)
    return _json(_programme_answer(stored))


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: str = Field(min_length=1, max_length=200)
    category_id: str | None = Field(None, max_length=200)
    price: float = Field(ge=0, allow_inf_nan=False, description="unit price before discounts")
    quantity: int = Field(ge=1, le=100_000)


class CheckoutIn(BaseModel):
    """An order at checkout. The customer is named by one of customer_id, user_id, email."""

    model_config = ConfigDict(extra="forbid")

    customer_id: int | None = None
    user_id: str | None = Field(None, min_length=1, max_length=320)
    email: str | None = Field(None, min_length=3, max_length=320)
    order_id: str | None = Field(None, min_length=1, max_length=200)
    lines: list[LineIn] = Field(min_length=1, max_length=1000)
    coupon: str | None = Field(None, min_length=1, max_length=200)
    points_to_use: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_customer(self) -> CheckoutIn:
        if self.customer_id is None and self.user_id is None and self.email is None:
            raise ValueError("name the customer: customer_id, user_id or email")
        return self


class RedeemIn(CheckoutIn):
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)


def _customer(conn: sa.Connection, body: CheckoutIn) -> int:
    if body.customer_id is not None:
        cid = live_id(conn, body.customer_id)
        where, what = "customer_id", f"no customer with id {body.customer_id}"
    elif body.user_id is not None:
        cid = find_by_identity(conn, "user_id", body.user_id)
        where, what = "user_id", f"no customer with user id {body.user_id!r}"
    else:
        assert body.email is not None
        try:
            email = normalize_email(body.email)
        except ValueError as exc:
            raise ApiError(422, f"body.email: {exc}", [Problem("body.email", str(exc))]) from None
        cid = find_by_identity(conn, "email", email)
        where, what = "email", f"no customer with email {body.email!r}"
    if cid is None:
        raise ApiError(422, f"body.{where}: {what}", [Problem(f"body.{where}", what)])
    return cid


def _request(cid: int, body: CheckoutIn) -> checkout.CheckoutRequest:
    order = CheckoutOrder(
        customer_id=cid,
        lines=tuple(Line(x.product_id, x.category_id, x.price, x.quantity) for x in body.lines),
        order_id=body.order_id,
    )
    return checkout.CheckoutRequest(order, body.coupon, body.points_to_use)


@router.post("/calculate")
def calculate(request: Request, body: CheckoutIn) -> Response:
    """Price an order: discounts (each labelled), points usable and to earn, the total.
    Nothing is stored; a coupon that cannot be used is reported under ``coupon``."""
    now = request.app.state.clock.now()
    with request.app.state.engine.connect() as conn:
        cid = _customer(conn, body)
        try:
            return _json(checkout.calculate(conn, _request(cid, body), now))
        except InvalidInput as exc:
            raise _invalid(exc) from None


@router.post("/redeem")
def redeem(
    request: Request,
    body: RedeemIn,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=200),
) -> Response:
    """Pay with points (and use the coupon) for an order, once per Idempotency-Key (header
    or field): a repeated key answers the first result; a key reused for another request
    is 409. Never spends more than the balance, however many run at once."""
    key = idempotency_key or body.idempotency_key
    if not key:
        problem = Problem("header.Idempotency-Key", "is required (or body.idempotency_key)")
        raise ApiError(422, str(problem), [problem])
    now = request.app.state.clock.now()
    pipeline = request.app.state.pipeline
    try:
        with writing(request.app.state.engine) as conn:
            cid = _customer(conn, body)
            done = checkout.redeem(conn, _request(cid, body), key, now)
            if done.events:
                pipeline.record_many(conn, done.events)
    except InvalidInput as exc:
        raise _invalid(exc) from None
    except checkout.KeyReused as exc:
        raise ApiError(409, str(exc)) from None
    return _json({**done.result, "replayed": done.replayed})


def _live(conn: sa.Connection, customer_id: int) -> int:
    cid = live_id(conn, customer_id)
    if cid is None:
        raise ApiError(404, f"customer {customer_id} does not exist")
    return cid


@router.get("/customers/{customer_id}")
def customer_points(request: Request, customer_id: int) -> Response:
    """Balance, pending points, tier, points expiring within 30 days, latest entries."""
    now = request.app.state.clock.now()
    with request.app.state.engine.connect() as conn:
        cid = _live(conn, customer_id)
        return _json({"customer_id": cid, **loyalty_summary(conn, cid, now)})


class AdjustIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: int = Field(description="positive adds, negative takes away")
    reason: str = Field(min_length=1, max_length=300)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)


@router.post("/customers/{customer_id}/adjust")
def adjust(request: Request, customer_id: int, body: AdjustIn) -> Response:
    """A manual correction with a reason, written to the audit log."""
    now = request.app.state.clock.now()
    try:
        with writing(request.app.state.engine) as conn:
            cid = _live(conn, customer_id)
            events = points.adjust(
                conn,
                cid,
                body.points,
                body.reason,
                key_actor(request),
                now,
                key=body.idempotency_key,
            )
            if events:
                request.app.state.pipeline.record_many(conn, events)
            summary = loyalty_summary(conn, cid, now)
    except InvalidInput as exc:
        raise _invalid(exc) from None
    return _json({"customer_id": cid, **summary})
