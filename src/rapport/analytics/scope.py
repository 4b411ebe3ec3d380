"""What a business report is about: a period, optionally one segment, and the lapse rule.

The business reports share one notion of "active" and "lapsed" with the lifecycle stages
(segments/lifecycle.py): a customer is lapsed once ``lapsed_days`` have passed since their
last counted order. Reading the thresholds once per report and carrying them in the scope
keeps ARPU, churn, LTV and the funnel consistent with each other and with the stages
marketers see on the customer card.

The SQL helpers here are the few places where SQLite and PostgreSQL differ (date
arithmetic, calendar months); every report builds on them, so each report is one text on
both stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from rapport.analytics.periods import Period
from rapport.customers.computed import COUNTED_ORDER_STATUSES, counted_order
from rapport.errors import InvalidInput, Problem
from rapport.segments.definitions import SegmentNotFound, find_segment
from rapport.segments.lifecycle import LifecycleThresholds, current_thresholds
from rapport.store.tables import customers, orders, segment_members

__all__ = ["COUNTED_ORDER_STATUSES", "Scope", "SegmentNotFound", "scope_for"]

DAY = timedelta(days=1)
DEFAULT_MARGIN = 0.3


@dataclass(frozen=True)
class Scope:
    """The period, the segment (id and name) if any, and the lifecycle thresholds used.

    The thresholds are None for the reports that do not use them (cohorts, RFM grid), so
    those never pay for deriving them.
    """

    period: Period
    thresholds: LifecycleThresholds | None
    segment_id: int | None = None
    segment_name: str | None = None

    @property
    def lifecycle(self) -> LifecycleThresholds:
        if self.thresholds is None:
            raise ValueError("this report was scoped without the lifecycle thresholds")
        return self.thresholds

    @property
    def lapse(self) -> timedelta:
        return self.lifecycle.lapsed_days * DAY

    @property
    def since(self) -> Any:
        """The earliest order any of the period's figures reads: one lapse before the start."""
        return self.period.start - self.lapse

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"period": self.period.as_json(), "days": self.period.days}
        if self.thresholds is not None:
            data["lapsed_days"] = self.thresholds.lapsed_days
            data["active_min_orders"] = self.thresholds.active_min_orders
            data["thresholds_source"] = self.thresholds.source
        data["segment"] = (
            None if self.segment_id is None else {"id": self.segment_id, "name": self.segment_name}
        )
        return data


def scope_for(
    conn: sa.Connection,
    period: Period,
    segment: str | int | None = None,
    thresholds: LifecycleThresholds | None = None,
    *,
    lifecycle: bool = True,
) -> Scope:
    """Resolve the segment (id or name; ``SegmentNotFound`` if unknown) and, with
    ``lifecycle``, the thresholds.

    The thresholds are those the last lifecycle sweep stored; a store never swept derives
    them from all its orders each time (slow on a large store; the daily sweep, or
    ``rapport segments lifecycle`` once, stores them).
    """
    seg_id: int | None = None
    seg_name: str | None = None
    if segment is not None and str(segment) != "":
        found = find_segment(conn, str(segment))
        seg_id, seg_name = found.id, found.name
    if thresholds is None and lifecycle:
        thresholds = current_thresholds(conn)
    return Scope(period, thresholds, seg_id, seg_name)


def check_margin(margin: float, where: str = "margin") -> float:
    """The gross margin share that turns LTV into the most one may pay for a customer."""
    if not isinstance(margin, int | float) or isinstance(margin, bool) or not 0 < margin <= 1:
        raise InvalidInput(
            [Problem(where, f"must be a number above 0 and at most 1, not {margin!r}")]
        )
    return float(margin)


# --- SQL shared by the reports ---------------------------------------------------------


def counted() -> sa.ColumnElement[bool]:
    """Orders that count: completed (a partial refund keeps one counted, with less revenue)."""
    return counted_order()


def net_amount() -> sa.ColumnElement[float]:
    return orders.c.total - orders.c.refunded


def live_in_scope(scope: Scope, table: Any = customers) -> sa.ColumnElement[bool]:
    """Customers that are not merged away and, with a segment, are in it now."""
    clause = table.c.merged_into.is_(None)
    if scope.segment_id is not None:
        sm = segment_members.c
        members = sa.select(sm.customer_id).where(
            sm.segment_id == scope.segment_id, sm.until.is_(None)
        )
        clause = sa.and_(clause, table.c.id.in_(members))
    return clause


def known_since(table: Any = customers) -> sa.ColumnElement[Any]:
    """When the store first knew the customer: the earliest of first seen and first order.

    ``created_at`` is when the row was written (an import writes old customers today), so
    it is only the fallback for a profile with neither.
    """
    c = table.c
    return sa.type_coerce(
        sa.case(
            (
                sa.and_(
                    c.first_seen_at.is_not(None),
                    sa.or_(c.first_order_at.is_(None), c.first_seen_at <= c.first_order_at),
                ),
                c.first_seen_at,
            ),
            (c.first_order_at.is_not(None), c.first_order_at),
            else_=c.created_at,
        ),
        customers.c.created_at.type,
    )


def days_between(dialect: str, later: Any, earlier: Any) -> sa.ColumnElement[Any]:
    """Fractional days from ``earlier`` to ``later``."""
    if dialect == "postgresql":
        return sa.func.extract("epoch", later - earlier) / 86400.0
    return sa.func.julianday(later) - sa.func.julianday(earlier)


def month_key(dialect: str, moment: Any) -> sa.ColumnElement[str]:
    """The UTC calendar month as ``YYYY-MM`` (an acquisition cohort's name).

    Constants are literal SQL, not parameters: the same expression in the select list and
    in GROUP BY must read alike for PostgreSQL to see that they are one.
    """
    if dialect == "postgresql":
        return sa.func.to_char(_utc(moment), sa.literal_column("'YYYY-MM'"))
    return sa.func.strftime(sa.literal_column("'%Y-%m'"), moment)


def month_number(dialect: str, moment: Any) -> sa.ColumnElement[int]:
    """Months since year 0 (year × 12 + month − 1), so month differences are subtractions."""
    twelve: Any = sa.literal_column("12")
    one: Any = sa.literal_column("1")
    if dialect == "postgresql":
        utc = _utc(moment)
        # date_part (double precision), not extract (numeric): numeric arithmetic on every
        # order row of a cohort report costs seconds on millions of orders.
        year = sa.func.date_part(sa.literal_column("'year'"), utc)
        month = sa.func.date_part(sa.literal_column("'month'"), utc)
        return sa.cast(year * twelve + month - one, sa.Integer)
    y: Any = sa.cast(sa.func.strftime(sa.literal_column("'%Y'"), moment), sa.Integer)
    m: Any = sa.cast(sa.func.strftime(sa.literal_column("'%m'"), moment), sa.Integer)
    return y * twelve + m - one


def _utc(moment: Any) -> sa.ColumnElement[Any]:
    """A stored time as a UTC wall-clock time on PostgreSQL, whatever the session's zone."""
    return sa.func.timezone(sa.literal_column("'UTC'"), moment)


def tune(conn: sa.Connection) -> None:
    """On PostgreSQL: no JIT (it costs more than these one-off aggregates gain) and enough
    memory for the per-customer hash aggregates to stay off disk, for this transaction."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL jit = off")
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
