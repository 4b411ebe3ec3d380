"""The card shows the programme (points, coupons, personal picks) through the API and the
web UI, to every role; a merge moves points, codes and discounts to the survivor."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.clock import SimulatedClock
from rapport.loyalty.coupons import issue, set_personal_discount
from rapport.loyalty.points import add_points
from rapport.pipeline import Pipeline
from rapport.recommend.blocks import products_for
from rapport.recommend.build import build
from rapport.recommend.strategies import BuildOptions
from rapport.store.engine import writing
from rapport.store.tables import coupon_codes, coupon_customer_uses, personal_discounts, products
from tests.conftest import T0, bearer
from tests.test_coupons import make_series
from tests.test_loyalty_support import check_ledger, send, set_programme
from tests.test_recommend_strategies import make_shop
from tests.test_web_support import (
    signed_in,
    text_of,
    web_client,  # noqa: F401  (the `web` fixture)
)


def _programme_for(engine: sa.Engine, cid: int) -> str:
    """150 points (the first 100 expiring in 20 days), a code, a 15 % discount."""
    set_programme(engine, T0)
    make_series(engine, "spring", valid_days=30)
    with writing(engine) as conn:
        add_points(conn, cid, 100, "old-gift", T0 - timedelta(days=345))
        add_points(conn, cid, 50, "new-gift", T0)
        code, _ = issue(conn, cid, "spring", "card-test", T0)
        set_personal_discount(conn, cid, 15, T0, source="manual", note="loyal client")
    return code


def _card(client: TestClient, secret_key: str, cid: int) -> dict[str, Any]:
    r = client.get(f"/api/customers/{cid}", headers=bearer(secret_key))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_the_card_api_shows_points_coupons_and_picks(
    client: TestClient, engine: sa.Engine, secret_key: str
) -> None:
    _, who = make_shop(engine)
    cid = who["u4"]
    code = _programme_for(engine, cid)
    before = _card(client, secret_key, cid)
    assert before["recommendations"] is None  # the lists were never built
    points = before["loyalty"]
    assert (points["balance"], points["pending"], points["tier"]) == (150, 0, None)
    assert (points["points_expiring"], points["next_expiry"]) == (
        100,
        (T0 + timedelta(days=20)).date().isoformat(),
    )
    assert [(e["kind"], e["points"]) for e in points["history"]] == [("bonus", 50), ("bonus", 100)]
    [coupon] = before["coupons"]
    assert (coupon["code"], coupon["series"], coupon["status"]) == (code, "spring", "active")
    assert before["personal_discount"]["percent"] == 15
    assert before["personal_discount"]["discounts"][0]["note"] == "loyal client"

    build(engine, T0, BuildOptions(personal_model="knn"))
    picks = _card(client, secret_key, cid)["recommendations"]
    with engine.connect() as conn:
        expected = products_for(conn, [cid], "personal", 4, T0)[cid]
        rows = {r.id: r for r in conn.execute(sa.select(products))}
    assert [p["id"] for p in picks] == [p["id"] for p in expected] and len(picks) == 4
    for pick in picks:
        assert (pick["name"], pick["price"], pick["currency"]) == (
            rows[pick["id"]].name,
            rows[pick["id"]].price,
            rows[pick["id"]].currency,
        )


def test_the_web_card_shows_them_to_every_role(web: TestClient, engine: sa.Engine) -> None:
    _, who = make_shop(engine)
    cid = who["u4"]
    code = _programme_for(engine, cid)
    signed_in(web, engine, "viewer")
    text = text_of(web.get(f"/customers/{cid}").text)
    for expected in (
        "Loyalty points",
        "Balance 150",
        "Expiring within 30 days 100",
        f"Next expiry {(T0 + timedelta(days=20)):%b} 21, 2026",
        "bonus 50",
        code,
        "active",
        "Personal discount 15.0%",
        "Not built yet",
    ):
        assert expected in text, expected
    build(engine, T0, BuildOptions(personal_model="knn"))
    with engine.connect() as conn:
        picks = products_for(conn, [cid], "personal", 4, T0)[cid]
    text = text_of(web.get(f"/customers/{cid}").text)
    assert "Not built yet" not in text
    for pick in picks:
        assert f"{pick['name']} 10.00 EUR" in text
    web.cookies.set("rapport_lang", "ru")
    ru = text_of(web.get(f"/customers/{cid}").text)
    assert "Бонусные баллы" in ru and "Промокоды" in ru


def test_a_merge_keeps_every_point_code_and_discount(
    engine: sa.Engine, clock: SimulatedClock, client: TestClient, secret_key: str
) -> None:
    set_programme(engine, T0)
    make_series(engine, "spring", valid_days=30)
    shared = make_series(
        engine, "shared", codes="shared", shared_code="ALL10", max_uses_per_customer=2
    )
    pipeline = Pipeline(engine, clock)
    known = send(pipeline, "identify", "u1", traits={"email": "ann@example.com"})
    guest = send(pipeline, "identify", None, anonymousId="a-1", traits={"phone": "+79001234567"})  # type: ignore[arg-type]
    with writing(engine) as conn:
        add_points(conn, known, 120, "k", T0)
        add_points(conn, guest, 80, "g", T0 - timedelta(days=340))
        code, _ = issue(conn, guest, "spring", "guest-code", T0)
        set_personal_discount(conn, known, 5, T0)
        set_personal_discount(conn, guest, 10, T0, valid_until=T0 + timedelta(days=7))
        for cid in (known, guest):
            conn.execute(
                coupon_customer_uses.insert().values(series_id=shared.id, customer_id=cid, uses=1)
            )
    # The guest's phone shows up on the known profile: one person, two profiles.
    clock.advance(timedelta(hours=1))
    survivor = send(
        pipeline, "identify", "u1", traits={"email": "ann@example.com", "phone": "+79001234567"}
    )
    assert survivor == known
    assert check_ledger(engine, known) == (200, 0)
    assert check_ledger(engine, guest) == (0, 0)
    card = _card(client, secret_key, guest)  # the merged id answers with the survivor
    assert card["id"] == known and card["loyalty"]["balance"] == 200
    assert card["loyalty"]["points_expiring"] == 80  # the guest's lot kept its expiry
    assert [c["code"] for c in card["coupons"]] == [code]
    assert card["personal_discount"]["percent"] == 10
    with engine.connect() as conn:
        owner = conn.execute(
            sa.select(coupon_codes.c.customer_id).where(coupon_codes.c.code == code)
        ).scalar_one()
        uses = conn.execute(
            sa.select(coupon_customer_uses.c.customer_id, coupon_customer_uses.c.uses)
        ).all()
        discounts = conn.execute(
            sa.select(personal_discounts.c.customer_id, personal_discounts.c.percent)
        ).all()
    assert owner == known
    assert [tuple(u) for u in uses] == [(known, 2)]  # "twice per customer" counts the person
    assert [tuple(d) for d in discounts] == [(known, 10)]
