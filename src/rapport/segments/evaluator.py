"""The in-memory evaluator: the real-time path, one customer (or a few) per event.

``load_snapshots`` reads everything a rule needs for a set of customers in a handful of
queries (the card, then counters, logged events, consents and memberships only when the
rule reads them), and ``matches`` answers from that snapshot without touching the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import sqlalchemy as sa

from rapport.segments.conditions.loyalty import load_loyalty
from rapport.segments.context import Context, Snapshot
from rapport.segments.dependencies import Dependencies, dependencies
from rapport.segments.rules import Rule
from rapport.store.tables import consents, customers, event_counters, events, segment_members

CHUNK = 500
# Columns every evaluation reads besides the rule's own: who, and whether still live.
ALWAYS = frozenset({"id", "merged_into", "erased_at"})


def load_snapshots(
    conn: sa.Connection,
    customer_ids: Iterable[int],
    rule: Rule,
    now: datetime,
    *,
    all_memberships: bool = False,
) -> dict[int, Snapshot]:
    """Snapshots for the customers that exist, with only the columns and the part of the
    event log the rule reads (``now`` bounds the log windows)."""
    ids = sorted(set(customer_ids))
    deps = dependencies(rule)
    wanted = sorted(ALWAYS | deps.customer_fields)
    columns = [customers.c[name] for name in wanted]
    found: dict[int, Snapshot] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        for row in conn.execute(sa.select(*columns).where(customers.c.id.in_(chunk))):
            found[row.id] = Snapshot(customer=dict(row._mapping))
        if deps.counter_events:
            ec = event_counters.c
            for cid, name, day, n in conn.execute(
                sa.select(ec.customer_id, ec.name, ec.day, ec.count).where(
                    ec.customer_id.in_(chunk), _counter_window(deps, now)
                )
            ):
                if cid in found:
                    by_day = found[cid].counters.setdefault(name, {})
                    by_day[day] = by_day.get(day, 0) + n
        if deps.logged_events:
            e = events.c
            for cid, name, at, props in conn.execute(
                sa.select(e.customer_id, e.name, e.occurred_at, e.properties).where(
                    e.customer_id.in_(chunk), _log_window(deps, now)
                )
            ):
                if cid in found:
                    found[cid].events.setdefault(name, []).append((at, props))
        if deps.consent_channels:
            for cid, channel, status in conn.execute(
                sa.select(consents.c.customer_id, consents.c.channel, consents.c.status).where(
                    consents.c.customer_id.in_(chunk),
                    consents.c.channel.in_(sorted(deps.consent_channels)),
                )
            ):
                if cid in found:
                    found[cid].consents[channel] = status
        load_loyalty(conn, chunk, found, deps, now)
        if deps.segments or all_memberships:
            # ``all_memberships``: every current membership (the real-time step diffs with
            # them), a superset of what the rule's segment conditions read.
            sm = segment_members.c
            member_of: dict[int, set[int]] = {}
            which = [] if all_memberships else [sm.segment_id.in_(sorted(deps.segments))]
            for cid, sid in conn.execute(
                sa.select(sm.customer_id, sm.segment_id).where(
                    sm.customer_id.in_(chunk), sm.until.is_(None), *which
                )
            ):
                member_of.setdefault(cid, set()).add(sid)
            for cid, sids in member_of.items():
                if cid in found:
                    found[cid].segments = frozenset(sids)
    return found


def _log_window(deps: Dependencies, now: datetime) -> sa.ColumnElement[bool]:
    """Only the part of the log the rule can read: each name as far back as its widest
    window (a day more, so a whole-UTC-day window is always covered), or all of it."""
    e = events.c
    unbounded = sorted(n for n in deps.logged_events if deps.logged_windows.get(n) is None)
    parts: list[sa.ColumnElement[bool]] = [e.name.in_(unbounded)] if unbounded else []
    for name, days in sorted(deps.logged_windows.items()):
        if days is not None:
            parts.append(sa.and_(e.name == name, e.occurred_at >= now - timedelta(days=days + 1)))
    return sa.or_(*parts)


def _counter_window(deps: Dependencies, now: datetime) -> sa.ColumnElement[bool]:
    """The day counters the rule can read: each name as far back as its widest window (a
    day more, as for the log), or every day. A customer's counters for names read over
    a year of history are hundreds of rows; a 30-day window needs a tenth of them."""
    ec = event_counters.c
    unbounded = sorted(n for n in deps.counter_events if deps.counter_windows.get(n) is None)
    parts: list[sa.ColumnElement[bool]] = [ec.name.in_(unbounded)] if unbounded else []
    for name, days in sorted(deps.counter_windows.items()):
        if days is not None:
            parts.append(
                sa.and_(ec.name == name, ec.day >= (now - timedelta(days=days + 1)).date())
            )
    return sa.or_(*parts)


def matches(rule: Rule, snapshot: Snapshot, now: datetime) -> bool:
    row = snapshot.customer
    if row["merged_into"] is not None or row["erased_at"] is not None:
        return False
    return rule.test(snapshot, Context.at(now))


def evaluate(
    conn: sa.Connection, rule: Rule, customer_ids: Iterable[int], now: datetime
) -> set[int]:
    """The members among ``customer_ids``, by the in-memory evaluator."""
    snapshots = load_snapshots(conn, customer_ids, rule, now)
    return {cid for cid, snap in snapshots.items() if matches(rule, snap, now)}
