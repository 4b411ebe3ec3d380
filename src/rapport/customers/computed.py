"""Computed fields, kept current in the transaction that stores each event.

A batch folds its events into one ``Changes`` per customer, and each kind of change is
written with one statement for the whole batch: counters and first/last seen as relative
updates (no read needed), order aggregates recomputed from the orders of just the
customers whose orders changed, attributes read-modify-written only for identify calls.

With the order aggregates, each counted order's place in its customer's history
(``order_sequence``) and the two roll-ups the dashboard sums (``order_days``,
``order_nth_days``) are brought up to date by difference: only the orders whose place
changed move a count, so a new latest order writes one row and bumps two counters, and a
refund, a cancellation, an order arriving late or a merge renumbers just that customer's
history.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from rapport.customers.profile import PROFILE_COLUMNS
from rapport.store.engine import json_text
from rapport.store.fast import (
    among,
    columns_of,
    db_time,
    execute,
    is_sqlite,
    run_many,
    update_rows,
)
from rapport.store.tables import customers, order_sequence, orders

# An order counts while it is neither cancelled nor fully refunded.
COUNTED_ORDER_STATUSES = ("completed",)
# The previous day of a customer's first counted order: before every real day, so "the
# order before it was placed before day X" holds for a first order too.
NO_PREVIOUS = date(1, 1, 1)
# The roll-ups keep money in whole millionths of the currency unit: integer sums, so
# adding an order and taking it back leaves exactly nothing behind.
MICROS = 1_000_000


def counted_order() -> sa.ColumnElement[bool]:
    """The orders that count, with the statuses written as constants rather than bound
    parameters: a partial index on counted orders (``ix_orders_counted_time``) is used only
    when the query states the index's own condition."""
    return sa.or_(*(orders.c.status == sa.literal_column(f"'{s}'") for s in COUNTED_ORDER_STATUSES))


@dataclass(slots=True)
class Changes:
    events: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    columns: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    orders_changed: bool = False

    def saw(self, moment: datetime) -> None:
        self.events += 1
        if self.first_seen is None or moment < self.first_seen:
            self.first_seen = moment
        if self.last_seen is None or moment > self.last_seen:
            self.last_seen = moment


def apply_changes(conn: sa.Connection, changes: dict[int, Changes], now: datetime) -> None:
    ids = sorted(changes)  # a fixed order, so concurrent writers cannot deadlock
    seen = [cid for cid in ids if changes[cid].events]
    _count_seen(conn, [(cid, changes[cid]) for cid in seen], now)
    _apply_attributes(conn, {cid: changes[cid] for cid in ids}, now)
    recompute_orders(conn, [cid for cid in ids if changes[cid].orders_changed], now)


def _count_seen(conn: sa.Connection, seen: list[tuple[int, Changes]], now: datetime) -> None:
    """Events counted and first/last seen moved, as relative updates: nothing is read."""
    if not seen:
        return
    if is_sqlite(conn):
        run_many(
            conn,
            "UPDATE customers SET events_count = events_count + %s, "
            "first_seen_at = CASE WHEN first_seen_at IS NULL OR first_seen_at > %s "
            "THEN %s ELSE first_seen_at END, "
            "last_seen_at = CASE WHEN last_seen_at IS NULL OR last_seen_at < %s "
            "THEN %s ELSE last_seen_at END, updated_at = %s WHERE id = %s",
            [
                (
                    ch.events,
                    first := db_time(conn, ch.first_seen),
                    first,
                    last := db_time(conn, ch.last_seen),
                    last,
                    db_time(conn, now),
                    cid,
                )
                for cid, ch in seen
            ],
        )
        return
    execute(
        conn,
        "UPDATE customers AS c SET events_count = c.events_count + v.n, "
        "first_seen_at = CASE WHEN c.first_seen_at IS NULL OR c.first_seen_at > v.first "
        "THEN v.first ELSE c.first_seen_at END, "
        "last_seen_at = CASE WHEN c.last_seen_at IS NULL OR c.last_seen_at < v.last "
        "THEN v.last ELSE c.last_seen_at END, updated_at = %s "
        "FROM unnest(%s::bigint[], %s::int[], %s::timestamptz[], %s::timestamptz[]) "
        "AS v(id, n, first, last) WHERE c.id = v.id",
        (now, *columns_of([(cid, ch.events, ch.first_seen, ch.last_seen) for cid, ch in seen])),
    )


