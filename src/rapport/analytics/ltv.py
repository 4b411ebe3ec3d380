"""Churn, lifetime and LTV = purchase frequency × average check × lifetime, and the CAC
ceiling it allows.

Everything is measured in the unit of the report's period (P days):

* **churn** = of the customers active at the start of the period (a counted order in the
  lapse window before it), the share lapsed at its end (no counted order in the lapse
  window before the end): the customers who crossed the lifecycle "lapsed" threshold
  during the period and stayed there;
* **lifetime** = 1 / churn periods: with a constant share lost each period, the expected
  number of periods a customer stays in the active base (a geometric lifetime). The
  observed average lifetime of past customers is not used: in a young store every
  lifetime is cut short by the present (most customers have not lapsed yet), which biases
  it down by however old the store is;
* **purchase frequency** = orders in the period per active customer, **average check** =
  revenue per order, so frequency × check is the revenue one active customer brings in a
  period, and LTV the revenue over the expected stay.

The ratio of the two period-based quantities hardly depends on the period's length (both
grow with it), which is what lets a 30-day and a 90-day report give comparable LTVs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from rapport.analytics.activity import Facts, order_facts, overall
from rapport.analytics.estimates import Estimate, insufficient, known, ratio
from rapport.analytics.scope import (
    DEFAULT_MARGIN,
    Scope,
    check_margin,
    live_in_scope,
    month_key,
    tune,
)
from rapport.store.tables import customers, segments

# Below this many customers active at the start, one customer more or less moves the
# churn rate by over 3 points: not a rate to plan with.
MIN_CHURN_BASE = 30
# Lifetime is 1 / churn; its relative error is about 1/√(customers who lapsed), so with
# fewer than 10 of them (±30 %) the lifetime, and the LTV built on it, is not given.
MIN_LAPSED = 10


def churn_of(f: Facts) -> Estimate:
    numbers: dict[str, float | int] = {
        "active_at_start": f.active_at_start,
        "lapsed": f.lapsed_by_end,
    }
    if f.active_at_start < MIN_CHURN_BASE:
        return insufficient(
            f"churn needs at least {MIN_CHURN_BASE} customers active at the start of the "
            f"period; there were {f.active_at_start}",
            **numbers,
        )
    return known(f.lapsed_by_end / f.active_at_start, **numbers)


@dataclass(frozen=True)
class Ltv:
    """LTV and its factors for one group of customers over the period."""

    active: int
    frequency: Estimate  # orders per active customer per period
    average_check: Estimate
    churn: Estimate  # per period
    lifetime_periods: Estimate
    lifetime_days: Estimate
    ltv: Estimate
    cac_ceiling: Estimate

    def as_json(self) -> dict[str, Any]:
        return {
            "active_customers": self.active,
            "purchase_frequency": self.frequency.as_json(),
            "average_check": self.average_check.as_json(),
            "churn_rate": self.churn.as_json(),
            "lifetime_periods": self.lifetime_periods.as_json(),
            "lifetime_days": self.lifetime_days.as_json(),
            "ltv": self.ltv.as_json(),
            "cac_ceiling": self.cac_ceiling.as_json(),
        }


def ltv_of(f: Facts, period_days: int, margin: float) -> Ltv:
    frequency = ratio(f.orders, f.active, what="active customers", orders=f.orders)
    check = ratio(f.revenue, f.orders, what="orders", revenue=round(f.revenue, 2))
    churn = churn_of(f)
    if not churn.ok:
        lifetime = insufficient(churn.reason or "", **churn.numbers)
    elif f.lapsed_by_end < MIN_LAPSED:
        lifetime = insufficient(
            f"a lifetime needs at least {MIN_LAPSED} customers who lapsed in the period; "
            f"there were {f.lapsed_by_end}",
            **churn.numbers,
        )
    else:
        lifetime = known(1 / (churn.value or 1), **churn.numbers)
    days = (
        known((lifetime.value or 0) * period_days)
        if lifetime.ok
        else insufficient(lifetime.reason or "", **lifetime.numbers)
    )
    missing = next((e for e in (frequency, check, lifetime) if not e.ok), None)
    if missing is None:
        value = (frequency.value or 0) * (check.value or 0) * (lifetime.value or 0)
        ltv = known(value)
        cac = known(value * margin, margin=margin)
    else:
        ltv = insufficient(missing.reason or "", **missing.numbers)
        cac = insufficient(missing.reason or "", margin=margin)
    return Ltv(f.active, frequency, check, churn, lifetime, days, ltv, cac)


@dataclass(frozen=True)
class CohortLtv:
    month: str  # YYYY-MM of the first order
    customers: int  # acquired that month (live, in scope)
    revenue_to_date: float  # their revenue from all counted orders so far
    ltv: Ltv

    @property
    def revenue_per_customer(self) -> float | None:
        return self.revenue_to_date / self.customers if self.customers else None


@dataclass(frozen=True)
class SegmentLtv:
    segment_id: int
    name: str
    ltv: Ltv


@dataclass(frozen=True)
class LtvReport:
    scope: Scope
    margin: float
    overall: Ltv
    cohorts: list[CohortLtv]
    segments: list[SegmentLtv]

    def as_json(self) -> dict[str, Any]:
        return {
            **self.scope.as_json(),
            "margin": self.margin,
            "overall": self.overall.as_json(),
            "by_cohort": [
                {
                    "cohort": c.month,
                    "customers": c.customers,
                    "revenue_to_date_per_customer": c.revenue_per_customer,
                    **c.ltv.as_json(),
                }
                for c in self.cohorts
            ],
            "by_segment": [
                {"segment_id": s.segment_id, "segment": s.name, **s.ltv.as_json()}
                for s in self.segments
            ],
        }

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """One row per group (all, each cohort, each segment), for CSV."""
        columns = [
            "group",
            "key",
            "active_customers",
            "purchase_frequency",
            "average_check",
            "churn_rate",
            "lifetime_days",
            "ltv",
            "cac_ceiling",
            "status",
            "reason",
        ]
        rows = [_ltv_row("all", "", self.overall)]
        rows += [_ltv_row("cohort", c.month, c.ltv) for c in self.cohorts]
        rows += [_ltv_row("segment", s.name, s.ltv) for s in self.segments]
        return columns, rows


def _ltv_row(group: str, key: str, x: Ltv) -> list[Any]:
    return [
        group,
        key,
        x.active,
        x.frequency.value,
        x.average_check.value,
        x.churn.value,
        x.lifetime_days.value,
        x.ltv.value,
        x.cac_ceiling.value,
        x.ltv.status,
        x.ltv.reason or "",
    ]


def _cohort_sizes(conn: sa.Connection, scope: Scope) -> dict[str, tuple[int, float]]:
    c = customers.c
    key = month_key(conn.dialect.name, c.first_order_at)
    rows = conn.execute(
        sa.select(key.label("key"), sa.func.count(), sa.func.sum(c.revenue))
        .where(live_in_scope(scope), c.first_order_at.is_not(None))
        .group_by(key)
    )
    return {str(k): (int(n), float(rev or 0)) for k, n, rev in rows}


def ltv_report(conn: sa.Connection, scope: Scope, *, margin: float = DEFAULT_MARGIN) -> LtvReport:
    """LTV for the scope, for each acquisition month with active customers in the period,
    and for each segment (its current members)."""
    margin = check_margin(margin)
    tune(conn)
    days = scope.period.days
    facts = order_facts(conn, scope, (None, "cohort", "segment"))
    sizes = _cohort_sizes(conn, scope)
    cohorts = [
        CohortLtv(key, *sizes.get(key, (0, 0.0)), ltv_of(f, days, margin))
        for key, f in sorted((k, f) for (g, k), f in facts.items() if g == "cohort")
        if f.active
    ]
    names = {str(k): v for k, v in conn.execute(sa.select(segments.c.id, segments.c.name))}
    by_segment = sorted(
        ((int(key), f) for (grouping, key), f in facts.items() if grouping == "segment"),
        key=lambda x: x[0],
    )
    segment_rows = [
        SegmentLtv(sid, names.get(str(sid), str(sid)), ltv_of(f, days, margin))
        for sid, f in by_segment
        if scope.segment_id is None or sid == scope.segment_id
    ]
    return LtvReport(scope, margin, ltv_of(overall(facts), days, margin), cohorts, segment_rows)
