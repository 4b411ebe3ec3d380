"""The dashboard's business figures from roll-ups, without regrouping the orders.

Counting buyers, first and second orders, reactivations and active customers over a period
asks, for each customer, where their orders fall against the period and the lapse window
before it. Folding the orders into a row per customer on every view costs seconds on a
store of millions of orders (docs/benchmarks.md). The same counts follow exactly from two
roll-ups that the transaction storing an order keeps (customers/computed.py), because each
question is about one order and the one before it:

- ``order_days``: counted orders per UTC day and the day of the customer's previous
  counted order (``NO_PREVIOUS`` for a first order), with their net revenue in millionths;
- ``order_nth_days``: counted orders per number in the customer's history and day.

With the period's first day F, its last day L and the lapse of N days (S = F − N):

- orders and revenue: the rows with a day in [F, L];
- buyers: the first order of each buyer in the period, i.e. those whose previous order was
  before F (or none);
- first orders: previous order none; reactivated: previous order before S (not none);
- active (bought in the lapse window before the start or in the period): orders with a day
  in [S, L] whose previous order was before S (or none) — one per such customer;
- second orders and retained: orders numbered 2 and ``active_min_orders`` in the period;
- acquired: live customers first known in the period (an index on that moment).

The periods are whole UTC days and the lapse whole days, so the day grain is exact. Merged
profiles' orders belong to the survivor, as in the statement over the orders.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from rapport.analytics.scope import Scope, known_since
from rapport.customers.computed import MICROS, NO_PREVIOUS, counted_order
from rapport.store.tables import customers, order_days, order_nth_days, order_sequence, orders


@dataclass(frozen=True)
class WindowFacts:
    """The dashboard's share of ``activity.Facts`` (same names, same definitions)."""

    revenue: float
    orders: int
    buyers: int
    first_orders: int
    second_orders: int
    retained: int
    reactivated: int
    active: int
    acquired: int


def _sum(column: Any, condition: sa.ColumnElement[bool] | None = None) -> Any:
    total = sa.func.sum(column)
    return total if condition is None else total.filter(condition)


def window_facts(conn: sa.Connection, scope: Scope) -> WindowFacts:
    """The figures of ``scope`` (without a segment) from the roll-ups: three index ranges,
    a few thousand rows whatever the number of orders."""
    if scope.segment_id is not None:
        raise ValueError("the roll-ups count everyone; a segment's figures come from its orders")
    p = scope.period
    since = p.first - timedelta(days=scope.lifecycle.lapsed_days)
    d = order_days.c
    in_period = d.day >= p.first
    none: Any = sa.literal(NO_PREVIOUS, sa.Date)
    gaps = conn.execute(
        sa.select(
            _sum(d.orders, in_period),
            _sum(d.revenue_micros, in_period),
            _sum(d.orders, sa.and_(in_period, d.prev_day < p.first)),
            _sum(d.orders, sa.and_(in_period, d.prev_day == none)),
            _sum(d.orders, sa.and_(in_period, d.prev_day > none, d.prev_day < since)),
            _sum(d.orders, d.prev_day < since),
        ).where(d.day >= since, d.day <= p.last)
    ).one()
    orders_, revenue, buyers, first, reactivated, active = (int(v or 0) for v in gaps)
    n = scope.lifecycle.active_min_orders
    r = order_nth_days.c
    nth = dict(
        conn.execute(
            sa.select(r.nth, sa.func.sum(r.orders))
            .where(r.nth.in_(sorted({2, n})), r.day >= p.first, r.day <= p.last)
            .group_by(r.nth)
        ).all()
    )
    known = known_since()
    acquired = conn.execute(
        sa.select(sa.func.count()).where(
            customers.c.merged_into.is_(None), known >= p.start, known < p.end
        )
    ).scalar_one()
    return WindowFacts(
        revenue=revenue / MICROS,
        orders=orders_,
        buyers=buyers,
        first_orders=first,
        second_orders=int(nth.get(2) or 0),
        retained=int(nth.get(n) or 0),
        reactivated=reactivated,
        active=active,
        acquired=int(acquired),
    )


def rebuild(conn: sa.Connection) -> int:
    """Number every counted order again and recount both roll-ups, set-based (after a bulk
    load that wrote orders directly, or a repair); returns the counted orders.

    The same places as ``refresh_order_history`` gives order by order: ``order_sequence``
    rows in time order (ties by id) per customer, days in UTC, money in millionths.
    """
    for table in (order_nth_days, order_days, order_sequence):
        conn.execute(table.delete())
    o = orders.c
    if conn.dialect.name == "postgresql":
        day: Any = sa.cast(sa.func.timezone(sa.literal_column("'UTC'"), o.occurred_at), sa.Date)
    else:
        day = sa.func.substr(o.occurred_at, 1, 10)
    counted = (
        sa.select(o.id, o.customer_id, o.occurred_at, day.label("day"), o.total, o.refunded)
        .where(counted_order())
        .subquery("counted")
    )
    c = counted.c
    window: dict[str, Any] = {"partition_by": c.customer_id, "order_by": (c.occurred_at, c.id)}
    none: Any = sa.literal(NO_PREVIOUS, sa.Date)
    places = sa.select(
        c.id,
        c.customer_id,
        c.day,
        sa.func.coalesce(sa.func.lag(c.day).over(**window), none),
        sa.func.row_number().over(**window),
        sa.cast(sa.func.round((c.total - c.refunded) * MICROS), sa.BigInteger),
    )
    s = order_sequence.c
    conn.execute(
        order_sequence.insert().from_select(
            ["order_pk", "customer_id", "day", "prev_day", "nth", "net_micros"], places
        )
    )
    conn.execute(
        order_days.insert().from_select(
            ["day", "prev_day", "orders", "revenue_micros"],
            sa.select(s.day, s.prev_day, sa.func.count(), sa.func.sum(s.net_micros)).group_by(
                s.day, s.prev_day
            ),
        )
    )
    conn.execute(
        order_nth_days.insert().from_select(
            ["nth", "day", "orders"],
            sa.select(s.nth, s.day, sa.func.count()).group_by(s.nth, s.day),
        )
    )
    return int(conn.execute(sa.select(sa.func.count()).select_from(order_sequence)).scalar_one())
