"""Tiers by spend or orders in a rolling window, moving up and down as events; bonuses
for actions, each once per its natural key; points added by a scenario, once per key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from rapport.clock import SimulatedClock
from rapport.loyalty.daily import run_daily
from rapport.loyalty.ledger import ADJUSTED, EARNED, TIER_CHANGED, read_account
from rapport.loyalty.points import add_points
from rapport.pipeline import Pipeline
from rapport.store.engine import writing
from rapport.store.tables import loyalty_accounts
from rapport.worker import daily as worker_daily
from tests.test_loyalty_support import (
    check_ledger,
    entries,
    order,
    send,
    set_programme,
    timeline,
    track,
)


@pytest.fixture
def pipeline(engine: sa.Engine, clock: SimulatedClock) -> Pipeline:
    return Pipeline(engine, clock)


def _tier(engine: sa.Engine, cid: int) -> str | None:
    with engine.connect() as conn:
        account = read_account(conn, cid)
    return None if account is None else account.tier


def _daily(pipeline: Pipeline) -> None:
    run_daily(pipeline.engine, pipeline.clock.now(), pipeline.record_many)


def test_tiers_by_spend_move_up_and_down(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    set_programme(engine, clock.now(), pending_days=0)
    cid = order(pipeline, "u1", "o-1", 400.0)
    assert _tier(engine, cid) is None
    order(pipeline, "u1", "o-2", 200.0)  # 600 in the window: Silver
    assert _tier(engine, cid) == "Silver"
    clock.advance(timedelta(days=100))
    order(pipeline, "u1", "o-3", 1500.0)  # 2100: Gold, and o-3 earned at Silver's 7 %
    assert _tier(engine, cid) == "Gold"
    assert entries(engine, cid)[-1].details["rate"] == 7
    track(pipeline, "u1", "Order Refunded", order_id="o-3", total=1000)  # 1100: Silver
    assert _tier(engine, cid) == "Silver"
    # The window moves on: o-1 and o-2 leave it a year later, o-3's 500 stays.
    clock.advance(timedelta(days=266))
    _daily(pipeline)
    assert _tier(engine, cid) == "Silver"
    clock.advance(timedelta(days=100))  # o-3 leaves too
    _daily(pipeline)
    assert _tier(engine, cid) is None
    moves = timeline(engine, cid, TIER_CHANGED)
    assert moves == [
        {"from": None, "to": "Silver", "direction": "up"},
        {"from": "Silver", "to": "Gold", "direction": "up"},
        {"from": "Gold", "to": "Silver", "direction": "down"},
        {"from": "Silver", "to": None, "direction": "down"},
    ]
    _daily(pipeline)  # nothing to move: no event
    assert len(timeline(engine, cid, TIER_CHANGED)) == 4
    check_ledger(engine, cid)


def test_tiers_by_orders(engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock) -> None:
    set_programme(
        engine,
        clock.now(),
        tier_basis="orders",
        tier_window_days=30,
        tiers=[{"name": "Regular", "threshold": 2}, {"name": "Fan", "threshold": 3}],
    )
    cid = order(pipeline, "u1", "o-1", 10.0)
    order(pipeline, "u1", "o-2", 10.0)
    assert _tier(engine, cid) == "Regular"
    order(pipeline, "u1", "o-3", 10.0)
    assert _tier(engine, cid) == "Fan"
    track(pipeline, "u1", "Order Cancelled", order_id="o-3")
    assert _tier(engine, cid) == "Regular"
    with engine.connect() as conn:  # segment conditions read the tier in SQL
        holders = conn.execute(
            sa.select(loyalty_accounts.c.customer_id).where(loyalty_accounts.c.tier == "Regular")
        ).scalars()
        assert list(holders) == [cid]


def test_registration_and_review_bonuses_once(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    set_programme(engine, clock.now(), bonuses={"registration": 100, "review": 20})
    cid = track(pipeline, "u1", "Signed Up")
    track(pipeline, "u1", "Signed Up")
    track(pipeline, "u1", "Product Reviewed", product_id="p1", rating=5)
    track(pipeline, "u1", "Product Reviewed", product_id="p1", rating=4)
    track(pipeline, "u1", "Product Reviewed", product_id="p2", rating=5)
    assert check_ledger(engine, cid) == (140, 0)  # bonuses are spendable at once
    assert [(p["reason"], p["points"]) for p in timeline(engine, cid, EARNED)] == [
        ("registration", 100),
        ("review", 20),
        ("review", 20),
    ]


def test_birthday_bonus_once_a_year(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    set_programme(engine, clock.now(), bonuses={"birthday": 50}, expiry_days=None)
    today = clock.now().date()
    cid = send(pipeline, "identify", "u1", traits={"birthday": f"1990-{today:%m-%d}"})
    other = send(pipeline, "identify", "u2", traits={"birthday": "1990-01-15"})
    worker_daily(pipeline)  # the worker's daily job runs the programme's
    assert timeline(engine, cid, EARNED) == [{"points": 50, "reason": "birthday", "pending": False}]
    _daily(pipeline)
    clock.advance(timedelta(days=1))
    _daily(pipeline)  # the day after still looks back at yesterday: no second bonus
    assert check_ledger(engine, cid) == (50, 0)
    assert entries(engine, other) == []
    clock.advance(timedelta(days=364))
    _daily(pipeline)
    assert check_ledger(engine, cid) == (100, 0)
    assert [e.key for e in entries(engine, cid)] == [
        f"bonus:birthday:{cid}:{today.year}",
        f"bonus:birthday:{cid}:{today.year + 1}",
    ]


def test_birthday_on_29_february_in_a_common_year(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    clock.set(datetime(2027, 2, 28, 9, tzinfo=UTC))
    set_programme(engine, clock.now(), bonuses={"birthday": 50})
    cid = send(pipeline, "identify", "u1", traits={"birthday": "2000-02-29"})
    _daily(pipeline)
    clock.advance(timedelta(days=1))
    _daily(pipeline)
    assert check_ledger(engine, cid) == (50, 0)


def test_comeback_bonus_after_a_long_pause(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    set_programme(
        engine,
        clock.now(),
        accrual_percent=0,
        tiers=[],
        bonuses={"comeback": 200, "comeback_after_days": 60},
    )
    cid = order(pipeline, "u1", "o-1", 100.0)  # a first order is no comeback
    clock.advance(timedelta(days=30))
    order(pipeline, "u1", "o-2", 100.0)  # too soon
    clock.advance(timedelta(days=61))
    order(pipeline, "u1", "o-3", 100.0)
    order(pipeline, "u1", "o-3", 100.0)  # re-sent: once
    assert check_ledger(engine, cid) == (0, 200)  # waits for the return period like o-3
    # Cancelled, the order takes its comeback bonus with it.
    track(pipeline, "u1", "Order Cancelled", order_id="o-3")
    assert check_ledger(engine, cid) == (0, 0)


def test_add_points_is_idempotent_on_its_key(engine: sa.Engine, clock: SimulatedClock) -> None:
    pipeline = Pipeline(engine, clock)
    cid = track(pipeline, "u1", "Signed Up")
    with writing(engine) as conn:  # works before any programme is stored
        first = add_points(conn, cid, 25, "run-1:step-2", clock.now())
        again = add_points(conn, cid, 25, "run-1:step-2", clock.now())
        other = add_points(conn, cid, 5, "run-2:step-2", clock.now(), reason="win-back")
    assert first == [(cid, EARNED, {"points": 25, "reason": "scenario", "pending": False})]
    assert again == []
    assert other[0][2]["reason"] == "win-back"
    assert check_ledger(engine, cid) == (30, 0)
    with writing(engine) as conn:  # a scenario may also take points away, never below 0
        assert add_points(conn, cid, 0, "zero", clock.now()) == []
        taken = add_points(conn, cid, -50, "run-3:step-1", clock.now(), reason="penalty")
        again = add_points(conn, cid, -50, "run-3:step-1", clock.now(), reason="penalty")
    assert taken == [(cid, ADJUSTED, {"points": -30, "reason": "penalty", "short": 20})]
    assert again == []
    assert check_ledger(engine, cid) == (0, 0)
