"""The narrowed sweep ends where a full evaluation would, on SQLite and on PostgreSQL.

The sweep re-checks only the customers a rule's ``crossing_sql`` names between the last
sweep and now. Missing one would leave a stale member for good (nothing else re-checks a
customer who does nothing), so a property test builds random stores and time-dependent
rules (the generators of the agreement test), establishes membership at ``t0`` with a full
evaluation, moves the clock by random steps (minutes to weeks, across UTC midnight, the
year end, a leap day) and after each narrowed sweep compares the stored membership of
every segment with ``member_ids`` at that moment. Hand-written cases pin the boundaries
and show that the sweep reads only the candidates.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from rapport.segments.compiler import member_ids
from rapport.segments.membership import SegmentIndex
from rapport.segments.rules import parse_rule
from rapport.segments.sweep import SWEEP_STATE, run_sweep, sweep_candidates
from rapport.store.engine import writing
from rapport.store.tables import app_settings, customers, events, segment_members, segments
from tests.test_segments_agree import (
    NOWS,
    _event,
    _remap_segments,
    _store,
    customer,
    leaf,
)
from tests.test_segments_store import add_customer, add_events, add_segment

NEVER_FULL = timedelta(days=36500)  # keep the narrowed path under test for every step

RELATIVE = ["within_last", "within_next", "more_than_days_ago", "anniversary_within"]
SPANS = st.sampled_from([0, 1, 2, 3, 7, 30])


def _timed() -> st.SearchStrategy[dict[str, Any]]:
    """Leaves that move with time alone, with small day counts so boundaries are met."""
    since = st.builds(
        lambda f, op, n: {"computed": f, "op": op, "value": n},
        st.sampled_from(["days_since_last_order", "days_since_created", "days_since_last_seen"]),
        st.sampled_from(["eq", "ne", "lt", "le", "gt", "ge"]),
        SPANS,
    )
    ranged = st.builds(
        lambda f, lo, w: {"computed": f, "op": "between", "value": [lo, lo + w]},
        st.sampled_from(["days_since_last_order", "days_since_created"]),
        SPANS,
        st.integers(0, 3),
    ) | st.builds(
        lambda vals, op: {"computed": "days_since_last_seen", "op": op, "value": vals},
        st.lists(SPANS, min_size=1, max_size=3),
        st.sampled_from(["in", "not_in"]),
    )
    dated = st.builds(
        lambda f, op, n: {"computed": f, "op": op, "value": n},
        st.sampled_from(["last_order_at", "last_seen_at"]),
        st.sampled_from(RELATIVE),
        SPANS,
    ) | st.builds(
        lambda f, op, n: {"attribute": f, "op": op, "value": n},
        st.sampled_from(["birthday", "created_at", "traits.since"]),
        st.sampled_from(RELATIVE),
        SPANS,
    )
    return st.one_of(since, ranged, dated, _event())


timed = _timed()
timed_rules = st.recursive(
    st.one_of(timed, timed, timed, leaf),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda c: {"all": c}),
        st.lists(children, min_size=1, max_size=3).map(lambda c: {"any": c}),
        children.map(lambda c: {"not": c}),
    ),
    max_leaves=4,
)
step = st.one_of(
    st.integers(1, 90).map(lambda m: timedelta(minutes=m)),
    st.integers(1, 36).map(lambda h: timedelta(hours=h)),
    st.tuples(st.integers(1, 45), st.integers(0, 1439)).map(
        lambda t: timedelta(days=t[0], minutes=t[1])
    ),
)


def _stored(conn: sa.Connection, segment_id: int) -> set[int]:
    sm = segment_members.c
    return set(
        conn.execute(
            sa.select(sm.customer_id).where(sm.segment_id == segment_id, sm.until.is_(None))
        ).scalars()
    )


def _rule_segments(conn: sa.Connection) -> list[int]:
    query = sa.select(segments.c.id).where(segments.c.kind == "rules").order_by(segments.c.id)
    return [int(i) for i in conn.execute(query).scalars()]


def _forget_sweeps(conn: sa.Connection) -> None:
    conn.execute(app_settings.delete().where(app_settings.c.key == SWEEP_STATE))


def _check(conn: sa.Connection, index: SegmentIndex, now: datetime) -> None:
    for item in index.items:
        expected = set(member_ids(conn, item.rule, now))
        assert _stored(conn, item.segment.id) == expected, (
            item.rule.to_json(),
            now.isoformat(),
            sorted(_stored(conn, item.segment.id)),
            sorted(expected),
        )


@settings(
    max_examples=int(os.environ.get("SEGMENTS_SWEEP_EXAMPLES", "50")),
    derandomize=os.environ.get("SEGMENTS_SWEEP_EXAMPLES") is None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(
    t0=st.sampled_from(NOWS),
    people=st.lists(customer, min_size=3, max_size=14),
    trees=st.lists(st.one_of(timed, timed_rules), min_size=2, max_size=4),
    reader=st.one_of(st.none(), timed_rules),
    steps=st.lists(st.sampled_from(["any", "edge", "edge", "midnight"]), min_size=1, max_size=4),
    overlap=st.sampled_from([timedelta(0), timedelta(minutes=5)]),
    by_id=st.sampled_from([0, 2000]),
    data=st.data(),
)
def test_narrowed_sweep_equals_full_evaluation(
    engine: sa.Engine,
    t0: datetime,
    people: list[dict[str, Any]],
    trees: list[Any],
    reader: Any,
    steps: list[str],
    overlap: timedelta,
    by_id: int,
    data: st.DataObject,
) -> None:
    _store(engine, t0, people)
    with writing(engine) as conn:
        _forget_sweeps(conn)
        static = [
            int(i) for i in conn.exec_driver_sql("SELECT id FROM segments ORDER BY id").scalars()
        ]
        made = [add_segment(conn, f"r{i}", _remap_segments(t, static)) for i, t in enumerate(trees)]
        if reader is not None:  # reads a time-dependent segment: follows its moves
            body = {"any": [{"segment": made[0]}, _remap_segments(reader, static)]}
            add_segment(conn, "reader", {"all": [body, {"not": {"segment": made[-1]}}]})
        index = SegmentIndex(ttl=0).current(conn)
        run_sweep(conn, index, t0, _rule_segments(conn))  # membership at t0, in full
        _check(conn, index, t0)
        moments = _moments(conn)
        spans = sorted(
            {k for item in index.items for n in _numbers(item.rule.to_json()) for k in (n, n + 1)}
        )
    now = t0
    for kind in steps:
        now = _next(data, kind, now, moments, spans)
        event(kind)
        with writing(engine) as conn:
            outcome = run_sweep(
                conn, index, now, overlap=overlap, full_every=NEVER_FULL, by_id=by_id
            )
            assert all(v is not None for v in outcome.visited.values()), outcome.visited
            _check(conn, index, now)


def _moments(conn: sa.Connection) -> list[datetime]:
    """Every datetime a rule can compare with ``now``: where the boundaries are."""
    c = customers.c
    found = [
        t
        for row in conn.execute(
            sa.select(c.created_at, c.last_seen_at, c.last_order_at, c.first_order_at)
        )
        for t in row
        if t is not None
    ]
    found += conn.execute(sa.select(events.c.occurred_at)).scalars().all()
    return sorted(set(found))


def _numbers(rule: Any, key: str = "") -> list[int]:
    """The day counts in a rule (and a few other small numbers, harmlessly)."""
    if isinstance(rule, dict):
        return [n for k, v in rule.items() if k != "segment" for n in _numbers(v, k)]
    if isinstance(rule, list):
        return [n for v in rule for n in _numbers(v, key)]
    small = isinstance(rule, int) and not isinstance(rule, bool) and 0 <= rule <= 60
    return [rule] if small and key != "segment" else []


def _next(
    data: st.DataObject, kind: str, now: datetime, moments: list[datetime], spans: list[int]
) -> datetime:
    """The next clock: a random step, or one landing on (or a minute around) a boundary,
    a stored time plus whole days or a UTC midnight, where an off-by-one would show."""
    nudge = data.draw(st.sampled_from([timedelta(0), timedelta(minutes=1), -timedelta(minutes=1)]))
    if kind == "edge" and moments:
        days = data.draw(st.sampled_from(spans) if spans else st.integers(0, 41))
        target = data.draw(st.sampled_from(moments)) + timedelta(days=days)
        target += nudge
        if target > now:
            return target
    if kind == "midnight":
        days = data.draw(st.integers(1, 3))
        target = datetime.combine(now.date() + timedelta(days=days), datetime.min.time(), UTC)
        if target + nudge > now:
            return target + nudge
    return now + data.draw(step)


# ---------------------------------------------------------------- hand-written cases

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _segment(conn: sa.Connection, name: str, rule: dict[str, Any]) -> int:
    parse_rule(rule)
    return add_segment(conn, name, rule)


def _start(engine: sa.Engine, at: datetime) -> SegmentIndex:
    with writing(engine) as conn:
        index = SegmentIndex(ttl=0).current(conn)
        run_sweep(conn, index, at, _rule_segments(conn))
    return index


def _sweep(engine: sa.Engine, index: SegmentIndex, at: datetime, **kw: Any) -> Any:
    kw.setdefault("overlap", timedelta(0))
    with writing(engine) as conn:
        return run_sweep(conn, index, at, **kw)


def _members(engine: sa.Engine, segment_id: int) -> set[int]:
    with engine.connect() as conn:
        return _stored(conn, segment_id)


def test_exactly_n_days_is_the_edge(engine: sa.Engine) -> None:
    """``more_than_days_ago 3`` is strict, ``days_since ge 3`` is not: one minute apart."""
    with writing(engine) as conn:
        edge = add_customer(conn, last_seen_at=T0 - timedelta(days=3) + timedelta(minutes=1))
        add_customer(conn, last_seen_at=T0 - timedelta(days=90))
        strict = _segment(
            conn, "strict", {"computed": "last_seen_at", "op": "more_than_days_ago", "value": 3}
        )
        floor = _segment(
            conn, "floor", {"computed": "days_since_last_seen", "op": "ge", "value": 3}
        )
    index = _start(engine, T0)
    assert edge not in _members(engine, strict) | _members(engine, floor)
    out = _sweep(engine, index, T0 + timedelta(minutes=1))  # exactly 3 days
    assert out.visited == {strict: 0, floor: 1}
    assert edge not in _members(engine, strict) and edge in _members(engine, floor)
    out = _sweep(engine, index, T0 + timedelta(minutes=2))
    assert out.visited == {strict: 1, floor: 0}
    assert edge in _members(engine, strict)
    assert [t.name for t in out.transitions] == ["Segment Entered"]


def test_event_windows_move_only_at_utc_midnight(engine: sa.Engine) -> None:
    late = datetime(2026, 3, 12, 23, 58, tzinfo=UTC)
    with writing(engine) as conn:
        leaving = add_customer(conn)
        add_events(conn, leaving, [("Product Added", datetime(2026, 3, 10, 9, tzinfo=UTC), {})])
        staying = add_customer(conn)
        add_events(conn, staying, [("Product Added", datetime(2026, 3, 11, 9, tzinfo=UTC), {})])
        window = _segment(conn, "added", {"event": "Product Added", "within_last": 2})
        quiet = _segment(conn, "quiet", {"event": "Product Added", "not_for_days": 2})
    index = _start(engine, late)
    assert _members(engine, window) == {leaving, staying}
    out = _sweep(engine, index, late + timedelta(minutes=1))  # 23:59, the same day
    assert out.visited == {window: 0, quiet: 0} and out.transitions == []
    midnight = late + timedelta(minutes=3)  # 00:01 on 13 March: 10 March left the window
    with engine.connect() as conn:
        rule = index.by_id[window].rule
        assert sweep_candidates(conn, rule, late, midnight) == [leaving]
    out = _sweep(engine, index, midnight)
    assert out.visited == {window: 1, quiet: 1}
    assert _members(engine, window) == {staying}
    assert _members(engine, quiet) == {leaving}


def test_birthdays_wrap_the_year_end(engine: sa.Engine) -> None:
    """Window on 30 Dec: 30 Dec – 2 Jan; on 31 Dec: 31 Dec – 3 Jan."""
    at = datetime(2025, 12, 30, 18, 0, tzinfo=UTC)
    with writing(engine) as conn:
        born = {
            md: add_customer(conn, birthday=date(1990, *md))
            for md in [(12, 30), (1, 1), (1, 3), (7, 7)]
        }
        seg = _segment(
            conn, "birthday", {"attribute": "birthday", "op": "anniversary_within", "value": 3}
        )
    index = _start(engine, at)
    assert _members(engine, seg) == {born[(12, 30)], born[(1, 1)]}
    nxt = at + timedelta(hours=7)  # 01:00 on 31 December
    with engine.connect() as conn:
        got = sweep_candidates(conn, index.by_id[seg].rule, at, nxt)
    assert got == sorted([born[(12, 30)], born[(1, 3)]])
    _sweep(engine, index, nxt)
    assert _members(engine, seg) == {born[(1, 1)], born[(1, 3)]}


def test_leap_day_birthdays_in_a_common_year(engine: sa.Engine) -> None:
    """In 2027, 29 February is celebrated on 28 February: it stays in the window as long
    as the 28th does, and leaves with it."""
    at = datetime(2027, 2, 25, 12, 0, tzinfo=UTC)
    with writing(engine) as conn:
        leap = add_customer(conn, birthday=date(1992, 2, 29))
        seg = _segment(
            conn, "birthday", {"attribute": "birthday", "op": "anniversary_within", "value": 3}
        )
    index = _start(engine, at)
    assert _members(engine, seg) == {leap}
    out = _sweep(engine, index, at + timedelta(days=1), full_every=NEVER_FULL)
    assert out.visited == {seg: 0}
    assert _members(engine, seg) == {leap}
    assert _sweep(engine, index, at + timedelta(days=4), full_every=NEVER_FULL).visited == {
        seg: 1
    }  # 1 March: the 28th has left
    assert _members(engine, seg) == set()


def test_a_minute_later_only_the_edge_is_read(engine: sa.Engine) -> None:
    """200 customers, 3 of them at the 30-day edge: one minute later, 3 are re-checked."""
    with writing(engine) as conn:
        edge = []
        for i in range(200):
            seen = (
                T0 - timedelta(days=30) + timedelta(seconds=10 + 15 * i)
                if i < 3
                else T0 - timedelta(days=i % 29, hours=1)
            )
            cid = add_customer(conn, last_seen_at=seen, events_count=1)
            if i < 3:
                edge.append(cid)
            add_events(conn, cid, [("Signed In", seen, {})])
        inactive = _segment(
            conn, "inactive", {"computed": "last_seen_at", "op": "more_than_days_ago", "value": 30}
        )
        signed = _segment(conn, "signed in", {"event": "Signed In", "within_last": 7})
        stale_birthday = _segment(
            conn, "birthdays", {"attribute": "birthday", "op": "anniversary_within", "value": 7}
        )
    index = _start(engine, T0)
    out = _sweep(engine, index, T0 + timedelta(minutes=1))
    assert out.visited == {inactive: 3, signed: 0, stale_birthday: 0}
    assert set(edge) <= _members(engine, inactive)
    with engine.connect() as conn:
        assert set(member_ids(conn, index.by_id[inactive].rule, T0 + timedelta(minutes=1))) == (
            _members(engine, inactive)
        )


def test_what_falls_back_to_a_full_evaluation(engine: sa.Engine) -> None:
    with writing(engine) as conn:
        cid = add_customer(conn, last_seen_at=T0 - timedelta(days=2))
        seg = _segment(
            conn, "quiet", {"computed": "last_seen_at", "op": "more_than_days_ago", "value": 3}
        )
    first = _sweep(engine, SegmentIndex(ttl=0).current(engine.connect()), T0)
    assert first.visited == {seg: None}  # never swept
    with writing(engine) as conn:
        index = SegmentIndex(ttl=0).current(conn)
    assert _sweep(engine, index, T0 + timedelta(hours=1)).visited == {seg: 0}
    assert _sweep(engine, index, T0).visited == {seg: None}  # the clock went back
    later = T0 + timedelta(days=1, hours=2)  # the daily full evaluation is due
    assert _sweep(engine, index, later).visited == {seg: None}
    assert _members(engine, seg) == {cid}
    with writing(engine) as conn:  # a changed rule: its version goes up
        conn.execute(segments.update().where(segments.c.id == seg).values(version=2))
        index = SegmentIndex(ttl=0).current(conn)
    assert _sweep(engine, index, later + timedelta(minutes=1)).visited == {seg: None}
    assert _sweep(engine, index, later + timedelta(minutes=2)).visited == {seg: 0}


def test_a_reader_follows_the_moves_of_what_it_reads(engine: sa.Engine) -> None:
    with writing(engine) as conn:
        moving = add_customer(conn, last_seen_at=T0 - timedelta(days=3) + timedelta(minutes=1))
        add_customer(conn, last_seen_at=T0 - timedelta(days=1))
        quiet = _segment(
            conn, "quiet", {"computed": "last_seen_at", "op": "more_than_days_ago", "value": 3}
        )
        reader = _segment(conn, "not quiet", {"not": {"segment": quiet}})
    index = _start(engine, T0)
    assert moving in _members(engine, reader)
    out = _sweep(engine, index, T0 + timedelta(minutes=5))
    assert out.visited == {quiet: 1, reader: 1}
    assert moving not in _members(engine, reader) and moving in _members(engine, quiet)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(customers)).scalar() == 2


def test_a_large_back_fill_refreshes_the_planner_statistics(
    engine: sa.Engine, monkeypatch: Any
) -> None:
    """Past ``ANALYZE_AFTER`` moves, PostgreSQL's statistics of ``segment_members`` count
    the rows just written (the real-time reads plan by them); entries and exits are
    written alike on both stores."""
    from rapport.segments import sweep as sweep_module

    monkeypatch.setattr(sweep_module, "ANALYZE_AFTER", 3)
    with writing(engine) as conn:
        ids = [add_customer(conn, last_seen_at=T0 - timedelta(days=d)) for d in (1, 5, 6, 7)]
        quiet = _segment(
            conn, "quiet", {"computed": "last_seen_at", "op": "more_than_days_ago", "value": 3}
        )
    _start(engine, T0)
    assert _members(engine, quiet) == set(ids[1:])
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            estimate = conn.exec_driver_sql(
                "SELECT reltuples FROM pg_class WHERE relname = 'segment_members'"
            ).scalar_one()
            live = conn.execute(
                sa.select(sa.func.count()).select_from(segment_members)
            ).scalar_one()
        assert estimate == live == 3
    with writing(engine) as conn:  # two leave at once: one statement on PostgreSQL
        conn.execute(
            customers.update()
            .where(customers.c.id.in_(ids[1:3]))
            .values(last_seen_at=T0 - timedelta(hours=1))
        )
        index = SegmentIndex(ttl=0).current(conn)
        run_sweep(conn, index, T0 + timedelta(minutes=1), [quiet])
    assert _members(engine, quiet) == {ids[3]}
    with engine.connect() as conn:
        closed = conn.execute(
            sa.select(segment_members.c.customer_id, segment_members.c.until).where(
                segment_members.c.until.is_not(None)
            )
        ).all()
    assert sorted(closed) == [
        (ids[1], T0 + timedelta(minutes=1)),
        (ids[2], T0 + timedelta(minutes=1)),
    ]
