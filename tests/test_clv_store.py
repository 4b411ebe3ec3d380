"""Scoring the store on SQLite and PostgreSQL: customers and orders come in through the real
ingest pipeline ("Order Completed", refunds, cancellations), the scores land on the cards,
and segment rules read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from rapport.analytics.clv import scoring, store_orders
from rapport.analytics.clv.errors import NotEnoughData
from rapport.analytics.clv.scoring import predict, score_store
from rapport.analytics.clv.summary import summarize
from rapport.clock import SimulatedClock
from rapport.ingest.messages import parse_message
from rapport.pipeline import Pipeline
from rapport.store.engine import writing
from rapport.store.tables import customers, identities
from tests.conftest import T0, _clean
from tests.helpers import table_counts
from tests.test_segments_store import both

DAY = timedelta(days=1)


@dataclass
class Shop:
    """What was sent, and what the models should see: (user, day, net amount) per order."""

    now: datetime
    counted: list[tuple[str, datetime, float]] = field(default_factory=list)
    groups: dict[str, list[str]] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    def customers(self, group: str) -> set[int]:
        return {self.ids[user] for user in self.groups[group]}


def _track(now: datetime, user: str, name: str, at: datetime, **props: Any) -> Any:
    return parse_message(
        {
            "type": "track",
            "userId": user,
            "event": name,
            "properties": props,
            "timestamp": at.isoformat(),
        },
        where="message",
        received_at=now,
        phone_region="RU",
        max_bytes=32 * 1024,
    )


def build_shop(engine: sa.Engine, now: datetime, *, regulars: int = 30, gone: int = 15) -> Shop:
    """Regular buyers (every 6–35 days up to now), customers who bought weekly a year ago
    and stopped, one-time buyers, and people who never ordered."""
    shop = Shop(now)
    rng = np.random.default_rng(17)  # spend varies within and between customers
    orders: list[Any] = []
    later: list[Any] = []
    number = 0

    def order(user: str, at: datetime, total: float, *, counted: bool = True) -> str:
        nonlocal number
        number += 1
        order_id = f"o-{number}"
        orders.append(_track(now, user, "Order Completed", at, order_id=order_id, total=total))
        if counted:
            shop.counted.append((user, at, total))
        return order_id

    shop.groups["regular"] = [f"reg-{i}" for i in range(regulars)]
    for i, user in enumerate(shop.groups["regular"]):
        gap = 6 + (7 * i) % 30  # buying rates differ between customers
        at = now - (120 + 3 * i) * DAY + timedelta(hours=i % 9)
        while at < now - DAY:
            order(user, at, round(float(rng.gamma(4.0, 10.0 + 5 * (i % 5))), 2))
            at += gap * DAY
    shop.groups["gone"] = [f"gone-{j}" for j in range(gone)]
    for j, user in enumerate(shop.groups["gone"]):
        first = now - (400 + 5 * j) * DAY
        for k in range(5 + j % 3):
            order(user, first + 7 * k * DAY, round(float(rng.gamma(4.0, 8.0)), 2))
    shop.groups["once"] = [f"once-{k}" for k in range(10)]
    for k, user in enumerate(shop.groups["once"]):
        order(user, now - (30 + 20 * k) * DAY, 55.0)
    shop.groups["never"] = [f"never-{n}" for n in range(5)]
    for user in shop.groups["never"]:
        orders.append(
            parse_message(
                {"type": "identify", "userId": user, "traits": {"city": "Omsk"}},
                where="message",
                received_at=now,
                phone_region="RU",
                max_bytes=32 * 1024,
            )
        )
    # Two orders on one day are one purchase of their sum.
    reg0_day = shop.counted[2][1]
    order("reg-0", reg0_day + timedelta(hours=2), 12.5)
    # A partial refund counts net; a full refund and a cancellation do not count at all.
    partial = order("reg-1", now - 5 * DAY, 100.0, counted=False)
    shop.counted.append(("reg-1", now - 5 * DAY, 70.0))
    later.append(_track(now, "reg-1", "Order Refunded", now - 4 * DAY, order_id=partial, total=30))
    refunded = order("reg-2", now - 3 * DAY, 80.0, counted=False)
    later.append(_track(now, "reg-2", "Order Refunded", now - 2 * DAY, order_id=refunded))
    # A gone customer's recent order was cancelled: had it counted, they would look alive.
    cancelled = order("gone-0", now - 2 * DAY, 45.0, counted=False)
    later.append(_track(now, "gone-0", "Order Cancelled", now - DAY, order_id=cancelled))

    pipeline = Pipeline(engine, SimulatedClock(now))
    pipeline.ingest(orders)
    pipeline.ingest(later)
    with engine.connect() as conn:
        shop.ids = dict(
            conn.execute(
                sa.select(identities.c.value, identities.c.customer_id).where(
                    identities.c.kind == "user_id"
                )
            ).all()
        )
    return shop


def stored_scores(engine: sa.Engine) -> dict[int, tuple[Any, ...]]:
    c = customers.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                c.id, c.predicted_clv, c.expected_purchases_90d, c.churn_risk, c.clv_scored_at
            )
        ).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def expected_scores(shop: Shop, model: str = "bgnbd") -> dict[int, tuple[float, float, float]]:
    """The models fitted to what the test sent, straight from the transactions."""
    users = [u for u, _, _ in shop.counted]
    days = np.array([at.date() for _, at, _ in shop.counted], dtype="datetime64[D]")
    amounts = [a for _, _, a in shop.counted]
    summary = summarize(users, days, amounts, observation_end=shop.now.date())
    scores, _, _ = predict(summary, model)
    return {
        shop.ids[str(user)]: (clv, e90, churn)
        for user, clv, e90, churn in zip(
            scores.customer,
            scores.predicted_clv,
            scores.expected_purchases_90d,
            scores.churn_risk,
            strict=True,
        )
    }


def test_scores_land_on_every_buyer(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = build_shop(engine, T0)
    # Small chunks, so reading and writing go through many of them.
    monkeypatch.setattr(store_orders, "READ_CHUNK", 64)
    monkeypatch.setattr(scoring, "WRITE_CHUNK", 7)
    seen: list[tuple[str, int, int]] = []
    result = score_store(engine, T0, progress=lambda *step: seen.append(step))
    expected = expected_scores(shop)
    stored = stored_scores(engine)
    buyers = set(expected)
    assert buyers == set(shop.ids.values()) - shop.customers("never")
    assert result.customers == len(buyers) and result.cleared == 0
    for cid, (clv, e90, churn) in expected.items():
        got = stored[cid]
        # The same fit up to the optimiser's tolerance (sums in another order differ in
        # the last bits, and the search stops a hair elsewhere).
        assert got[:3] == pytest.approx((clv, e90, churn), rel=1e-6, abs=1e-12), cid
        assert got[3] == T0
    for cid in shop.customers("never"):
        assert stored[cid] == (None, None, None, None)
    assert result.total_predicted_clv == pytest.approx(sum(v[0] for v in expected.values()))
    assert seen[-1] == ("writing", 2 * len(buyers), 2 * len(buyers))
    assert {s[0] for s in seen} == {"reading", "fitting", "writing"}
    # Regular buyers are worth more and expected to buy; the gone ones are not.
    regular = [stored[c] for c in shop.customers("regular")]
    gone = [stored[c] for c in shop.customers("gone")]
    assert min(r[0] for r in regular) > max(g[0] for g in gone)
    assert min(r[1] for r in regular) > 1.0 > max(g[1] for g in gone)
    # The card shows them.
    from rapport.customers.card import card

    some = next(iter(buyers))
    with engine.connect() as conn:
        computed = card(conn, some, T0)["computed"]  # type: ignore[index]
    assert (computed["predicted_clv"], computed["churn_risk"]) == (stored[some][0], stored[some][2])


def test_churn_risk_in_a_segment_rule(engine: sa.Engine) -> None:
    shop = build_shop(engine, T0)
    score_store(engine, T0)
    at_risk = both(engine, {"computed": "churn_risk", "op": "gt", "value": 0.5})
    assert at_risk == shop.customers("gone")
    worthless = both(engine, {"computed": "predicted_clv", "op": "lt", "value": 20})
    assert worthless == shop.customers("gone")
    buying = both(engine, {"computed": "expected_purchases_90d", "op": "gt", "value": 1})
    assert shop.customers("regular") <= buying and not buying & shop.customers("gone")
    # Never scored (no order): null never matches a comparison.
    low = both(engine, {"computed": "churn_risk", "op": "lt", "value": 2})
    assert not low & shop.customers("never")


def test_pareto_nbd_lets_one_time_buyers_lapse(engine: sa.Engine) -> None:
    shop = build_shop(engine, T0)
    score_store(engine, T0, model="paretonbd")
    stored = stored_scores(engine)
    expected = expected_scores(shop, "paretonbd")
    for cid, values in expected.items():
        assert stored[cid][:3] == pytest.approx(values, rel=1e-6, abs=1e-12)
    # BG/NBD says a one-time buyer is certainly alive; Pareto/NBD that the longer ago
    # they bought, the less likely.
    once = [stored[shop.ids[f"once-{k}"]][2] for k in range(10)]
    assert once == sorted(once) and once[0] < once[-1]


def test_too_few_repeat_customers_writes_nothing(engine: sa.Engine) -> None:
    shop = build_shop(engine, T0, regulars=8, gone=6)
    earlier = T0 - 30 * DAY
    marked = shop.ids["reg-0"]
    with writing(engine) as conn:  # a score from an earlier run must survive a refusal
        conn.execute(
            customers.update()
            .where(customers.c.id == marked)
            .values(predicted_clv=123.0, churn_risk=0.25, clv_scored_at=earlier)
        )
    before_counts, before = table_counts(engine), stored_scores(engine)
    with pytest.raises(NotEnoughData, match="14 of 24 customers made a repeat purchase"):
        score_store(engine, T0)
    assert table_counts(engine) == before_counts
    assert stored_scores(engine) == before
    assert before[marked] == (123.0, None, 0.25, earlier)


def test_a_store_without_orders_is_not_enough(engine: sa.Engine) -> None:
    with pytest.raises(NotEnoughData, match="no completed orders"):
        score_store(engine, T0)


def test_customers_who_lose_their_orders_are_cleared(engine: sa.Engine) -> None:
    shop = build_shop(engine, T0)
    score_store(engine, T0)
    user = "once-3"
    cid = shop.ids[user]
    assert stored_scores(engine)[cid][0] is not None
    order_id = _order_of(engine, cid)
    Pipeline(engine, SimulatedClock(T0)).ingest(
        [_track(T0, user, "Order Cancelled", T0 - DAY, order_id=order_id)]
    )
    result = score_store(engine, T0 + DAY)
    assert result.cleared == 1
    assert stored_scores(engine)[cid] == (None, None, None, None)
    assert result.customers == len(shop.ids) - len(shop.groups["never"]) - 1


def _order_of(engine: sa.Engine, cid: int) -> str:
    from rapport.store.tables import orders

    with engine.connect() as conn:
        return str(
            conn.execute(
                sa.select(orders.c.order_id).where(orders.c.customer_id == cid)
            ).scalar_one()
        )


def test_bad_settings_are_refused_before_reading(engine: sa.Engine) -> None:
    from rapport.errors import InvalidInput

    with pytest.raises(InvalidInput) as exc:
        score_store(engine, T0, horizon_months=0, monthly_discount=-0.1)
    assert [p.where for p in exc.value.problems] == ["horizon_months", "monthly_discount"]


def test_the_daily_job_scores_and_moves_segments_or_carries_on(engine: sa.Engine) -> None:
    from rapport.segments.definitions import create_segment
    from rapport.store.tables import segment_members
    from rapport.worker import daily

    small = build_shop(engine, T0, regulars=8, gone=6)
    pipeline = Pipeline(engine, SimulatedClock(T0))
    daily(pipeline, T0)  # too little history: no scores, and no error
    assert all(v == (None, None, None, None) for v in stored_scores(engine).values())
    del small
    _clean(engine)
    shop = build_shop(engine, T0)
    with writing(engine) as conn:
        sid = create_segment(
            conn, "at risk", "", {"computed": "churn_risk", "op": "gt", "value": 0.5}, T0
        ).id
    pipeline = Pipeline(engine, SimulatedClock(T0))
    daily(pipeline, T0)
    with engine.connect() as conn:
        members = set(
            conn.execute(
                sa.select(segment_members.c.customer_id).where(
                    segment_members.c.segment_id == sid, segment_members.c.until.is_(None)
                )
            ).scalars()
        )
    assert members == shop.customers("gone")
