"""The loyalty API over HTTP: the programme's settings (validated, versioned, audited,
role-checked), calculate and redeem with tier, personal discount, coupon and points, a
customer's points and manual adjustments; every bad input is a 422 that stores nothing."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.access.keys import create_key
from rapport.clock import SimulatedClock
from rapport.loyalty.coupons import parse_settings, set_personal_discount
from rapport.loyalty.coupons.store import create_series
from rapport.loyalty.ledger import ADJUSTED, REDEEMED
from rapport.loyalty.points import add_points
from rapport.pipeline import Pipeline
from rapport.store.engine import writing
from rapport.store.tables import audit_log, coupon_codes
from tests.conftest import bearer
from tests.helpers import table_counts
from tests.test_loyalty_support import BASE, check_ledger, order, send, timeline

SHOES = [{"product_id": "p1", "category_id": "shoes", "price": 100, "quantity": 2}]


class Api:
    def __init__(self, client: TestClient, key: str) -> None:
        self.client = client
        self.headers = bearer(key)

    def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        r = self.client.request(method, "/api/loyalty" + path, headers=headers, **kwargs)
        assert r.status_code == status, r.text
        return r.json()


@pytest.fixture
def api(client: TestClient, secret_key: str) -> Api:
    return Api(client, secret_key)


@pytest.fixture
def pipeline(client: TestClient) -> Pipeline:
    return client.app.state.pipeline  # type: ignore[attr-defined]


def _where(answer: dict[str, Any]) -> list[str]:
    return [e["where"] for e in answer["errors"]]


def _shopper(api: Api, pipeline: Pipeline, engine: sa.Engine, clock: SimulatedClock) -> int:
    """A Silver customer (600 spent) with 230 points and the email ann@example.com."""
    api.call("PUT", "/programme", json={**BASE, "pending_days": 0})
    cid = send(pipeline, "identify", "ann", traits={"email": "ann@example.com"})
    order(pipeline, "ann", "o-1", 600.0)  # 30 points at the base 5 %; then Silver
    with writing(engine) as conn:
        add_points(conn, cid, 200, "gift", clock.now())
    return cid


def test_programme_is_validated_versioned_and_audited(api: Api, engine: sa.Engine) -> None:
    start = api.call("GET", "/programme")
    assert (start["version"], start["programme"]["enabled"]) == (0, False)
    saved = api.call("PUT", "/programme", json=BASE)
    assert saved["version"] == 1
    assert saved["programme"]["tiers"][1]["name"] == "Gold"
    again = api.call("PUT", "/programme", json={**BASE, "accrual_percent": 4})
    assert again["version"] == 2
    with engine.connect() as conn:
        audit = conn.execute(
            sa.select(audit_log.c.action, audit_log.c.actor_name, audit_log.c.details).order_by(
                audit_log.c.id
            )
        ).all()
    assert [(a, n) for a, n, _ in audit] == [("loyalty.programme.update", "tests")] * 2
    assert audit[1].details == {"version": 2, "changes": {"accrual_percent": [5, 4]}}

    before = table_counts(engine)
    bad = api.call("PUT", "/programme", 422, json={**BASE, "accrual_percent": 150})
    assert _where(bad) == ["body.accrual_percent"]
    tiers = [{"name": "A", "threshold": 100}, {"name": "B", "threshold": 50}]
    bad = api.call("PUT", "/programme", 422, json={**BASE, "tiers": tiers})
    assert _where(bad) == ["body.tiers"]
    assert "[1].threshold" in bad["errors"][0]["reason"]
    bad = api.call("PUT", "/programme", 422, json={**BASE, "rounding": "sideways", "bogus": 1})
    assert sorted(_where(bad)) == ["body.bogus", "body.rounding"]
    bad = api.call("PUT", "/programme", 422, json={**BASE, "tiers": [{"name": "A"}]})
    assert _where(bad) == ["body.tiers[0].threshold"]
    assert table_counts(engine) == before
    assert api.call("GET", "/programme")["version"] == 2


def test_roles_marketer_changes_analyst_and_viewer_read(
    client: TestClient, engine: sa.Engine, clock: SimulatedClock
) -> None:
    keys = {r: create_key(engine, "secret", r, clock.now(), role=r).key for r in ROLES}
    for role, key in keys.items():
        reader = Api(client, key)
        reader.call("GET", "/programme")
        status = 200 if role == "marketer" else 403
        reader.call("PUT", "/programme", status, json=BASE)


ROLES = ("marketer", "analyst", "viewer")


def test_calculate_combines_discounts_then_coupon_then_points(
    api: Api, pipeline: Pipeline, engine: sa.Engine, clock: SimulatedClock
) -> None:
    cid = _shopper(api, pipeline, engine, clock)
    body = {"customer_id": cid, "lines": SHOES, "points_to_use": 40}
    # Silver's 3 % off 200, then points: at most 50 % of 194.
    quote = api.call("POST", "/calculate", json=body)
    assert quote["discounts"] == [
        {"kind": "tier", "label": "Silver tier 3%", "percent": 3, "amount": 6.0},
        {"kind": "points", "label": "40 points", "points": 40, "amount": 40.0},
    ]
    assert (quote["subtotal"], quote["total"], quote["tier"]) == (200.0, 154.0, "Silver")
    assert (quote["points_balance"], quote["points_usable"]) == (230, 97)
    assert quote["points_to_earn"] == 10  # 7 % of 154 = 10.78, rounded down

    # A personal 5 % beats the tier's 3 % (never both); the coupon comes off after it.
    with writing(engine) as conn:
        set_personal_discount(conn, cid, 5, clock.now())
        series = parse_settings(
            {
                "name": "spring",
                "kind": "amount",
                "value": 10,
                "codes": "shared",
                "shared_code": "SPRING",
            }
        )
        create_series(conn, series, clock.now())
    quote = api.call("POST", "/calculate", json={**body, "coupon": "SPRING", "email": None})
    assert [(d["kind"], d["amount"]) for d in quote["discounts"]] == [
        ("personal", 10.0),
        ("coupon", 10.0),
        ("points", 40.0),
    ]
    assert quote["coupon"] == {"code": "SPRING", "applied": True, "reason": None}
    assert (quote["total"], quote["points_usable"], quote["discount_total"]) == (140.0, 90, 60.0)
    # By the shop's user id or by email: the same customer, the same answer.
    by_user = {"user_id": "ann", "lines": SHOES, "points_to_use": 40, "coupon": "SPRING"}
    assert api.call("POST", "/calculate", json=by_user) == quote
    by_email = {**by_user, "user_id": None, "email": "ANN@example.com"}
    assert api.call("POST", "/calculate", json=by_email) == quote
    # A code that does not exist is reported, and the order priced without it.
    quote = api.call("POST", "/calculate", json={**body, "coupon": "NOPE"})
    assert quote["coupon"]["applied"] is False and quote["coupon"]["reason"]
    assert [d["kind"] for d in quote["discounts"]] == ["personal", "points"]


def test_bad_checkout_input_is_422_and_stores_nothing(
    api: Api, pipeline: Pipeline, engine: sa.Engine, clock: SimulatedClock
) -> None:
    cid = _shopper(api, pipeline, engine, clock)
    before = table_counts(engine)
    good = {"customer_id": cid, "lines": SHOES}
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({**good, "customer_id": 999_999}, ["body.customer_id"]),
        ({**good, "customer_id": None, "user_id": "nobody"}, ["body.user_id"]),
        ({**good, "customer_id": None, "email": "who@example.com"}, ["body.email"]),
        ({"lines": SHOES}, ["body"]),
        ({**good, "lines": [{**SHOES[0], "quantity": -1}]}, ["body.lines[0].quantity"]),
        ({**good, "lines": [{**SHOES[0], "price": -5}]}, ["body.lines[0].price"]),
        ({**good, "lines": []}, ["body.lines"]),
        ({**good, "points_to_use": 98}, ["body.points_to_use"]),  # 50 % of 194 is 97
        ({**good, "points_to_use": -1}, ["body.points_to_use"]),
        ({**good, "extra": True}, ["body.extra"]),
    ]
    for path in ("/calculate", "/redeem"):
        for body, where in cases:
            headers = {"Idempotency-Key": "k-bad"}
            answer = api.call("POST", path, 422, json=body, headers=headers)
            assert _where(answer) == where, (path, body, answer)
        r = api.client.post(
            "/api/loyalty" + path,
            content=b"{not json",
            headers={**api.headers, "Content-Type": "application/json", "Idempotency-Key": "k"},
        )
        assert r.status_code == 422, r.text
    assert table_counts(engine) == before


def test_redeem_once_per_key(
    api: Api, pipeline: Pipeline, engine: sa.Engine, clock: SimulatedClock
) -> None:
    cid = _shopper(api, pipeline, engine, clock)
    with writing(engine) as conn:
        series = parse_settings(
            {
                "name": "spring",
                "kind": "amount",
                "value": 10,
                "codes": "shared",
                "shared_code": "SPRING",
            }
        )
        create_series(conn, series, clock.now())
    body = {"customer_id": cid, "order_id": "o-2", "lines": SHOES, "points_to_use": 50}
    before = table_counts(engine)
    missing = api.call("POST", "/redeem", 422, json=body)
    assert _where(missing) == ["header.Idempotency-Key"]
    nothing = api.call("POST", "/redeem", 422, json={**body, "points_to_use": 0}, headers=_key("z"))
    assert _where(nothing) == ["body.points_to_use"]
    assert table_counts(engine) == before

    first = api.call("POST", "/redeem", json={**body, "coupon": "SPRING"}, headers=_key("k-1"))
    assert first["replayed"] is False
    assert (first["points_used"], first["points_balance"], first["total"]) == (50, 180, 134.0)
    again = api.call("POST", "/redeem", json={**body, "coupon": "SPRING"}, headers=_key("k-1"))
    assert again == {**first, "replayed": True}
    assert check_ledger(engine, cid) == (180, 0)
    assert timeline(engine, cid, REDEEMED) == [{"points": 50, "order_id": "o-2"}]
    with engine.connect() as conn:
        assert conn.execute(sa.select(coupon_codes.c.uses)).scalar_one() == 1
    # The same key for another request: a conflict, nothing spent.
    api.call("POST", "/redeem", 409, json={**body, "points_to_use": 10}, headers=_key("k-1"))
    # The key may also come in the body.
    done = api.call("POST", "/redeem", json={**body, "idempotency_key": "k-2", "points_to_use": 5})
    assert done["points_balance"] == 175
    # A coupon this customer already used refuses the whole redemption: nothing spent.
    before = table_counts(engine)
    refused = api.call(
        "POST", "/redeem", 422, json={**body, "coupon": "SPRING"}, headers=_key("k-3")
    )
    assert _where(refused) == ["body.coupon"]
    assert table_counts(engine) == before
    assert check_ledger(engine, cid) == (175, 0)
    # The order arrives, then is cancelled: its points and its coupon use come back.
    order(pipeline, "ann", "o-2", 134.0)
    send(pipeline, "track", "ann", event="Order Cancelled", properties={"order_id": "o-2"})
    assert check_ledger(engine, cid) == (230, 0)
    with engine.connect() as conn:
        assert conn.execute(sa.select(coupon_codes.c.uses)).scalar_one() == 0


def _key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


def test_customer_points_and_adjustments(
    api: Api, pipeline: Pipeline, engine: sa.Engine, clock: SimulatedClock
) -> None:
    cid = _shopper(api, pipeline, engine, clock)
    card = api.call("GET", f"/customers/{cid}")
    assert (card["balance"], card["pending"], card["tier"]) == (230, 0, "Silver")
    assert [h["kind"] for h in card["history"]] == ["bonus", "earn"]
    api.call("GET", "/customers/999999", 404)

    after = api.call("POST", f"/customers/{cid}/adjust", json={"points": -30, "reason": "typo"})
    assert after["balance"] == 200
    assert after["history"][0]["reason"] == "typo"
    before = table_counts(engine)
    too_much = api.call(
        "POST", f"/customers/{cid}/adjust", 422, json={"points": -201, "reason": "x"}
    )
    assert _where(too_much) == ["body.points"]
    zero = api.call("POST", f"/customers/{cid}/adjust", 422, json={"points": 0, "reason": "x"})
    assert _where(zero) == ["body.points"]
    no_reason = api.call("POST", f"/customers/{cid}/adjust", 422, json={"points": 5})
    assert _where(no_reason) == ["body.reason"]
    api.call("POST", "/customers/999999/adjust", 404, json={"points": 5, "reason": "x"})
    assert table_counts(engine) == before

    goodwill = {"points": 15, "reason": "goodwill", "idempotency_key": "ticket-7"}
    api.call("POST", f"/customers/{cid}/adjust", json=goodwill)
    api.call("POST", f"/customers/{cid}/adjust", json=goodwill)  # the same key: once
    assert check_ledger(engine, cid) == (215, 0)
    assert timeline(engine, cid, ADJUSTED) == [
        {"points": -30, "reason": "typo"},
        {"points": 15, "reason": "goodwill"},
    ]
    with engine.connect() as conn:
        audit = conn.execute(
            sa.select(audit_log.c.details).where(audit_log.c.action == "loyalty.adjust")
        ).scalars()
        assert list(audit) == [
            {"points": -30, "reason": "typo"},
            {"points": 15, "reason": "goodwill"},
        ]
