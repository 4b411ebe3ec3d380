"""The CRM funnel of a period: acquisition → activation → repeat → retention → reactivation.

Each stage is the lifecycle transition (segments/lifecycle.py) a customer makes by an
order, counted when it happened in the period:

=============  ===================  ==================================================
stage          lifecycle stage      a customer counts when, in the period, they …
=============  ===================  ==================================================
acquisition    prospect             became known (first seen, or first order)
activation     new                  placed their first counted order ever
repeat         repeat               placed their second
retention      active               placed their ``active_min_orders``-th (3rd by default)
reactivation   reactivated          bought while lapsed (no order in the lapse window
                                    before the start)
=============  ===================  ==================================================

A customer can make several steps in one period (a first and a second order). Two
conversions are given for each step: ``of_previous`` (this step's count over the previous
one's: the flow through the funnel, which matches the probability of the step when the
shop is steady, and can exceed 100 % when a backlog converts), and ``conversion``: of the
customers who *could* make the step in the period (``eligible``), the share who did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from rapport.analytics.activity import Facts, order_facts, overall
from rapport.analytics.estimates import Estimate, ratio
from rapport.analytics.scope import Scope, tune

STAGES = ("acquisition", "activation", "repeat", "retention", "reactivation")
LIFECYCLE = {
    "acquisition": "prospect",
    "activation": "new",
    "repeat": "repeat",
    "retention": "active",
    "reactivation": "reactivated",
}
ELIGIBLE = {
    "activation": "prospects at the start, and customers acquired in the period",
    "repeat": "customers with one order at the start, and first-time buyers of the period",
    "retention": "customers one order short of active at the start, or who got there",
    "reactivation": "customers lapsed at the start",
}


@dataclass(frozen=True)
class Stage:
    name: str
    customers: int
    eligible: int | None
    conversion: Estimate | None  # customers / eligible
    of_previous: Estimate | None  # customers / previous stage's customers

    def as_json(self) -> dict[str, Any]:
        return {
            "stage": self.name,
            "lifecycle_stage": LIFECYCLE[self.name],
            "customers": self.customers,
            "eligible": self.eligible,
            "eligible_are": ELIGIBLE.get(self.name),
            "conversion": None if self.conversion is None else self.conversion.as_json(),
            "of_previous": None if self.of_previous is None else self.of_previous.as_json(),
        }


@dataclass(frozen=True)
class FunnelReport:
    scope: Scope
    stages: list[Stage]

    def counts(self) -> dict[str, int]:
        return {s.name: s.customers for s in self.stages}

    def as_json(self) -> dict[str, Any]:
        return {**self.scope.as_json(), "stages": [s.as_json() for s in self.stages]}

    def table(self) -> tuple[list[str], list[list[Any]]]:
        columns = ["stage", "lifecycle_stage", "customers", "eligible", "conversion", "of_previous"]
        rows = [
            [
                s.name,
                LIFECYCLE[s.name],
                s.customers,
                s.eligible,
                None if s.conversion is None else s.conversion.value,
                None if s.of_previous is None else s.of_previous.value,
            ]
            for s in self.stages
        ]
        return columns, rows


def stages_of(f: Facts) -> list[Stage]:
    counts = {
        "acquisition": f.acquired,
        "activation": f.first_orders,
        "repeat": f.second_orders,
        "retention": f.retained,
        "reactivation": f.reactivated,
    }
    eligible = {
        "activation": f.prospects_at_start + f.acquired,
        "repeat": f.could_repeat,
        "retention": f.could_retain,
        "reactivation": f.lapsed_at_start,
    }
    out: list[Stage] = []
    previous: int | None = None
    for name in STAGES:
        n = counts[name]
        base = eligible.get(name)
        conversion = None if base is None else ratio(n, base, what="eligible customers")
        of_previous = (
            None
            if previous is None or name == "reactivation"
            else ratio(n, previous, what=f"customers at the {out[-1].name} stage")
        )
        out.append(Stage(name, n, base, conversion, of_previous))
        previous = n
    return out


def funnel_report(conn: sa.Connection, scope: Scope) -> FunnelReport:
    tune(conn)
    return FunnelReport(scope, stages_of(overall(order_facts(conn, scope))))
