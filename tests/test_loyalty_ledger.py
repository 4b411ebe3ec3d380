"""Points for orders through the real pipeline: accrual, pending → active, expiry oldest
first, proportional take-back on refunds and cancellations, redemptions given back; and
the account row always equal to what the append-only ledger sums to."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from rapport.clock import SimulatedClock
from rapport.customers.merge import merge_customers
from rapport.loyalty.accrual import Priced, points_for
from rapport.loyalty.checkout import CheckoutRequest, make_order, redeem
from rapport.loyalty.daily import run_daily
from rapport.loyalty.ledger import ACTIVATED, EARNED, EXPIRED, RETURNED, REVERSED
from rapport.loyalty.merge import merge_points
from rapport.loyalty.points import add_points
from rapport.loyalty.programme import parse
from rapport.loyalty.summary import expiring_points, loyalty_summary
from rapport.pipeline import Pipeline
from rapport.store.engine import writing
from tests.test_loyalty_support import (
    BASE,
    check_ledger,
    entries,
    order,
    set_programme,
    timeline,
    track,
)


@pytest.fixture
def pipeline(engine: sa.Engine, clock: SimulatedClock) -> Pipeline:
    return Pipeline(engine, clock)


def _daily(pipeline: Pipeline) -> None:
    run_daily(pipeline.engine, pipeline.clock.now(), pipeline.record_many)


def _summary(pipeline: Pipeline, cid: int) -> dict[str, Any]:
    with pipeline.engine.connect() as conn:
        return loyalty_summary(conn, cid, pipeline.clock.now())


def test_points_for_rates_multipliers_minimum_and_rounding() -> None:
    programme = parse(
        {
            **BASE,
            "category_multipliers": {"shoes": 2, "gift-cards": 0},
            "min_order_amount": 30,
        }
    )
    # No tier: the base 5 %. Silver: its 7 %. Gold: 10 %.
    assert points_for(programme, None, 200, []) == 10
    assert points_for(programme, "Silver", 200, []) == 14
    assert points_for(programme, "Gold", 200, []) == 20
    # Lines share what was paid: 100 of shoes at ×2, 100 of gift cards at ×0.
    lines = [Priced("shoes", 100), Priced("gift-cards", 100)]
    assert points_for(programme, None, 200, lines) == 10  # 100 × 5 % × 2 + 0
    # A discount paid less than the lines list: points follow what was paid.
    assert points_for(programme, None, 100, lines) == 5
    # Below the minimum order: nothing.
    assert points_for(programme, "Gold", 29.99, []) == 0
    # Rounding of 31 × 5 % = 1.55 points.
    assert points_for(programme, None, 31, []) == 1
    assert points_for(parse({**BASE, "rounding": "nearest"}), None, 31, []) == 2
    assert points_for(parse({**BASE, "rounding": "up"}), None, 30, []) == 2  # 1.5 → 2
    assert points_for(parse({**BASE, "rounding": "up"}), None, 40, []) == 2  # exact
    # A point worth 0.5 of money doubles the points for the same rate.
    assert points_for(parse({**BASE, "point_value": 0.5}), None, 200, []) == 20


def test_order_points_wait_for_the_return_period(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    set_programme(engine, clock.now(), category_multipliers={"shoes": 2})
    cid = order(pipeline, "u1", "o-1", 200.0, [("p1", "shoes", 50, 2), ("p2", "hats", 100, 1)])
    # 100 of shoes × 2 + 100 of hats, at 5 %: 15 points, pending for 14 days.
    assert check_ledger(engine, cid) == (0, 15)
    summary = _summary(pipeline, cid)
    assert (summary["balance"], summary["pending"]) == (0, 15)
    earned = timeline(engine, cid, EARNED)
    assert earned == [
        {
            "points": 15,
            "reason": "order",
            "pending": True,
            "order_id": "o-1",
            "available_at": (clock.now() + timedelta(days=14)).isoformat(),
        }
    ]
    # Re-sent, the order earns nothing more.
    order(pipeline, "u1", "o-1", 200.0, [("p1", "shoes", 50, 2), ("p2", "hats", 100, 1)])
    assert check_ledger(engine, cid) == (0, 15)

    clock.advance(timedelta(days=13, hours=23))
    _daily(pipeline)
    assert check_ledger(engine, cid) == (0, 15)
    clock.advance(timedelta(hours=1))
    # Spendable as of now even before the daily run writes it down.
    assert _summary(pipeline, cid)["balance"] == 15
    _daily(pipeline)
    assert check_ledger(engine, cid) == (15, 0)
    assert timeline(engine, cid, ACTIVATED) == [{"points": 15}]
    _daily(pipeline)  # a second run changes nothing
    assert check_ledger(engine, cid) == (15, 0)
    assert [e.kind for e in entries(engine, cid)] == ["earn", "activate"]


def test_minimum_order_and_start_date(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    set_programme(
        engine,
        clock.now(),
        min_order_amount=50,
        pending_days=0,
        tiers=[],
        starts_at=(clock.now() + timedelta(days=1)).isoformat(),
    )
    cid = order(pipeline, "u1", "o-early", 500.0)
    assert entries(engine, cid) == []  # placed before the programme started
    clock.advance(timedelta(days=2))
    order(pipeline, "u1", "o-small", 49.0)
    assert entries(engine, cid) == []
    order(pipeline, "u1", "o-big", 60.0)
    assert check_ledger(engine, cid) == (3, 0)


def test_switched_off_programme_earns_nothing(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    cid = order(pipeline, "u1", "o-1", 500.0)  # no programme stored: switched off
    set_programme(engine, clock.now(), enabled=False)
    order(pipeline, "u1", "o-2", 500.0)
    assert entries(engine, cid) == []
    assert timeline(engine, cid, EARNED) == []


def test_partial_refunds_take_back_proportionally(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    set_programme(engine, clock.now(), pending_days=0)
    cid = order(pipeline, "u1", "o-1", 200.0)
    assert check_ledger(engine, cid) == (10, 0)
    track(pipeline, "u1", "Order Refunded", order_id="o-1", total=50)  # a quarter
    assert check_ledger(engine, cid) == (7, 0)  # keeps ⌊7.5⌋
    track(pipeline, "u1", "Order Refunded", order_id="o-1", total=150)  # the rest
    assert check_ledger(engine, cid) == (0, 0)
    track(pipeline, "u1", "Order Refunded", order_id="o-1", total=150)  # nothing left
    assert check_ledger(engine, cid) == (0, 0)
    assert [(e.kind, e.points) for e in entries(engine, cid)] == [
        ("earn", 10),
        ("reverse", -3),
        ("reverse", -7),
    ]
    assert [p["points"] for p in timeline(engine, cid, REVERSED)] == [3, 7]


def test_cancel_takes_back_pending_points_before_they_activate(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    set_programme(engine, clock.now())
    cid = order(pipeline, "u1", "o-1", 100.0)
    order(pipeline, "u1", "o-2", 40.0)
    assert check_ledger(engine, cid) == (0, 7)
    track(pipeline, "u1", "Order Cancelled", order_id="o-1")
    assert check_ledger(engine, cid) == (0, 2)
    clock.advance(timedelta(days=15))
    _daily(pipeline)
    assert check_ledger(engine, cid) == (2, 0)  # only o-2's points became spendable
    reverse = [e for e in entries(engine, cid) if e.kind == "reverse"]
    assert [(e.points, e.pending, e.order_id) for e in reverse] == [(0, -5, "o-1")]


def test_points_already_spent_leave_a_recorded_shortfall(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    set_programme(engine, clock.now(), pending_days=0)
    cid = order(pipeline, "u1", "o-1", 200.0)  # 10 points, spendable at once
    with writing(engine) as conn:
        request = CheckoutRequest(make_order(cid, [("p", None, 100.0, 1)], "o-2"), None, 8)
        redeem(conn, request, "k-1", clock.now())
    assert check_ledger(engine, cid) == (2, 0)
    track(pipeline, "u1", "Order Cancelled", order_id="o-1")
    # Only 2 points are left to take: the balance never goes below zero.
    assert check_ledger(engine, cid) == (0, 0)
    assert timeline(engine, cid, REVERSED) == [{"points": 2, "short": 8, "order_id": "o-1"}]
    reverse = entries(engine, cid)[-1]
    assert reverse.details["short"] == 8
    # Later points are not clawed back for it.
    order(pipeline, "u1", "o-3", 100.0)
    assert check_ledger(engine, cid) == (5, 0)


def test_redeemed_points_are_not_counted_twice_and_come_back_on_cancel(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    set_programme(engine, clock.now())
    cid = track(pipeline, "u1", "Signed Up")
    with writing(engine) as conn:
        add_points(conn, cid, 100, "gift", clock.now())
        request = CheckoutRequest(make_order(cid, [("p", None, 100.0, 1)], "o-9"), None, 20)
        redeem(conn, request, "k-9", clock.now())
    assert check_ledger(engine, cid) == (80, 0)
    # The shop reports the order with what was paid in money: 100 - 20 points.
    order(pipeline, "u1", "o-9", 80.0)
    assert check_ledger(engine, cid) == (80, 4)  # nothing deducted again; 5 % of 80
    track(pipeline, "u1", "Order Cancelled", order_id="o-9")
    assert check_ledger(engine, cid) == (100, 0)
    assert timeline(engine, cid, RETURNED) == [{"points": 20, "order_id": "o-9"}]
    track(pipeline, "u1", "Order Cancelled", order_id="o-9")  # again: nothing more
    assert check_ledger(engine, cid) == (100, 0)


def test_points_are_spent_and_expire_oldest_first(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    set_programme(engine, clock.now(), expiry_days=30)
    cid = track(pipeline, "u1", "Signed Up")
    start = clock.now()
    with writing(engine) as conn:
        add_points(conn, cid, 10, "a", clock.now())  # expires at +30 days
    clock.advance(timedelta(days=10))
    with writing(engine) as conn:
        add_points(conn, cid, 20, "b", clock.now())  # expires at +40 days
    clock.advance(timedelta(days=5))
    with writing(engine) as conn:
        request = CheckoutRequest(make_order(cid, [("p", None, 100.0, 1)], None), None, 15)
        redeem(conn, request, "spend", clock.now())
    # The oldest lot went first: 10 from "a", 5 from "b"; "b"'s 15 expire within 30 days.
    summary = _summary(pipeline, cid)
    assert (summary["balance"], summary["points_expiring"]) == (15, 15)
    assert summary["next_expiry"] == (start + timedelta(days=40)).date()
    with engine.connect() as conn:
        soon: dict[int, int] = dict(conn.execute(expiring_points(clock.now(), 30)).all())
        later: dict[int, int] = dict(conn.execute(expiring_points(clock.now(), 20)).all())
    assert (soon, later) == ({cid: 15}, {})

    clock.set(start + timedelta(days=31))
    _daily(pipeline)
    assert check_ledger(engine, cid) == (15, 0)  # "a" was spent: nothing to expire
    clock.set(start + timedelta(days=41))
    assert _summary(pipeline, cid)["balance"] == 0  # as of now, before the run
    _daily(pipeline)
    assert check_ledger(engine, cid) == (0, 0)
    assert timeline(engine, cid, EXPIRED) == [{"points": 15}]


def test_history_is_newest_first(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    set_programme(engine, clock.now(), pending_days=0)
    cid = order(pipeline, "u1", "o-1", 100.0)
    track(pipeline, "u1", "Order Refunded", order_id="o-1", total=100)
    history = _summary(pipeline, cid)["history"]
    assert [(h["kind"], h["points"], h["order_id"]) for h in history] == [
        ("reverse", -5, "o-1"),
        ("earn", 5, "o-1"),
    ]


def test_points_follow_a_merged_profile(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    set_programme(engine, clock.now(), tiers=[])
    keep = track(pipeline, "keep", "Signed Up")
    gone = order(pipeline, "gone", "o-1", 100.0)  # 5 points pending
    with writing(engine) as conn:
        add_points(conn, gone, 7, "gift", clock.now())
        add_points(conn, keep, 3, "gift", clock.now())
        details = merge_customers(conn, keep, gone, "same email", clock.now())
        assert details["loyalty_points"] == 12  # moved by the merge itself
        assert merge_points(conn, keep, gone, clock.now()) == 0  # nothing left to move
    assert check_ledger(engine, gone) == (0, 0)
    assert check_ledger(engine, keep) == (10, 5)
    # The moved order's refund takes its points back from the survivor.
    track(pipeline, "keep", "Order Cancelled", order_id="o-1")
    assert check_ledger(engine, keep) == (10, 0)
    clock.advance(timedelta(days=400))
    run_daily(engine, clock.now(), pipeline.record_many)
    assert check_ledger(engine, keep) == (0, 0)  # the moved lot kept its expiry
