"""Keeping rule-segment membership current on each batch (the sweep is in ``sweep``).

Real time: after a batch is stored, the pipeline says what changed for whom (event names,
customer columns, traits, consent channels, memberships). Only segments whose rule reads
one of those are re-evaluated, only for those customers, with one bulk snapshot load for
all of them; a segment that reads another segment is evaluated after it (topological
order), so a change flows through in the same transaction.

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
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.segments.context import Context, Snapshot
from rapport.segments.definitions import Segment, all_segments
from rapport.segments.dependencies import Dependencies, dependencies
from rapport.segments.evaluator import load_snapshots, matches
from rapport.segments.rules import All, Rule
from rapport.store.fast import among, columns_of, db_time, execute, is_sqlite, run_many
from rapport.store.tables import segment_members

ENTERED = "Segment Entered"
EXITED = "Segment Exited"
IN_CHUNK = 500
# The sweep's memory: {segment id: {"at", "full", "version"}} (see ``run_sweep``).


@dataclass
class Touched:
    """What a batch changed for one customer."""

    events: set[str] = field(default_factory=set)
    fields: set[str] = field(default_factory=set)
    traits: bool = False
    consents: set[str] = field(default_factory=set)
    segments: set[int] = field(default_factory=set)
    loyalty: bool = False  # a ledger entry moved the points account (balance, lots, tier)


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
    A reload parses only the rules whose version changed: the rest are kept as they were.
    """

    def __init__(self, ttl: float = 2.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._loaded = -1.0
        self.items: list[Indexed] = []
        self.by_id: dict[int, Indexed] = {}
        self.dependents: dict[int, list[int]] = {}
        # What a set of segments reads together (the real-time step's bulk load), by the
        # set; valid until the next reload.
        self._reads: dict[frozenset[int], Dependencies] = {}
        self._readers = Readers()

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
            known = self.by_id.get(seg.id)
            if known is not None and known.segment == seg:
                items.append(known)
                continue
            rule = seg.rule()
            items.append(Indexed(seg, rule, dependencies(rule)))
        self.items = _topological(items)
        self._reads = {}
        self._readers = Readers.of(self.items)
        self.by_id = {i.segment.id: i for i in self.items}
        self.dependents = {}
        for item in self.items:
            for upstream in item.deps.segments:
                self.dependents.setdefault(upstream, []).append(item.segment.id)
        self._loaded = time.monotonic()

    def reads(self, segment_ids: frozenset[int]) -> tuple[Rule, Dependencies]:
        """One rule that reads what all of ``segment_ids`` read, and its dependencies."""
        combined = All(tuple(i.rule for i in self.items if i.segment.id in segment_ids))
        deps = self._reads.get(segment_ids)
        if deps is None:
            deps = self._reads[segment_ids] = dependencies(combined)
        return combined, deps

    def time_dependent(self) -> list[Indexed]:
        return [i for i in self.items if i.deps.time_dependent]

    def affected(self, touched: Touched) -> set[int]:
        """The segments whose rule reads something ``touched`` names."""
        r = self._readers
        found: set[int] = set()
        if touched.events:
            found |= r.every_event
            for name in touched.events:
                found |= r.events.get(name, _NONE)
        for name in touched.fields:
            found |= r.fields.get(name, _NONE)
        if touched.traits:
            found |= r.fields.get("traits", _NONE)
        for channel in touched.consents:
            found |= r.consents.get(channel, _NONE)
        for sid in touched.segments:
            found |= r.segments.get(sid, _NONE)
        if touched.loyalty:
            found |= r.loyalty
        return found


_NONE: frozenset[int] = frozenset()


@dataclass
class Readers:
    """Which segments read each thing a batch can touch: ``affected`` runs for every
    customer of every batch, so it looks its answer up rather than testing each rule."""

    every_event: set[int] = field(default_factory=set)
    events: dict[str, set[int]] = field(default_factory=dict)
    fields: dict[str, set[int]] = field(default_factory=dict)
    consents: dict[str, set[int]] = field(default_factory=dict)
    segments: dict[int, set[int]] = field(default_factory=dict)
    loyalty: set[int] = field(default_factory=set)

    @staticmethod
    def of(items: list[Indexed]) -> Readers:
        r = Readers()
        for item in items:
            sid, d = item.segment.id, item.deps
            if d.every_event:
                r.every_event.add(sid)
            if d.loyalty:
                r.loyalty.add(sid)
            for name in d.events:
                r.events.setdefault(name, set()).add(sid)
            for name in d.customer_fields:
                r.fields.setdefault(name, set()).add(sid)
            for channel in d.consent_channels:
                r.consents.setdefault(channel, set()).add(sid)
            for upstream in d.segments:
                r.segments.setdefault(upstream, set()).add(sid)
        return r


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


def current_members(
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
                    among(conn, sm.customer_id, chunk), sm.segment_id.in_(sids), sm.until.is_(None)
                )
            )
        )
    return found


# Entering and leaving as one statement each on PostgreSQL (the pairs as arrays), so a
# batch's moves, or a back-fill's hundred thousand, cost one round trip and one plan.
_ENTER = "INSERT INTO segment_members (segment_id, customer_id, since) VALUES (%s, %s, %s)"
_LEAVE_PG = (
    "UPDATE segment_members AS m SET until = %s "
    "FROM unnest(%s::bigint[], %s::bigint[]) AS moved(s, c) "
    "WHERE m.segment_id = moved.s AND m.customer_id = moved.c AND m.until IS NULL"
)
_LEAVE = (
    "UPDATE segment_members SET until = %s "
    "WHERE segment_id = %s AND customer_id = %s AND until IS NULL"
)


def write_moves(
    conn: sa.Connection,
    entered: list[tuple[int, int]],
    left: list[tuple[int, int]],
    now: datetime,
) -> None:
    at = db_time(conn, now)
    run_many(
        conn,
        _ENTER,
        [(s, c, at) for s, c in entered],
        array_types=("bigint", "bigint", "timestamptz"),
    )
    if not left:
        return
    if is_sqlite(conn):
        run_many(conn, _LEAVE, [(at, s, c) for s, c in left])
    else:
        execute(conn, _LEAVE_PG, [at, *columns_of(left)])


def transitions_of(
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
    combined, deps = index.reads(frozenset(reach))
    snapshots: dict[int, Snapshot] = load_snapshots(
        conn, customers, combined, now, all_memberships=True, deps=deps
    )
    ctx = Context.at(now)
    current = {
        (sid, cid) for cid, snap in snapshots.items() for sid in snap.segments if sid in reach
    }
    entered: list[tuple[int, int]] = []
    left: list[tuple[int, int]] = []
    for item in items:  # topological order
        sid = item.segment.id
        for cid in sorted(pending.get(sid, ())):
            snap = snapshots.get(cid)
            now_in = snap is not None and matches(item.rule, snap, ctx)
            was_in = (sid, cid) in current
            if now_in == was_in:
                continue
            (entered if now_in else left).append((sid, cid))
            if snap is not None:
                snap.segments = snap.segments | {sid} if now_in else snap.segments - {sid}
            for dep in index.dependents.get(sid, []):
                pending.setdefault(dep, set()).add(cid)
    # Readers of a segment see its new membership: snapshots carry it for customers loaded.
    write_moves(conn, entered, left, now)
    return transitions_of(index, entered, left)
