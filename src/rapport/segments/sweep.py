"""The sweep: membership that time alone moves.

A rule whose answer moves with time alone ("not performed for 30 days", birthdays) is
re-checked in SQL and compared with the stored membership, only for the customers whose
answer can have changed since the segment's last sweep (the rule's ``crossing_sql``, see
``crossing``), with a full evaluation when there is nothing safe to narrow from.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rapport.segments.compiler import member_ids, tune, where_clause
from rapport.segments.config import read_setting, write_setting
from rapport.segments.context import Context
from rapport.segments.crossing import any_of, never
from rapport.segments.membership import (
    SegmentIndex,
    Transition,
    current_members,
    transitions_of,
    write_moves,
)
from rapport.segments.rules import Rule
from rapport.store.tables import customers as customer_table
from rapport.store.tables import segment_members

SWEEP_STATE = "segment_sweeps"
SWEEP_OVERLAP = timedelta(minutes=5)
SWEEP_FULL_EVERY = timedelta(days=1)
# Readers of a segment get its moved customers as a list of ids; past this, in full.
MOVED_LIMIT = 5000
# Up to this many candidates are re-checked by id; more, by joining the crossing in SQL.
CANDIDATES_BY_ID = 2000
# A sweep that moved at least this many memberships refreshes the planner's statistics of
# ``segment_members`` (PostgreSQL), see ``_analyze``.
ANALYZE_AFTER = 10_000


@dataclass
class SweepOutcome:
    """The moves, and per segment how many customers were re-checked (None: all of them)."""

    transitions: list[Transition]
    visited: dict[int, int | None] = field(default_factory=dict)


def sweep(
    conn: sa.Connection,
    index: SegmentIndex,
    now: datetime,
    segment_ids: Iterable[int] | None = None,
    *,
    backfill: bool = False,
) -> list[Transition]:
    """Re-check the given segments in full, or by default the time-dependent ones (and
    their readers) narrowed to who can have changed; see ``run_sweep``."""
    return run_sweep(conn, index, now, segment_ids, backfill=backfill).transitions


def run_sweep(
    conn: sa.Connection,
    index: SegmentIndex,
    now: datetime,
    segment_ids: Iterable[int] | None = None,
    *,
    backfill: bool = False,
    overlap: timedelta = SWEEP_OVERLAP,
    full_every: timedelta = SWEEP_FULL_EVERY,
    by_id: int = CANDIDATES_BY_ID,
) -> SweepOutcome:
    """Bring membership up to ``now`` where time alone moved it; writes the changes.

    Given ``segment_ids`` (a new or changed rule, readers of RFM cells), each is evaluated
    in full: something other than time changed. By default the time-dependent segments and
    every segment that reads one are swept, each narrowed to the customers its rule's
    crossing names between its last sweep and now (``sweep_candidates``), plus those whose
    membership of an upstream segment this sweep just changed. A segment is evaluated in
    full instead when it was never swept, its rule changed since, the clock went back,
    its last full evaluation is ``full_every`` old (a daily re-base that also heals
    anything a crash or an outside write left behind), or its rule cannot say who crosses.
    ``overlap`` re-checks a little before the last sweep: an event committed just after
    a sweep started was evaluated at its own, slightly earlier, moment. Up to ``by_id``
    candidates are looked up by id; more are re-checked by joining the crossing in SQL.

    With ``backfill`` the changes are written but no events returned.
    """
    tune(conn)
    if segment_ids is not None:
        wanted = set(segment_ids)
    else:  # time-dependent segments, and every segment that reads one of them
        wanted = {i.segment.id for i in index.time_dependent()}
        frontier = list(wanted)
        while frontier:
            for dep in index.dependents.get(frontier.pop(), []):
                if dep not in wanted:
                    wanted.add(dep)
                    frontier.append(dep)
    state: dict[str, dict[str, Any]] = dict(read_setting(conn, SWEEP_STATE) or {})
    dialect = conn.dialect.name
    moved: dict[int, set[int]] = {}
    outcome = SweepOutcome([])
    entered: list[tuple[int, int]] = []
    left: list[tuple[int, int]] = []
    sm = segment_members.c
    for item in (i for i in index.items if i.segment.id in wanted):  # topological order
        sid = item.segment.id
        last = state.get(str(sid))
        cross = None
        if segment_ids is None:
            since = _narrow_from(last, item.segment.version, now, full_every)
            if since is not None:
                cross = _crossing(item.rule, since - overlap, now, dialect)
        upstream = set().union(*(moved.get(u, set()) for u in item.deps.segments))
        if cross is not None and upstream:
            cross = (
                any_of([cross, customer_table.c.id.in_(sorted(upstream))])
                if len(upstream) <= MOVED_LIMIT
                else None
            )
        if cross is None:  # in full
            should = set(member_ids(conn, item.rule, now))
            has = set(
                conn.execute(
                    sa.select(sm.customer_id).where(sm.segment_id == sid, sm.until.is_(None))
                ).scalars()
            )
            outcome.visited[sid] = None
            full_at = now
        else:
            candidates = [] if never(cross) else _ids(conn, cross)
            outcome.visited[sid] = len(candidates)
            full_at = _time(last["full"]) if last else now
            if len(candidates) > by_id:  # many: let the store join the crossing
                should = set(
                    conn.execute(
                        sa.select(customer_table.c.id).where(
                            where_clause(item.rule, now, dialect), cross
                        )
                    ).scalars()
                )
                has = set(
                    conn.execute(
                        sa.select(sm.customer_id).where(
                            sm.segment_id == sid,
                            sm.until.is_(None),
                            sm.customer_id.in_(sa.select(customer_table.c.id).where(cross)),
                        )
                    ).scalars()
                )
            elif candidates:  # few: look them up by id instead of scanning for them again
                should = set(
                    conn.execute(
                        sa.select(customer_table.c.id).where(
                            where_clause(item.rule, now, dialect),
                            customer_table.c.id.in_(candidates),
                        )
                    ).scalars()
                )
                has = {c for _, c in current_members(conn, [sid], candidates)}
            else:
                should = has = set()
        these_in = [(sid, c) for c in sorted(should - has)]
        these_out = [(sid, c) for c in sorted(has - should)]
        write_moves(conn, these_in, these_out, now)
        moved[sid] = {c for _, c in these_in} | {c for _, c in these_out}
        entered += these_in
        left += these_out
        state[str(sid)] = {
            "at": now.isoformat(),
            "full": full_at.isoformat(),
            "version": item.segment.version,
        }
    if len(entered) + len(left) >= ANALYZE_AFTER:
        _analyze(conn)
    kept = {k: v for k, v in state.items() if int(k) in index.by_id}
    if outcome.visited:
        write_setting(conn, SWEEP_STATE, kept, now)
    if not backfill:
        outcome.transitions = transitions_of(index, entered, left)
    return outcome


def _analyze(conn: sa.Connection) -> None:
    """Statistics of ``segment_members`` after a large change (a new segment's back-fill).

    The real-time step reads a batch's memberships by customer. With statistics taken
    while the table was nearly empty, PostgreSQL estimates "until IS NULL" at a few dozen
    rows and scans all current memberships through the partial unique index, filtering by
    customer: 6 ms instead of 0.1 ms a batch on 10,000 customers, growing with the store,
    until autovacuum gets to the table. SQLite's planner takes the customer index anyway.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ANALYZE segment_members")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _narrow_from(
    last: dict[str, Any] | None, version: int, now: datetime, full_every: timedelta
) -> datetime | None:
    """When membership was last known right, if the sweep may narrow from there."""
    if not last or last.get("version") != version:
        return None
    at, full = _time(last["at"]), _time(last["full"])
    if now < at or now - full >= full_every:
        return None
    return at


def _crossing(rule: Rule, since: datetime, now: datetime, dialect: str) -> Any:
    return rule.crossing_sql(Context.at(since, dialect), Context.at(now, dialect))


def _ids(conn: sa.Connection, cross: Any) -> list[int]:
    query = sa.select(customer_table.c.id).where(cross).order_by(customer_table.c.id)
    return [int(i) for i in conn.execute(query).scalars()]


def sweep_candidates(
    conn: sa.Connection, rule: Rule, since: datetime, now: datetime
) -> list[int] | None:
    """The customers whose answer to ``rule`` may differ between ``since`` and ``now``
    (``since <= now``), in id order: all a narrowed sweep re-checks. None when the rule
    cannot tell (a condition type without a crossing), and the sweep evaluates in full.
    """
    cross = _crossing(rule, since, now, conn.dialect.name)
    if cross is None:
        return None
    return [] if never(cross) else _ids(conn, cross)
