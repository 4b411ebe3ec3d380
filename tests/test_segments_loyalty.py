"""Loyalty conditions in segments, on SQLite and PostgreSQL: both evaluators, real-time
entry as the ledger moves, the sweep for points that near their expiry, and bad rules."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rapport.clock import SimulatedClock
from rapport.errors import InvalidInput
from rapport.loyalty.points import add_points
from rapport.loyalty.summary import expiring_points
from rapport.pipeline import Pipeline
from rapport.segments.compiler import member_ids
from rapport.segments.definitions import create_segment
from rapport.segments.dependencies import dependencies
from rapport.segments.evaluator import evaluate
from rapport.segments.rules import parse_rule
from rapport.segments.sweep import run_sweep, sweep_candidates
from rapport.store.engine import writing
from rapport.store.tables import loyalty_accounts, segment_members, segments
from rapport.worker import sweep_segments
from tests import test_segments_agree as agree
from tests.conftest import T0, bearer
from tests.test_loyalty_support import order, set_programme, timeline, track
from tests.test_segments_store import add_customer, both

DAY = timedelta(days=1)


def _points(engine: sa.Engine, cid: int, points: int, at: datetime, key: str) -> None:
    """Points credited at ``at``: spendable at once, expiring 365 days later."""
    with writing(engine) as conn:
        add_points(conn, cid, points, key, at)


def _tier(engine: sa.Engine, cid: int, tier: str | None, pending: int = 0) -> None:
    with writing(engine) as conn:
        conn.execute(
            loyalty_accounts.update()
            .where(loyalty_accounts.c.customer_id == cid)
            .values(tier=tier, pending=pending)
        )


@pytest.fixture
def people(engine: sa.Engine) -> dict[str, int]:
    """none: no account; zero: an account at 0; ann: 300 points expiring in 10 days and 50
    in 200 days, Gold, 20 pending; bob: 40 expiring in 3 days, Silver; cat: 500 points
    expiring in 200 days, no tier."""
    with writing(engine) as conn:
        ids = {name: add_customer(conn) for name in ("none", "zero", "ann", "bob", "cat")}
    year = timedelta(days=365)
    _points(engine, ids["ann"], 300, T0 - year + 10 * DAY, "a1")
    _points(engine, ids["ann"], 50, T0 - year + 200 * DAY, "a2")
    _points(engine, ids["bob"], 40, T0 - year + 3 * DAY, "b1")
    _points(engine, ids["cat"], 500, T0 - year + 200 * DAY, "c1")
    _points(engine, ids["zero"], 10, T0 - year + 5 * DAY, "z1")
    _points(engine, ids["zero"], -10, T0 - year + 6 * DAY, "z2")  # spent: an account at 0
    _tier(engine, ids["ann"], "Gold", pending=20)
    _tier(engine, ids["bob"], "Silver")
    return ids


def _who(ids: dict[str, int], found: set[int]) -> set[str]:
    return {name for name, cid in ids.items() if cid in found}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"loyalty": "tier", "op": "eq", "value": "Gold"}, {"ann"}),
        ({"loyalty": "tier", "op": "in", "value": ["Gold", "Silver"]}, {"ann", "bob"}),
        ({"loyalty": "tier", "op": "not_in", "value": ["Gold"]}, {"none", "zero", "bob", "cat"}),
        ({"loyalty": "tier", "op": "ne", "value": "Silver"}, {"none", "zero", "ann", "cat"}),
        ({"loyalty": "tier", "op": "exists"}, {"ann", "bob"}),
        ({"not": {"loyalty": "tier", "op": "exists"}}, {"none", "zero", "cat"}),
        ({"loyalty": "balance", "op": "ge", "value": 350}, {"ann", "cat"}),
        ({"loyalty": "balance", "op": "lt", "value": 100}, {"none", "zero", "bob"}),
        ({"loyalty": "balance", "op": "eq", "value": 0}, {"none", "zero"}),
        ({"loyalty": "balance", "op": "between", "value": [40, 350]}, {"ann", "bob"}),
        ({"loyalty": "pending", "op": "gt", "value": 0}, {"ann"}),
        ({"loyalty": "pending", "op": "le", "value": 0}, {"none", "zero", "bob", "cat"}),
        ({"loyalty": "points_expiring", "within_days": 5}, {"bob"}),
        ({"loyalty": "points_expiring", "within_days": 30}, {"ann", "bob"}),
        ({"loyalty": "points_expiring", "within_days": 30, "at_least": 100}, {"ann"}),
        ({"loyalty": "points_expiring", "within_days": 365, "at_least": 350}, {"ann", "cat"}),
        (
            {"not": {"loyalty": "points_expiring", "within_days": 30}},
            {"none", "zero", "cat"},
        ),
        (
            {
                "any": [
                    {"loyalty": "tier", "op": "eq", "value": "Silver"},
                    {"loyalty": "balance", "op": "gt", "value": 400},
                ]
            },
            {"bob", "cat"},
        ),
    ],
)
def test_both_evaluators_answer_alike(
    engine: sa.Engine, people: dict[str, int], rule: dict[str, Any], expected: set[str]
) -> None:
    assert _who(people, both(engine, rule)) == expected


def test_expiring_points_agree_with_the_summarys_query(
    engine: sa.Engine, people: dict[str, int]
) -> None:
    """The condition reads the query the programme documents for it."""
    with engine.connect() as conn:
        rows = dict(conn.execute(expiring_points(T0, 30)).all())
    assert {c: int(n) for c, n in rows.items()} == {people["ann"]: 300, people["bob"]: 40}
    assert _who(people, both(engine, {"loyalty": "points_expiring", "within_days": 30})) == {
        name for name, cid in people.items() if cid in rows
    }


def test_only_a_ledger_touch_and_the_sweep_concern_loyalty_rules() -> None:
    tier = dependencies(parse_rule({"loyalty": "tier", "op": "exists"}))
    assert tier.loyalty and not tier.loyalty_lots and not tier.time_dependent
    expiring = dependencies(parse_rule({"loyalty": "points_expiring", "within_days": 7}))
    assert expiring.loyalty and expiring.loyalty_lots and expiring.time_dependent


def test_crossing_names_everyone_whose_answer_moves(
    engine: sa.Engine, people: dict[str, int]
) -> None:
    """Between any two moments, the narrowed sweep re-checks a superset of those whose
    answer changed (and, here, only customers with lots)."""
    days_ahead = (0, 2, 3, 9, 10, 11, 40, 200)
    moments = [T0 + k * DAY + timedelta(hours=h) for k in days_ahead for h in (0, 7)]
    with_lots = {people["ann"], people["bob"], people["cat"], people["zero"]}
    for days, at_least in ((1, 1), (7, 1), (7, 100), (30, 300)):
        rule = parse_rule({"loyalty": "points_expiring", "within_days": days, "at_least": at_least})
        answer = {m: both(engine, rule, m) for m in moments}
        with engine.connect() as conn:
            for a in moments:
                for b in (m for m in moments if m > a):
                    named = sweep_candidates(conn, rule, a, b)
                    assert named is not None
                    assert answer[a] ^ answer[b] <= set(named), (days, at_least, a, b)
                    assert set(named) <= with_lots


def _members(engine: sa.Engine, segment_id: int) -> set[int]:
    sm = segment_members.c
    with engine.connect() as conn:
        return set(
            conn.execute(
                sa.select(sm.customer_id).where(sm.segment_id == segment_id, sm.until.is_(None))
            ).scalars()
        )


def _segment(engine: sa.Engine, name: str, rule: dict[str, Any]) -> int:
    with writing(engine) as conn:
        return create_segment(conn, name, "", rule, T0).id


def test_tier_and_balance_segments_follow_orders_at_once(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    set_programme(engine, T0, pending_days=0)
    silver = _segment(engine, "silver", {"loyalty": "tier", "op": "eq", "value": "Silver"})
    rich = _segment(engine, "rich", {"loyalty": "balance", "op": "ge", "value": 30})
    pipeline = Pipeline(engine, clock)
    cid = order(pipeline, "ann", "o-1", 400)  # 5 % of 400 = 20 points, no tier yet
    assert _members(engine, silver) == _members(engine, rich) == set()
    order(pipeline, "ann", "o-2", 200)  # spend 600: Silver; 20 + 10 points
    assert _members(engine, silver) == {cid} and _members(engine, rich) == {cid}
    track(pipeline, "ann", "Order Cancelled", order_id="o-2")  # back to 400: no tier, 20
    assert _members(engine, silver) == _members(engine, rich) == set()
    moves = [(e["segment_name"]) for e in timeline(engine, cid, "Segment Entered")]
    assert sorted(moves) == ["rich", "silver"]
    assert len(timeline(engine, cid, "Segment Exited")) == 2


def test_the_sweep_finds_points_nearing_their_expiry(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    set_programme(engine, T0, expiry_days=30)
    pipeline = Pipeline(engine, clock)
    with writing(engine) as conn:
        cid = add_customer(conn)
        add_points(conn, cid, 80, "gift", T0)  # expires T0 + 30 days
        others = [add_customer(conn) for _ in range(3)]  # never crossed: not re-checked
    soon = _segment(engine, "expiring", {"loyalty": "points_expiring", "within_days": 7})
    sweep_segments(pipeline, T0)  # the first sweep evaluates in full
    sweep_segments(pipeline, T0 + 22 * DAY + timedelta(hours=12))  # so does the daily re-base
    assert _members(engine, soon) == set()

    clock.set(T0 + 23 * DAY + timedelta(minutes=1))  # the expiry is 7 days away less a minute
    with writing(engine) as conn:
        index = pipeline.segment_index.current(conn)
        outcome = run_sweep(conn, index, clock.now())
        pipeline.record_many(
            conn, [(m.customer_id, m.name, m.properties) for m in outcome.transitions]
        )
    assert outcome.visited[soon] == 1  # narrowed to the one customer whose lot crossed
    assert _members(engine, soon) == {cid} and not set(others) & _members(engine, soon)
    assert [e["segment_name"] for e in timeline(engine, cid, "Segment Entered")] == ["expiring"]

    clock.set(T0 + 30 * DAY + timedelta(minutes=1))  # expired (before the daily run)
    sweep_segments(pipeline, clock.now())
    assert _members(engine, soon) == set()


def test_bad_loyalty_conditions_are_refused_with_their_path(
    client: TestClient, engine: sa.Engine, secret_key: str
) -> None:
    bad = [
        ({"loyalty": "points_expiring", "within_days": -3}, "rules.all[1].within_days"),
        ({"loyalty": "points_expiring", "within_days": "7"}, "rules.all[1].within_days"),
        ({"loyalty": "points_expiring", "within_days": 7, "at_least": 0}, "rules.all[1].at_least"),
        ({"loyalty": "points_expiring"}, "rules.all[1].within_days"),
        ({"loyalty": "balance", "op": "around", "value": 5}, "rules.all[1].op"),
        ({"loyalty": "balance", "op": "ge", "value": "many"}, "rules.all[1].value"),
        ({"loyalty": "balance", "op": "ge", "value": True}, "rules.all[1].value"),
        ({"loyalty": "tier", "op": "contains", "value": "Go"}, "rules.all[1].op"),
        ({"loyalty": "tier", "op": "in", "value": []}, "rules.all[1].value"),
        ({"loyalty": "tier", "op": "eq", "value": 3}, "rules.all[1].value"),
        (
            {"loyalty": "tier", "op": "eq", "value": "Gold", "within_days": 3},
            "rules.all[1].within_days",
        ),
        ({"loyalty": "karma", "op": "eq", "value": 1}, "rules.all[1].loyalty"),
    ]
    for condition, where in bad:
        rules = {"all": [{"attribute": "city", "op": "exists"}, condition]}
        r = client.post(
            "/api/segments", json={"name": "bad", "rules": rules}, headers=bearer(secret_key)
        )
        assert r.status_code == 422, (condition, r.text)
        assert where in r.text, (condition, r.text)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(segments)).scalar() == 0
    with pytest.raises(InvalidInput) as caught:
        parse_rule({"loyalty": "points_expiring", "within_days": 0})
    assert caught.value.problems[0].where == "rule.within_days"


@settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    now=st.sampled_from(agree.NOWS),
    people=st.lists(agree.customer, min_size=1, max_size=8),
    trees=st.lists(
        st.recursive(
            agree._loyalty(),
            lambda kids: st.one_of(
                st.lists(kids, min_size=1, max_size=3).map(lambda c: {"any": c}),
                kids.map(lambda c: {"not": c}),
            ),
            max_leaves=3,
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_loyalty_rules_agree_at_the_window_bounds(
    engine: sa.Engine, now: datetime, people: list[dict[str, Any]], trees: list[Any]
) -> None:
    """The agreement test's store and loyalty rules only: lots expiring exactly on a
    window's bound come up often enough to catch an off-by-one in either evaluator."""
    ids = agree._store(engine, now, people)
    with engine.connect() as conn:
        for tree in trees:
            rule = parse_rule(tree)
            by_sql = set(member_ids(conn, rule, now))
            assert by_sql == evaluate(conn, rule, ids, now), rule.to_json()
