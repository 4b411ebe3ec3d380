"""Keeping rule-segment membership current: on each batch, and by a sweep.

Real time: after a batch is stored, the pipeline says what changed for whom (event names,
customer columns, traits, consent channels, memberships). Only segments whose rule reads
one of those are re-evaluated, only for those customers, with one bulk snapshot load for
all of them; a segment that reads another segment is evaluated after it (topological
order), so a change flows through in the same transaction.

Sweep: a rule whose answer moves with time alone ("not performed for 30 days", birthdays)
is re-checked in SQL and compared with the stored membership, only for the customers whose
answer can have changed since the segment's last sweep (the rule's ``crossing_sql``, see
``crossing``), with a full evaluation when there is nothing safe to narrow from.

Entering and leaving write ``segment_members`` rows (since/until) and are reported back as
(customer, event name, properties) for the pipeline to put on the timeline. A segment's
first computation (``backfill``) fills membership without events, so creating a segment
over a million customers does not write a million timeline events.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rapport.segments.compiler import member_ids, tune, where_clause
from rapport.segments.config import read_setting, write_setting
from rapport.segments.context import Context, Snapshot
from rapport.segments.crossing import any_of, never
from rapport.segments.definitions import Segment, all_segments
from rapport.segments.dependencies import Dependencies, dependencies
from rapport.segments.evaluator import load_snapshots, matches
from rapport.segments.rules import All, Rule
from rapport.store.tables import customers as customer_table
from rapport.store.tables import segment_members

ENTERED = "Segment Entered"
EXITED = "Segment Exited"
IN_CHUNK = 500
# The sweep's memory: {segment id: {"at", "full", "version"}} (see ``run_sweep``).
SWEEP_STATE = "segment_sweeps"
SWEEP_OVERLAP = timedelta(minutes=5)
SWEEP_FULL_EVERY = timedelta(days=1)
# Readers of a segment get its moved customers as a list of ids; past this, in full.
MOVED_LIMIT = 5000
# Up to this many candidates are re-checked by id; more, by joining the crossing in SQL.
CANDIDATES_BY_ID = 2000


@dataclass
class Touched:
    """What a batch changed for one customer."""

    events: set[str] = field(default_factory=set)
    fields: set[str] = field(default_factory=set)
    traits: bool = False
    consents: set[str] = field(default_factory=set)
    segments: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class Indexed:
    segment: Segment
    rule: Rule
    deps: Dependencies


@dataclass(frozen=True)
class Transition:
    customer_id: int
    name: str  # ENTERED or EXITED
    properties: dict[str, Any]


class SegmentIndex:
    """The rule segments with what each reads, in evaluation order; reloaded when changed.

    The API calls ``invalidate`` after a change; other processes pick it up within ``ttl``.
    """

    def __init__(self, ttl: float = 2.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._loaded = -1.0
        self.items: list[Indexed] = []
        self.by_id: dict[int, Indexed] = {}
        self.dependents: dict[int, list[int]] = {}

    def invalidate(self) -> None:
        self._loaded = -1.0

    def current(self, conn: sa.Connection) -> SegmentIndex:
        if time.monotonic() - self._loaded > self.ttl:
            with self._lock:
                self._load(conn)
        return self

    def _load(self, conn: sa.Connection) -> None:
        items = []
        for seg in all_segments(conn, kind="rules"):
            rule = seg.rule()
            items.append(Indexed(seg, rule, dependencies(rule)))
        self.items = _topological(items)
        self.by_id = {i.segment.id: i for i in self.items}
        self.dependents = {}
        for item in self.items:
            for upstream in item.deps.segments:
                self.dependents.setdefault(upstream, []).append(item.segment.id)
        self._loaded = time.monotonic()

    def time_dependent(self) -> list[Indexed]:
        return [i for i in self.items if i.deps.time_dependent]

    def affected(self, touched: Touched) -> set[int]:
        found = set()
        for item in self.items:
            d = item.deps
            if (
                (touched.events and (d.every_event or d.events & touched.events))
                or d.customer_fields & touched.fields
                or (touched.traits and "traits" in d.customer_fields)
                or d.consent_channels & touched.consents
                or d.segments & touched.segments
            ):
                found.add(item.segment.id)
        return found


def _topological(items: list[Indexed]) -> list[Indexed]:
    """Segments that others read come first (definitions refuse cycles)."""
    by_id = {i.segment.id: i for i in items}
    done: set[int] = set()
    order: list[Indexed] = []

    def visit(item: Indexed, path: set[int]) -> None:
        sid = item.segment.id
        if sid in done or sid in path:
            return
        for upstream in sorted(item.deps.segments):
            if upstream in by_id:
                visit(by_id[upstream], path | {sid})
        done.add(sid)
        order.append(item)

    for item in items:
        visit(item, set())
    return order


def _current_members(
    conn: sa.Connection, segment_ids: Iterable[int], customer_ids: list[int]
) -> set[tuple[int, int]]:
    sm = segment_members.c
    sids = sorted(segment_ids)
    found: set[tuple[int, int]] = set()
    for start in range(0, len(customer_ids), IN_CHUNK):
        chunk = customer_ids[start : start + IN_CHUNK]
        found.update(
            (int(s), int(c))
            for s, c in conn.execute(
                sa.select(sm.segment_id, sm.customer_id).where(
                    sm.customer_id.in_(chunk), sm.segment_id.in_(sids), sm.until.is_(None)
                )
            )
        )
    return found


def _write(
    conn: sa.Connection,
    entered: list[tuple[int, int]],
    left: list[tuple[int, int]],
    now: datetime,
) -> None:
    if entered:
        conn.execute(
            segment_members.insert(),
            [{"segment_id": s, "customer_id": c, "since": now} for s, c in entered],
        )
    if left:
        sm = segment_members.c
        conn.execute(
            segment_members.update()
            .where(
                sm.segment_id == sa.bindparam("s"),
                sm.customer_id == sa.bindparam("c"),
                sm.until.is_(None),
            )
            .values(until=sa.bindparam("now", type_=sm.until.type)),
            [{"s": s, "c": c, "now": now} for s, c in left],
        )


def _transitions(
    index: SegmentIndex, entered: list[tuple[int, int]], left: list[tuple[int, int]]
) -> list[Transition]:
    out = []
    for name, pairs in ((ENTERED, entered), (EXITED, left)):
        for sid, cid in pairs:
            seg = index.by_id[sid].segment
            out.append(Transition(cid, name, {"segment_id": sid, "segment_name": seg.name}))
    return out


def refresh(
    conn: sa.Connection, index: SegmentIndex, touched: dict[int, Touched], now: datetime
) -> list[Transition]:
    """Re-evaluate the segments each customer's changes can affect; returns the moves."""
    pending: dict[int, set[int]] = {}
    for cid, change in touched.items():
        for sid in index.affected(change):
            pending.setdefault(sid, set()).add(cid)
    if not pending:
        return []
    # Everything downstream of an affected segment may move too: load for it as well.
    frontier = list(pending)
    reach = set(pending)
    while frontier:
        for dep in index.dependents.get(frontier.pop(), []):
            if dep not in reach:
                reach.add(dep)
                frontier.append(dep)
    items = [i for i in index.items if i.segment.id in reach]
    customers = sorted({c for cids in pending.values() for c in cids})
    combined = All(tuple(i.rule for i in items))
    snapshots: dict[int, Snapshot] = load_snapshots(conn, customers, combined, now)
    current = _current_members(conn, reach, customers)
    entered: list[tuple[int, int]] = []
    left: list[tuple[int, int]] = []
    for item in items:  # topological order
        sid = item.segment.id
        for cid in sorted(pending.get(sid, ())):
            snap = snapshots.get(cid)
            now_in = snap is not None and matches(item.rule, snap, now)
            was_in = (sid, cid) in current
            if now_in == was_in:
                continue
            (entered if now_in else left).append((sid, cid))
            if snap is not None:
                snap.segments = snap.segments | {sid} if now_in else snap.segments - {sid}
            for dep in index.dependents.get(sid, []):
                pending.setdefault(dep, set()).add(cid)
    # Readers of a segment see its new membership: snapshots carry it for customers loaded.
    _write(conn, entered, left, now)
    return _transitions(index, entered, left)


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
                has = {c for _, c in _current_members(conn, [sid], candidates)}
            else:
                should = has = set()
        these_in = [(sid, c) for c in sorted(should - has)]
        these_out = [(sid, c) for c in sorted(has - should)]
        _write(conn, these_in, these_out, now)
        moved[sid] = {c for _, c in these_in} | {c for _, c in these_out}
        entered += these_in
        left += these_out
        state[str(sid)] = {
            "at": now.isoformat(),
            "full": full_at.isoformat(),
            "version": item.segment.version,
        }
    kept = {k: v for k, v in state.items() if int(k) in index.by_id}
    if outcome.visited:
        write_setting(conn, SWEEP_STATE, kept, now)
    if not backfill:
        outcome.transitions = _transitions(index, entered, left)
    return outcome


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
