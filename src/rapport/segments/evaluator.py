"""The in-memory evaluator: the real-time path, one customer (or a few) per event.

``load_snapshots`` reads everything a rule needs for a set of customers in a handful of
queries (the card, then counters, logged events, consents and memberships only when the
rule reads them), and ``matches`` answers from that snapshot without touching the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from rapport.segments.conditions.loyalty import load_loyalty
from rapport.segments.context import Context, Snapshot
from rapport.segments.dependencies import Dependencies, dependencies
from rapport.segments.reads import Driver
from rapport.segments.rules import Rule
from rapport.store.tables import customers

# Columns every evaluation reads besides the rule's own: who, and whether still live.
ALWAYS = frozenset({"id", "merged_into", "erased_at"})


def load_snapshots(
    conn: sa.Connection,
    customer_ids: Iterable[int],
    rule: Rule,
    now: datetime,
    *,
    all_memberships: bool = False,
    deps: Dependencies | None = None,
) -> dict[int, Snapshot]:
    """Snapshots for the customers that exist, with only the columns and the part of the
    event log the rule reads (``now`` bounds the log windows). ``deps`` saves walking the
    rule again when the caller has them."""
    ids = sorted(set(customer_ids))
    if deps is None:
        deps = dependencies(rule)
    wanted = tuple(sorted(ALWAYS | deps.customer_fields))
    cards = _cards(wanted, conn.dialect.name == "postgresql")
    db = Driver(conn)
    found: dict[int, Snapshot] = {}
    for chunk in db.chunks(ids):
        for row in conn.execute(cards, {"ids": list(chunk)}):
            card = dict(zip(wanted, row, strict=True))
            found[card["id"]] = Snapshot(customer=card)
        if deps.counter_events:
            _load_counters(db, chunk, found, deps, now)
        if deps.logged_events:
            _load_log(db, chunk, found, deps, now)
        if deps.consent_channels:
            test, params = db.ids_sql("customer_id", chunk)
            channels = sorted(deps.consent_channels)
            rows = db.rows(
                f"SELECT customer_id, channel, status FROM consents WHERE {test} "
                f"AND channel IN ({', '.join(['%s'] * len(channels))})",
                [*params, *channels],
            )
            for cid, channel, status in rows:
                if cid in found:
                    found[cid].consents[channel] = status
        load_loyalty(conn, list(chunk), found, deps, now)
        if deps.segments or all_memberships:
            # ``all_memberships``: every current membership (the real-time step diffs with
            # them), a superset of what the rule's segment conditions read.
            test, params = db.ids_sql("customer_id", chunk)
            which = ""
            if not all_memberships:
                sids = sorted(deps.segments)
                which = f" AND segment_id IN ({', '.join(['%s'] * len(sids))})"
                params = [*params, *sids]
            member_of: dict[int, set[int]] = {}
            for cid, sid in db.rows(
                "SELECT customer_id, segment_id FROM segment_members "
                f"WHERE {test} AND until IS NULL{which}",
                params,
            ):
                member_of.setdefault(cid, set()).add(sid)
            for cid, sids_of in member_of.items():
                if cid in found:
                    found[cid].segments = frozenset(sids_of)
    return found


@lru_cache(maxsize=256)
def _cards(wanted: tuple[str, ...], postgres: bool) -> sa.Select[Any]:
    """The card columns a rule reads, for a list of customers: one statement object per
    set of columns, so SQLAlchemy neither builds nor keys it again for every batch (the
    card keeps SQLAlchemy's type processing: its columns are of every kind)."""
    ids = customers.c.id
    if postgres:
        test = ids == sa.any_(sa.bindparam("ids", type_=ARRAY(sa.BigInteger())))
    else:
        test = ids.in_(sa.bindparam("ids", expanding=True))
    return sa.select(*(customers.c[name] for name in wanted)).where(test)


def _load_counters(
    db: Driver, chunk: Sequence[int], found: dict[int, Snapshot], deps: Dependencies, now: datetime
) -> None:
    window, window_params = _window_sql(
        "day", deps.counter_events, deps.counter_windows, lambda d: db.day(d.date()), now
    )
    test, params = db.ids_sql("customer_id", chunk)
    read_day = db.read_day
    for cid, name, day, n in db.rows(
        f"SELECT customer_id, name, day, count FROM event_counters WHERE {test} AND ({window})",
        [*params, *window_params],
    ):
        snap = found.get(cid)
        if snap is not None:
            by_day = snap.counters.setdefault(name, {})
            d = read_day(day)
            by_day[d] = by_day.get(d, 0) + n


def _load_log(
    db: Driver, chunk: Sequence[int], found: dict[int, Snapshot], deps: Dependencies, now: datetime
) -> None:
    window, window_params = _window_sql(
        "occurred_at", deps.logged_events, deps.logged_windows, db.moment, now
    )
    test, params = db.ids_sql("customer_id", chunk)
    read_moment, read_json = db.read_moment, db.read_json
    for cid, name, at, props in db.rows(
        "SELECT customer_id, name, occurred_at, properties FROM events "
        f"WHERE {test} AND ({window})",
        [*params, *window_params],
    ):
        snap = found.get(cid)
        if snap is not None:
            snap.events.setdefault(name, []).append((read_moment(at), read_json(props)))


def _window_sql(
    column: str,
    names: frozenset[str],
    windows: Mapping[str, int | None],
    bound: Callable[[datetime], Any],
    now: datetime,
) -> tuple[str, list[Any]]:
    """Only the part of the log or of the day counters the rule can read: each event name
    as far back as its widest window (a day more, so a whole-UTC-day window is always
    covered), or all of it. A customer's counters for names read over a year of history
    are hundreds of rows; a 30-day window needs a tenth of them."""
    unbounded = sorted(n for n in names if windows.get(n) is None)
    parts: list[str] = []
    params: list[Any] = []
    if unbounded:
        parts.append(f"name IN ({', '.join(['%s'] * len(unbounded))})")
        params += unbounded
    for name, days in sorted(windows.items()):
        if days is not None:
            parts.append(f"(name = %s AND {column} >= %s)")
            params += [name, bound(now - timedelta(days=days + 1))]
    return " OR ".join(parts), params


def matches(rule: Rule, snapshot: Snapshot, now: datetime | Context) -> bool:
    """``now`` may be a ``Context`` already made, when many snapshots are tested at once."""
    row = snapshot.customer
    if row["merged_into"] is not None or row["erased_at"] is not None:
        return False
    return rule.test(snapshot, now if isinstance(now, Context) else Context.at(now))


def evaluate(
    conn: sa.Connection, rule: Rule, customer_ids: Iterable[int], now: datetime
) -> set[int]:
    """The members among ``customer_ids``, by the in-memory evaluator."""
    snapshots = load_snapshots(conn, customer_ids, rule, now)
    return {cid for cid, snap in snapshots.items() if matches(rule, snap, now)}
