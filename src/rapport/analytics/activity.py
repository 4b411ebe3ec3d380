"""The counts every business report is built from, in one pass over the period's orders.

One GROUP BY reads the counted orders from one lapse before the period onwards (a range
scan of ``ix_orders_occurred_at``) and folds them into a row per customer: orders and
revenue in the period, orders since its start, and whether the customer bought in the
lapse window before the start and in the one before the end. With the customer's all-time
``orders_count`` that is enough to know how many orders they had *before* the period
(all-time count minus those since the start), hence which lifecycle milestones they
reached in it, without reading their older history. The customers with no order since the
lapse window began (the prospects and the long lapsed) are counted, in the same statement,
from their row alone: the aggregates on it already say where they stand.

Nothing is read into Python per customer or per order; a report is one statement whatever
the size of the store, and its cost grows with the orders since one lapse before the
period and the number of customers, not with the length of the history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

import sqlalchemy as sa

from rapport.analytics.scope import (
    Scope,
    counted,
    days_between,
    known_since,
    live_in_scope,
    month_key,
    net_amount,
)
from rapport.customers.computed import COUNTED_ORDER_STATUSES
from rapport.store.tables import customers, orders, segment_members

Grouping = Literal["cohort", "segment"]

# Upper bounds (days, excluded) of the time-to-repeat histogram; the last bucket is open.
REPEAT_BUCKETS: tuple[int, ...] = (7, 14, 30, 60, 90, 180, 365)


@dataclass
class Facts:
    """Per group of live customers in scope; see docs/metrics.md for each definition."""

    buyers: int = 0  # bought in the period
    orders: int = 0  # counted orders in the period
    revenue: float = 0.0  # their total − refunded
    first_orders: int = 0  # customers whose first order ever is in the period
    second_orders: int = 0  # … whose second order ever is in it
    retained: int = 0  # … whose active_min_orders-th order is in it
    reactivated: int = 0  # lapsed at the start, bought in the period
    active: int = 0  # not lapsed at some moment of the period
    active_at_start: int = 0  # bought in the lapse window before the start
    lapsed_by_end: int = 0  # … of whom no order in the lapse window before the end
    acquired: int = 0  # first known in the period
    prospects_at_start: int = 0  # known before the start, no order before it
    could_repeat: int = 0  # one order at the start, or a first one in the period
    could_retain: int = 0  # active_min_orders − 1 orders at the start, or reached in it
    lapsed_at_start: int = 0  # had bought, but not in the lapse window before the start


def _count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    """``count(*) FILTER (WHERE …)``: cheaper than a sum of CASEs on both stores."""
    return sa.func.count().filter(condition)


def _by_customer(scope: Scope) -> sa.Subquery:
    """The counted orders since ``scope.since``, aggregated by customer over the range alone."""
    o = orders.c
    p = scope.period
    in_p = sa.and_(o.occurred_at >= p.start, o.occurred_at < p.end)
    end_window = sa.and_(o.occurred_at >= p.end - scope.lapse, o.occurred_at < p.end)
    # ``customer_id + 0``: an expression, not the column, so that SQLite (which may have no
    # statistics) does not group by walking ix_orders_customer_id over the whole table; the
    # range on ix_orders_occurred_at is what bounds the work.
    cid = (o.customer_id + sa.literal_column("0")).label("cid")
    return (
        sa.select(
            cid,
            _count(o.occurred_at >= p.start).label("n_since"),
            _count(in_p).label("n_in"),
            sa.func.sum(net_amount()).filter(in_p).label("revenue"),
            # Orders in the lapse window before the start, and in the one before the end.
            _count(o.occurred_at < p.start).label("at_start"),
            _count(end_window).label("at_end"),
        )
        .where(counted(), o.occurred_at >= scope.since)
        .group_by(cid)
        .subquery("by_customer")
    )


def _customer_columns() -> tuple[sa.ColumnElement[Any], ...]:
    c = customers.c
    return (
        c.id.label("cid"),
        c.orders_count.label("orders_count"),
        c.first_order_at.label("first_at"),
        known_since().label("known"),
    )


def recent_rows(scope: Scope) -> sa.Select[Any]:
    """A row per live customer in scope with a counted order since ``scope.since``: their
    counts in the range beside the aggregates on their row.

    The orders are aggregated first and joined to ``customers`` after, by primary key, so
    the join sees one row per customer rather than one per order.
    """
    agg = _by_customer(scope)
    c = customers.c
    return (
        sa.select(
            *_customer_columns(),
            agg.c.n_since,
            agg.c.n_in,
            sa.func.coalesce(agg.c.revenue, sa.literal_column("0.0")).label("revenue"),
            agg.c.at_start,
            agg.c.at_end,
        )
        .select_from(agg.join(customers, c.id == agg.c.cid))
        .where(live_in_scope(scope))
    )


def idle_rows(scope: Scope) -> sa.Select[Any]:
    """Every other live customer in scope: no counted order since ``scope.since`` (their last
    order is older, or they never ordered), so their row alone says where they stand."""
    c = customers.c
    return sa.select(*_customer_columns()).where(
        live_in_scope(scope),
        sa.or_(c.last_order_at.is_(None), c.last_order_at < scope.since),
    )


def _milestones(a: Any) -> tuple[Any, Any]:
    """Orders before the period, and at its end, for each row of ``recent_rows``."""
    before = a.c.orders_count - a.c.n_since
    return before, before + a.c.n_in


def _recent_columns(a: Any, scope: Scope) -> dict[str, sa.ColumnElement[Any]]:
    n = scope.lifecycle.active_min_orders
    p = scope.period
    before, after = _milestones(a)
    bought = a.c.n_in > 0
    return {
        "buyers": _count(bought),
        "orders": sa.func.sum(a.c.n_in),
        "revenue": sa.func.sum(a.c.revenue),
        "first_orders": _count(sa.and_(before == 0, bought)),
        "second_orders": _count(sa.and_(before <= 1, after >= 2)),
        "retained": _count(sa.and_(before < n, after >= n)),
        "reactivated": _count(sa.and_(before >= 1, a.c.at_start == 0, bought)),
        "active": _count(sa.or_(a.c.at_start > 0, bought)),
        "active_at_start": _count(a.c.at_start > 0),
        "lapsed_by_end": _count(sa.and_(a.c.at_start > 0, a.c.at_end == 0)),
        "acquired": _count(sa.and_(a.c.known >= p.start, a.c.known < p.end)),
        "prospects_at_start": _count(sa.and_(a.c.known < p.start, before == 0)),
        "could_repeat": _count(sa.or_(before == 1, sa.and_(before == 0, bought))),
        "could_retain": _count(sa.or_(before == n - 1, sa.and_(before < n - 1, after >= n - 1))),
        "lapsed_at_start": _count(sa.and_(before >= 1, a.c.at_start == 0)),
    }


def _idle_columns(a: Any, scope: Scope) -> dict[str, sa.ColumnElement[Any]]:
    """The same facts for customers without a recent order: the orders they had before the
    period are all they ever had, and nothing happened to them in it but being acquired."""
    n = scope.lifecycle.active_min_orders
    p = scope.period
    count = a.c.orders_count
    zero: Any = sa.literal_column("0")
    columns: dict[str, sa.ColumnElement[Any]] = {f.name: zero for f in fields(Facts)}
    columns["revenue"] = sa.literal_column("0.0")
    columns |= {
        "acquired": _count(sa.and_(a.c.known >= p.start, a.c.known < p.end)),
        "prospects_at_start": _count(sa.and_(a.c.known < p.start, count == 0)),
        "could_repeat": _count(count == 1),
        "could_retain": _count(count == n - 1),
        "lapsed_at_start": _count(count >= 1),
    }
    return columns


def _facts(data: Mapping[Any, Any], prefix: str = "") -> Facts:
    """Result columns as ``Facts``, with plain ints and floats (PostgreSQL sums are Decimal
    or bigint, and an empty group's sums NULL)."""
    values: dict[str, Any] = {}
    for f in fields(Facts):
        value = data[prefix + f.name]
        values[f.name] = float(value or 0) if f.type in ("float", float) else int(value or 0)
    return Facts(**values)


def _add(a: Facts, b: Facts) -> Facts:
    return Facts(**{f.name: getattr(a, f.name) + getattr(b, f.name) for f in fields(Facts)})


def _grouped(
    rows: Any, columns: dict[str, sa.ColumnElement[Any]], dialect: str, by: Grouping | None
) -> sa.Select[Any]:
    """The fact columns over ``rows``, for everyone or per cohort or segment, with a text
    key and the grouping's name (so the parts of one statement can be told apart)."""
    listed = [columns[f.name].label(f.name) for f in fields(Facts)]
    grouping: Any = sa.literal_column(f"'{by or 'all'}'").label("grouping")
    if by is None:
        return sa.select(sa.literal_column("'all'").label("key"), grouping, *listed)
    if by == "cohort":
        key: Any = month_key(dialect, rows.c.first_at)
        return sa.select(key.label("key"), grouping, *listed).group_by(key)
    sm = segment_members.c
    key = sa.cast(sm.segment_id, sa.String)
    return (
        sa.select(key.label("key"), grouping, *listed)
        .select_from(
            rows.join(segment_members, sa.and_(sm.customer_id == rows.c.cid, sm.until.is_(None)))
        )
        .group_by(sm.segment_id)
    )


def order_facts(
    conn: sa.Connection, scope: Scope, groups: tuple[Grouping | None, ...] = (None,)
) -> dict[tuple[Grouping | None, str], Facts]:
    """The facts for everyone (``None``), per acquisition month and/or per segment, keyed by
    (grouping, key); one statement, so the orders are read once whatever is asked."""
    recent = recent_rows(scope).cte("recent")
    idle = idle_rows(scope).subquery("idle")
    dialect = conn.dialect.name
    parts = []
    for by in groups:
        parts.append(_grouped(recent, _recent_columns(recent, scope), dialect, by))
        parts.append(_grouped(idle, _idle_columns(idle, scope), dialect, by))
    out: dict[tuple[Grouping | None, str], Facts] = {}
    for row in conn.execute(sa.union_all(*parts)):
        if row.key is None:
            continue
        key = (None if row.grouping == "all" else row.grouping, str(row.key))
        out[key] = _add(out.get(key, Facts()), _facts(row._mapping))
    return out


def overall(facts: dict[tuple[Grouping | None, str], Facts]) -> Facts:
    return facts.get((None, "all"), Facts())


@dataclass
class RepeatGaps:
    """Days from the first to the second order, for customers whose second is in the period."""

    customers: int
    median_days: float | None
    mean_days: float | None
    buckets: list[int]  # counts per REPEAT_BUCKETS bucket, the open one last


def _gap_stats(pc: Any, dialect: str) -> sa.Subquery:
    """Histogram and median of the days between first and second order, in SQL.

    Who made their second order in the period is known from the per-customer counts; only
    for them (a small share of buyers) is the second order looked up, by customer, as the
    second counted order in time order (ties included, so two orders placed together are
    a gap of zero).
    """
    nth = orders.alias("nth")
    second = (
        sa.select(nth.c.occurred_at)
        .where(nth.c.customer_id == pc.c.cid, nth.c.status.in_(COUNTED_ORDER_STATUSES))
        .order_by(nth.c.occurred_at, nth.c.id)
        .limit(1)
        .offset(1)
        .scalar_subquery()
    )
    before, after = _milestones(pc)
    gaps = (
        sa.select(days_between(dialect, second, pc.c.first_at).label("gap"))
        .where(before <= 1, after >= 2)
        .subquery("gaps")
    )
    ranked = sa.select(
        gaps.c.gap,
        sa.func.row_number().over(order_by=gaps.c.gap).label("rn"),
        sa.func.count().over().label("n"),
    ).subquery("ranked")
    r = ranked.c
    middle = sa.or_(r.rn == (r.n + 1) // 2, r.rn == (r.n + 2) // 2)
    columns: list[sa.ColumnElement[Any]] = [
        sa.func.count().label("customers"),
        sa.func.avg(sa.case((middle, r.gap))).label("median"),
        sa.func.avg(r.gap).label("mean"),
    ]
    low: float = 0
    for i, high in enumerate((*REPEAT_BUCKETS, None)):
        inside = r.gap >= low if high is None else sa.and_(r.gap >= low, r.gap < high)
        columns.append(_count(inside).label(f"b{i}"))
        low = high or 0
    return sa.select(*columns).subquery("gap_stats")


def business_facts(conn: sa.Connection, scope: Scope) -> tuple[Facts, RepeatGaps]:
    """The overall facts and the time to repeat purchase, in one statement (the recent
    customers' rows are computed once and read twice)."""
    dialect = conn.dialect.name
    recent = recent_rows(scope).cte("recent")
    idle = idle_rows(scope).subquery("idle")
    active = _grouped(recent, _recent_columns(recent, scope), dialect, None).subquery("active")
    rest = _grouped(idle, _idle_columns(idle, scope), dialect, None).subquery("rest")
    gaps = _gap_stats(recent, dialect)
    row = conn.execute(
        sa.select(active, rest, gaps)
        .select_from(active.join(rest, sa.true()).join(gaps, sa.true()))
        .set_label_style(sa.LABEL_STYLE_TABLENAME_PLUS_COL)
    ).one()
    data = row._mapping
    n = int(data["gap_stats_customers"] or 0)
    return _add(_facts(data, "active_"), _facts(data, "rest_")), RepeatGaps(
        customers=n,
        median_days=None if not n else float(data["gap_stats_median"]),
        mean_days=None if not n else float(data["gap_stats_mean"]),
        buckets=[int(data[f"gap_stats_b{i}"] or 0) for i in range(len(REPEAT_BUCKETS) + 1)],
    )
