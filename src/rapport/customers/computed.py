"""Computed fields, kept current in the transaction that stores each event.

A batch folds its events into one ``Changes`` per customer, and each kind of change is
written with one statement for the whole batch: counters and first/last seen as relative
updates (no read needed), order aggregates recomputed from the orders of just the
customers whose orders changed, attributes read-modify-written only for identify calls.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from rapport.customers.profile import PROFILE_COLUMNS
from rapport.store.fast import db_time, is_sqlite, run_many
from rapport.store.tables import customers, orders

# An order counts while it is neither cancelled nor fully refunded.
COUNTED_ORDER_STATUSES = ("completed",)


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
    run_many(
        conn,
        "UPDATE customers SET events_count = events_count + %s, "
        "first_seen_at = CASE WHEN first_seen_at IS NULL OR first_seen_at > %s "
        "THEN %s ELSE first_seen_at END, "
        "last_seen_at = CASE WHEN last_seen_at IS NULL OR last_seen_at < %s "
        "THEN %s ELSE last_seen_at END, updated_at = %s WHERE id = %s",
        [
            (
                changes[cid].events,
                first := db_time(conn, changes[cid].first_seen),
                first,
                last := db_time(conn, changes[cid].last_seen),
                last,
                db_time(conn, now),
                cid,
            )
            for cid in seen
        ],
    )
    _apply_attributes(conn, {cid: changes[cid] for cid in ids}, now)
    recompute_orders(conn, [cid for cid in ids if changes[cid].orders_changed], now)


def _apply_attributes(conn: sa.Connection, changes: dict[int, Changes], now: datetime) -> None:
    """One statement for the batch: each column is set where given, kept where not."""
    touched = [cid for cid, ch in changes.items() if ch.columns or ch.traits]
    if not touched:
        return
    query = sa.select(customers.c.id, customers.c.traits).where(customers.c.id.in_(touched))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    current = dict(conn.execute(query.order_by(customers.c.id)).all())
    c = customers.c
    stmt = (
        customers.update()
        .where(c.id == sa.bindparam("cid"))
        .values(
            {
                col: sa.func.coalesce(sa.bindparam(f"v_{col}", type_=c[col].type), c[col])
                for col in PROFILE_COLUMNS
            }
            | {
                "traits": sa.bindparam("v_traits", type_=c.traits.type),
                "updated_at": sa.bindparam("v_now", type_=c.updated_at.type),
            }
        )
    )
    rows = []
    for cid in touched:
        ch = changes[cid]
        row: dict[str, Any] = {f"v_{col}": ch.columns.get(col) for col in PROFILE_COLUMNS}
        row["v_traits"] = {**(current.get(cid) or {}), **ch.traits}
        row["v_now"] = now
        row["cid"] = cid
        rows.append(row)
    conn.execute(stmt, rows)


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
            .where(o.customer_id.in_(ids), o.status.in_(COUNTED_ORDER_STATUSES))
            .group_by(o.customer_id)
        )
    }
    params = []
    for cid in ids:
        row = rows.get(cid)
        params.append(
            {
                "cid": cid,
                "n": row.n if row else 0,
                "rev": float(row.revenue or 0) if row else 0.0,
                "first": row.first if row else None,
                "last": row.last if row else None,
                "now": now,
            }
        )
    conn.execute(
        customers.update()
        .where(customers.c.id == sa.bindparam("cid"))
        .values(
            orders_count=sa.bindparam("n"),
            revenue=sa.bindparam("rev"),
            first_order_at=sa.bindparam("first", type_=customers.c.first_order_at.type),
            last_order_at=sa.bindparam("last", type_=customers.c.last_order_at.type),
            updated_at=sa.bindparam("now"),
        ),
        params,
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
    )
