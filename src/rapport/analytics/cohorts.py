"""Retention by acquisition cohort: the triangle of customers who bought again, and what
they spent, in each month since their first order.

A cohort is the customers whose first counted order fell in one UTC calendar month. The
report's period picks the cohorts (every month that overlaps it, each whole); their
activity is followed up to ``until`` (the report's clock), at most ``MAX_MONTHS`` months
after acquisition. Month +k is the k-th calendar month after the acquisition month, so
a customer acquired on 31 January who buys on 1 February bought in month +1: calendar
months are what the marketing calendar and the charts speak in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from rapport.analytics.scope import (
    Scope,
    counted,
    live_in_scope,
    month_number,
    net_amount,
    tune,
)
from rapport.store.tables import customers, orders

MAX_MONTHS = 24


def _month_start(year: int, month: int) -> datetime:
    return datetime(year + (month - 1) // 12, (month - 1) % 12 + 1, 1, tzinfo=UTC)


def _number(d: date | datetime) -> int:
    return d.year * 12 + d.month - 1


def _name(number: int) -> str:
    return f"{number // 12:04d}-{number % 12 + 1:02d}"


@dataclass(frozen=True)
class Cohort:
    month: str  # YYYY-MM
    customers: int
    observed: int  # the last month since acquisition with data so far (0 = only month 0)
    buyers: list[int | None]  # customers who bought in month +k; None = not reached yet
    revenue: list[float | None]

    def share(self, k: int) -> float | None:
        n = self.buyers[k]
        return None if n is None or not self.customers else n / self.customers

    def revenue_per_customer(self, k: int) -> float | None:
        r = self.revenue[k]
        return None if r is None or not self.customers else r / self.customers


@dataclass(frozen=True)
class CohortReport:
    scope: Scope
    until: datetime
    max_months: int
    cohorts: list[Cohort]

    def as_json(self) -> dict[str, Any]:
        return {
            **self.scope.as_json(),
            "until": self.until.isoformat(),
            "max_months": self.max_months,
            "cohorts": [
                {
                    "cohort": c.month,
                    "customers": c.customers,
                    "months_observed": c.observed,
                    "months": [
                        {
                            "month": k,
                            "buyers": c.buyers[k],
                            "share": c.share(k),
                            "revenue": None
                            if c.revenue[k] is None
                            else round(c.revenue[k] or 0, 2),
                            "revenue_per_customer": c.revenue_per_customer(k),
                        }
                        for k in range(c.observed + 1)
                    ],
                }
                for c in self.cohorts
            ],
        }

    def table(self) -> tuple[list[str], list[list[Any]]]:
        columns = [
            "cohort",
            "customers",
            "month",
            "buyers",
            "share",
            "revenue",
            "revenue_per_customer",
        ]
        rows = [
            [
                c.month,
                c.customers,
                k,
                c.buyers[k],
                c.share(k),
                c.revenue[k],
                c.revenue_per_customer(k),
            ]
            for c in self.cohorts
            for k in range(c.observed + 1)
        ]
        return columns, rows


def cohort_report(
    conn: sa.Connection, scope: Scope, until: datetime, *, max_months: int = MAX_MONTHS
) -> CohortReport:
    """Two statements: the cohorts' sizes, and their orders per (cohort, month since)."""
    tune(conn)
    dialect = conn.dialect.name
    p = scope.period
    first, last = _number(p.first), _number(p.last)
    start = _month_start(first // 12, first % 12 + 1)
    end = _month_start(last // 12, last % 12 + 2)
    c, o = customers.c, orders.c
    in_cohorts = sa.and_(live_in_scope(scope), c.first_order_at >= start, c.first_order_at < end)
    cohort = month_number(dialect, c.first_order_at)
    sizes = {
        int(k): int(n)
        for k, n in conn.execute(
            sa.select(cohort.label("m"), sa.func.count()).where(in_cohorts).group_by(cohort)
        )
    }
    # Orders are read from the first cohort's month up to the last cohort's cap (or now):
    # one range of ix_orders_occurred_at, joined to the cohorts' customers.
    members = sa.select(c.id.label("cid"), cohort.label("m")).where(in_cohorts).subquery("members")
    horizon = min(until, _month_start(last // 12, last % 12 + 2 + max_months))
    rows = (
        sa.select(
            members.c.cid,
            members.c.m,
            (month_number(dialect, o.occurred_at) - members.c.m).label("k"),
            net_amount().label("net"),
        )
        .select_from(orders.join(members, members.c.cid == o.customer_id))
        .where(counted(), o.occurred_at >= start, o.occurred_at < horizon)
        .subquery("rows")
    )
    per_customer = (
        sa.select(rows.c.m, rows.c.k, sa.func.sum(rows.c.net).label("net"))
        .group_by(rows.c.cid, rows.c.m, rows.c.k)
        .subquery("per_customer")
    )
    pc = per_customer.c
    cells: dict[tuple[int, int], tuple[int, float]] = {
        (int(m), int(k)): (int(n), float(net or 0))
        for m, k, n, net in conn.execute(
            sa.select(pc.m, pc.k, sa.func.count(), sa.func.sum(pc.net)).group_by(pc.m, pc.k)
        )
    }
    now_number = _number(until)
    out: list[Cohort] = []
    for m in range(first, last + 1):
        size = sizes.get(m, 0)
        observed = min(max_months, now_number - m)
        if observed < 0:
            continue
        buyers: list[int | None] = [None] * (max_months + 1)
        revenue: list[float | None] = [None] * (max_months + 1)
        for k in range(observed + 1):
            n, net = cells.get((m, k), (0, 0.0))
            buyers[k], revenue[k] = n, net
        out.append(Cohort(_name(m), size, observed, buyers, revenue))
    return CohortReport(scope, until, max_months, out)
