"""The business metrics of a period: revenue, orders, buyers, average check, ARPU, repeat
orders, time to repeat purchase, churn and LTV (docs/metrics.md defines each).

What counts is the same everywhere: counted orders (``completed``, cancelled and fully
refunded ones left out), net of partial refunds, dated by when they were placed; merged
profiles are left out (their orders moved to the survivor); with a segment, its current
members. "Active" is the lifecycle's: not lapsed, i.e. a counted order within the lapse
threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from rapport.analytics.activity import (
    REPEAT_BUCKETS,
    Facts,
    RepeatGaps,
    business_facts,
    order_facts,
    overall,
)
from rapport.analytics.estimates import Estimate, insufficient, known, ratio
from rapport.analytics.ltv import Ltv, churn_of, ltv_of
from rapport.analytics.order_days import WindowFacts, window_facts
from rapport.analytics.periods import Period
from rapport.analytics.scope import DEFAULT_MARGIN, Scope, check_margin, scope_for, tune
from rapport.segments.lifecycle import LifecycleThresholds

# A median of fewer repeat purchases than this says more about the few than the shop.
MIN_REPEAT_GAPS = 30


def bucket_labels() -> list[tuple[int, int | None, str]]:
    """(from day, to day excluded or None, label) of each time-to-repeat bucket."""
    out: list[tuple[int, int | None, str]] = []
    low = 0
    for high in (*REPEAT_BUCKETS, None):
        label = f"{low}+ days" if high is None else f"{low}–{high - 1} days"
        out.append((low, high, label))
        low = high or 0
    return out


@dataclass(frozen=True)
class TimeToRepeat:
    gaps: RepeatGaps

    @property
    def median(self) -> Estimate:
        n = self.gaps.customers
        if n < MIN_REPEAT_GAPS or self.gaps.median_days is None:
            return insufficient(
                f"a median needs at least {MIN_REPEAT_GAPS} customers whose second order is "
                f"in the period; there were {n}",
                customers=n,
            )
        return known(self.gaps.median_days, customers=n)

    @property
    def mean(self) -> Estimate:
        n = self.gaps.customers
        if n < MIN_REPEAT_GAPS or self.gaps.mean_days is None:
            return insufficient(
                f"a mean needs at least {MIN_REPEAT_GAPS} customers whose second order is "
                f"in the period; there were {n}",
                customers=n,
            )
        return known(self.gaps.mean_days, customers=n)

    def as_json(self) -> dict[str, Any]:
        n = self.gaps.customers
        return {
            "customers": n,
            "median_days": self.median.as_json(),
            "mean_days": self.mean.as_json(),
            "buckets": [
                {
                    "from_days": low,
                    "to_days": high,
                    "label": label,
                    "customers": count,
                    "share": count / n if n else None,
                }
                for (low, high, label), count in zip(
                    bucket_labels(), self.gaps.buckets, strict=True
                )
            ],
        }


@dataclass(frozen=True)
class BusinessReport:
    scope: Scope
    facts: Facts
    repeat: TimeToRepeat
    margin: float

    @property
    def average_check(self) -> Estimate:
        return ratio(self.facts.revenue, self.facts.orders, what="orders")

    @property
    def arpu(self) -> Estimate:
        return ratio(self.facts.revenue, self.facts.active, what="active customers")

    @property
    def revenue_per_buyer(self) -> Estimate:
        return ratio(self.facts.revenue, self.facts.buyers, what="buyers")

    @property
    def repeat_orders(self) -> int:
        return self.facts.orders - self.facts.first_orders

    @property
    def repeat_share(self) -> Estimate:
        return ratio(self.repeat_orders, self.facts.orders, what="orders")

    @property
    def churn(self) -> Estimate:
        return churn_of(self.facts)

    @property
    def ltv(self) -> Ltv:
        return ltv_of(self.facts, self.scope.period.days, self.margin)

    def as_json(self) -> dict[str, Any]:
        f = self.facts
        return {
            **self.scope.as_json(),
            "revenue": round(f.revenue, 2),
            "orders": f.orders,
            "buyers": f.buyers,
            "new_buyers": f.first_orders,
            "average_check": self.average_check.as_json(),
            "active_customers": f.active,
            "arpu": self.arpu.as_json(),
            "revenue_per_buyer": self.revenue_per_buyer.as_json(),
            "repeat_orders": self.repeat_orders,
            "repeat_order_share": self.repeat_share.as_json(),
            "time_to_repeat": self.repeat.as_json(),
            "churn_rate": self.churn.as_json(),
            "margin": self.margin,
            "ltv": self.ltv.as_json(),
        }

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """metric, value, status, reason: one row per figure, for CSV and the terminal."""
        f = self.facts
        ltv = self.ltv
        rows: list[list[Any]] = [
            ["revenue", round(f.revenue, 2), "ok", ""],
            ["orders", f.orders, "ok", ""],
            ["buyers", f.buyers, "ok", ""],
            ["new_buyers", f.first_orders, "ok", ""],
            ["active_customers", f.active, "ok", ""],
            ["repeat_orders", self.repeat_orders, "ok", ""],
        ]
        for name, est in (
            ("average_check", self.average_check),
            ("arpu", self.arpu),
            ("revenue_per_buyer", self.revenue_per_buyer),
            ("repeat_order_share", self.repeat_share),
            ("time_to_repeat_median_days", self.repeat.median),
            ("time_to_repeat_mean_days", self.repeat.mean),
            ("churn_rate", self.churn),
            ("purchase_frequency", ltv.frequency),
            ("lifetime_days", ltv.lifetime_days),
            ("ltv", ltv.ltv),
            ("cac_ceiling", ltv.cac_ceiling),
        ):
            rows.append([name, est.value, est.status, est.reason or ""])
        for (_, _, label), count in zip(bucket_labels(), self.repeat.gaps.buckets, strict=True):
            rows.append([f"time_to_repeat {label}", count, "ok", ""])
        return ["metric", "value", "status", "reason"], rows


def business_report(
    conn: sa.Connection, scope: Scope, *, margin: float = DEFAULT_MARGIN
) -> BusinessReport:
    margin = check_margin(margin)
    tune(conn)
    facts, gaps = business_facts(conn, scope)
    return BusinessReport(scope, facts, TimeToRepeat(gaps), margin)


def dashboard_business(
    conn: sa.Connection,
    period: Period,
    *,
    segment: str | int | None = None,
    thresholds: LifecycleThresholds | None = None,
    from_orders: bool = False,
) -> dict[str, Any]:
    """The few figures a dashboard shows: revenue, orders, buyers, average check, ARPU,
    repeat share and the funnel counts.

    For everyone they are summed from the order roll-ups (``order_days``: a few thousand
    rows, kept in the transaction that stores each order, so as fresh as the orders);
    for a segment, or with ``from_orders``, they come from one statement over the orders
    since one lapse before the period and the customers table (``activity.order_facts``),
    which the roll-ups are tested to equal.
    """
    scope = scope_for(conn, period, segment, thresholds)
    tune(conn)
    f: Facts | WindowFacts
    if scope.segment_id is None and not from_orders:
        f = window_facts(conn, scope)
    else:
        f = overall(order_facts(conn, scope))
    return {
        **scope.as_json(),
        "revenue": round(f.revenue, 2),
        "orders": f.orders,
        "buyers": f.buyers,
        "active_customers": f.active,
        "average_check": ratio(f.revenue, f.orders, what="orders").as_json(),
        "arpu": ratio(f.revenue, f.active, what="active customers").as_json(),
        "repeat_order_share": ratio(f.orders - f.first_orders, f.orders, what="orders").as_json(),
        "funnel": {
            "acquisition": f.acquired,
            "activation": f.first_orders,
            "repeat": f.second_orders,
            "retention": f.retained,
            "reactivation": f.reactivated,
        },
    }