def _apply_attributes(conn: sa.Connection, changes: dict[int, Changes], now: datetime) -> None:
    """One statement for the batch: each column is set where given, kept where not."""
    touched = [cid for cid, ch in changes.items() if ch.columns or ch.traits]
    if not touched:
        return
    query = sa.select(customers.c.id, customers.c.traits).where(
        among(conn, customers.c.id, touched)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    current = dict(conn.execute(query.order_by(customers.c.id)).all())
    sqlite = is_sqlite(conn)
    rows = []
    for cid in touched:
        ch = changes[cid]
        values = [ch.columns.get(col) for col in PROFILE_COLUMNS]
        birthday = values[_BIRTHDAY]
        if sqlite and isinstance(birthday, date):
            values[_BIRTHDAY] = birthday.isoformat()
        traits = json_text({**(current.get(cid) or {}), **ch.traits})
        rows.append((cid, *values, traits, db_time(conn, now)))
    update_rows(
        conn,
        "customers",
        "id",
        [
            *(
                (col, _PROFILE_TYPES.get(col, "text"), "coalesce({new}, {old})")
                for col in PROFILE_COLUMNS
            ),
            ("traits", "jsonb", "{new}"),
            ("updated_at", "timestamptz", "{new}"),
        ],
        rows,
    )


_BIRTHDAY = PROFILE_COLUMNS.index("birthday")
_PROFILE_TYPES = {"birthday": "date"}


def recompute_orders(conn: sa.Connection, ids: list[int], now: datetime) -> None:
    """Order aggregates from the orders themselves: cancellations and refunds stay right."""
    if not ids:
        return
    o = orders.c
    rows = {
        r.customer_id: r
        for r in conn.execute(
            sa.select(
                o.customer_id,
                sa.func.count().label("n"),
                sa.func.sum(o.total - o.refunded).label("revenue"),
                sa.func.min(o.occurred_at).label("first"),
                sa.func.max(o.occurred_at).label("last"),
            )
            .where(among(conn, o.customer_id, ids), counted_order())
            .group_by(o.customer_id)
        )
    }
    params = []
    for cid in ids:
        row = rows.get(cid)
        params.append(
            (
                cid,
                row.n if row else 0,
                float(row.revenue or 0) if row else 0.0,
                db_time(conn, row.first) if row else None,
                db_time(conn, row.last) if row else None,
                db_time(conn, now),
            )
        )
    update_rows(
        conn,
        "customers",
        "id",
        [
            ("orders_count", "int", "{new}"),
            ("revenue", "float8", "{new}"),
            ("first_order_at", "timestamptz", "{new}"),
            ("last_order_at", "timestamptz", "{new}"),
            ("updated_at", "timestamptz", "{new}"),
        ],
        params,
    )
    refresh_order_history(conn, ids)


def micros(amount: float) -> int:
    """An amount in millionths (rounded as PostgreSQL's ``round`` rounds a double)."""
    return round(amount * MICROS)


# (customer, day, previous counted order's day, number among the counted orders, net)
Place = tuple[int, date, date, int, int]


# Key of ``Connection.info``: the roll-up stripe this connection's writes bump (0 unless a
# pipeline applying beside others set its own). Any stripe is correct: readers sum them.
ROLLUP_STRIPE = "rapport.rollup_stripe"


def refresh_order_history(conn: sa.Connection, ids: Iterable[int]) -> None:
    """Bring ``order_sequence`` and its roll-ups up to date for these customers.

    The customers' counted orders are numbered again in time order (ties by id) and
    compared with the places stored for them; each order whose place changed takes its
    old place out of the roll-ups and puts its new one in. An order stored under another
    customer (one merged into these) is found by its key and moved, so it is never counted
    twice; whatever moves orders between customers refreshes both (``merge_customers``).
    """
    wanted = sorted(set(ids))
    if not wanted:
        return
    if conn.dialect.name == "postgresql":
        # One writer per customer at a time: the history is read, then written by difference.
        conn.execute(
            sa.select(customers.c.id)
            .where(among(conn, customers.c.id, wanted))
            .order_by(customers.c.id)
            .with_for_update()
        ).all()
    o = orders.c
    new: dict[int, Place] = {}
    last: tuple[int, date, int] | None = None  # customer, day, number of the order before
    for pk, cid, at, net in conn.execute(
        sa.select(o.id, o.customer_id, o.occurred_at, o.total - o.refunded)
        .where(among(conn, o.customer_id, wanted), counted_order())
        .order_by(o.customer_id, o.occurred_at, o.id)
    ):
        day = at.astimezone(UTC).date()
        if last is None or last[0] != cid:
            prev, nth = NO_PREVIOUS, 1
        else:
            prev, nth = last[1], last[2] + 1
        new[pk] = (cid, day, prev, nth, micros(float(net)))
        last = (cid, day, nth)
    s = order_sequence.c
    columns = (s.order_pk, s.customer_id, s.day, s.prev_day, s.nth, s.net_micros)
    # Their stored places, and those of their orders stored under someone else (the
    # customer the order came from in a merge), in one round trip.
    elsewhere = (
        sa.select(*columns)
        .select_from(order_sequence.join(orders, o.id == s.order_pk))
        .where(among(conn, o.customer_id, wanted), counted_order(), s.customer_id != o.customer_id)
    )
    old: dict[int, Place] = {
        pk: (cid, day, prev, nth, net)
        for pk, cid, day, prev, nth, net in conn.execute(
            sa.union_all(sa.select(*columns).where(among(conn, s.customer_id, wanted)), elsewhere)
        )
    }
    by_gap: Counter[tuple[date, date]] = Counter()
    gap_revenue: Counter[tuple[date, date]] = Counter()
    by_nth: Counter[tuple[int, date]] = Counter()
    gone = [pk for pk in old if pk not in new]
    changed = [pk for pk, place in new.items() if old.get(pk) != place]
    for pk, sign in [(pk, -1) for pk in (*gone, *changed) if pk in old] + [
        (pk, 1) for pk in changed
    ]:
        _, day, prev, nth, net = old[pk] if sign < 0 else new[pk]
        by_gap[(day, prev)] += sign
        gap_revenue[(day, prev)] += sign * net
        by_nth[(nth, day)] += sign
    sqlite = is_sqlite(conn)

    def d(day: date) -> Any:
        return day.isoformat() if sqlite else day

    for start in range(0, len(gone), 500):
        conn.execute(order_sequence.delete().where(s.order_pk.in_(gone[start : start + 500])))
    run_many(
        conn,
        "INSERT INTO order_sequence (order_pk, customer_id, day, prev_day, nth, net_micros) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (order_pk) DO UPDATE SET "
        "customer_id = excluded.customer_id, day = excluded.day, "
        "prev_day = excluded.prev_day, nth = excluded.nth, net_micros = excluded.net_micros",
        [
            (pk, cid, d(day), d(prev), nth, net)
            for pk in sorted(changed)
            for cid, day, prev, nth, net in (new[pk],)
        ],
        array_types=("bigint", "bigint", "date", "date", "int", "bigint"),
    )
    # Keys in order, so two writers bumping the same counters cannot deadlock; writers
    # that run side by side bump stripes of their own (``ROLLUP_STRIPE``) and do not wait.
    stripe = conn.info.get(ROLLUP_STRIPE, 0)
    run_many(
        conn,
        "INSERT INTO order_days (day, prev_day, stripe, orders, revenue_micros) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (day, prev_day, stripe) DO UPDATE SET "
        "orders = order_days.orders + excluded.orders, "
        "revenue_micros = order_days.revenue_micros + excluded.revenue_micros",
        [
            (d(day), d(prev), stripe, n, gap_revenue[(day, prev)])
            for (day, prev), n in sorted(by_gap.items())
            if n or gap_revenue[(day, prev)]
        ],
        array_types=("date", "date", "smallint", "bigint", "bigint"),
    )
    run_many(
        conn,
        "INSERT INTO order_nth_days (nth, day, stripe, orders) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (nth, day, stripe) DO UPDATE SET "
        "orders = order_nth_days.orders + excluded.orders",
        [(nth, d(day), stripe, n) for (nth, day), n in sorted(by_nth.items()) if n],
        array_types=("int", "date", "smallint", "bigint"),
    )


def bump_counters(conn: sa.Connection, counts: Counter[tuple[int, str, date]]) -> None:
    """Per-customer, per-event-name, per-UTC-day counters: what segments read."""
    run_many(
        conn,
        "INSERT INTO event_counters (customer_id, name, day, count) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (customer_id, name, day) "
        "DO UPDATE SET count = event_counters.count + excluded.count",
        [
            (cid, name, day.isoformat() if is_sqlite(conn) else day, n)
            for (cid, name, day), n in sorted(counts.items())
        ],
        array_types=("bigint", "text", "date", "int"),
    )
