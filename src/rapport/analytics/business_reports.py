"""One entry point per business report, shared by the API and the CLI.

Both front ends name a report, a period (``from``/``to`` or a preset), an optional segment
and, for the money figures, the margin; this module turns that into the report object, so
the two cannot drift apart in defaults or in what a parameter means.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa

from rapport.analytics.business import business_report
from rapport.analytics.cohorts import cohort_report
from rapport.analytics.export import to_csv
from rapport.analytics.funnel import funnel_report
from rapport.analytics.ltv import ltv_report
from rapport.analytics.periods import parse_period
from rapport.analytics.rfm_grid import rfm_grid_report
from rapport.analytics.scope import DEFAULT_MARGIN, Scope, check_margin, scope_for


class Report(Protocol):
    scope: Scope

    def as_json(self) -> dict[str, Any]: ...

    def table(self) -> tuple[list[str], list[list[Any]]]: ...


NAMES = ("business", "ltv", "cohorts", "funnel", "rfm")
# The reports that read "active" and "lapsed" (the lifecycle thresholds).
LIFECYCLE_REPORTS = ("business", "ltv", "funnel")
# Cohorts and the RFM grid are about a year (the RFM period's default); LTV reads churn,
# which needs enough customers crossing the lapse threshold, so a quarter.
DEFAULT_PERIODS = {
    "business": "last_30_days",
    "ltv": "last_90_days",
    "cohorts": "last_365_days",
    "funnel": "last_30_days",
    "rfm": "last_365_days",
}

_Builder = Callable[[sa.Connection, Scope, datetime, float], Any]
_BUILDERS: dict[str, _Builder] = {
    "business": lambda conn, scope, now, margin: business_report(conn, scope, margin=margin),
    "ltv": lambda conn, scope, now, margin: ltv_report(conn, scope, margin=margin),
    "cohorts": lambda conn, scope, now, margin: cohort_report(conn, scope, now),
    "funnel": lambda conn, scope, now, margin: funnel_report(conn, scope),
    "rfm": lambda conn, scope, now, margin: rfm_grid_report(conn, scope),
}


def run_report(
    conn: sa.Connection,
    name: str,
    now: datetime,
    *,
    start: str | None = None,
    end: str | None = None,
    period: str | None = None,
    segment: str | None = None,
    margin: float = DEFAULT_MARGIN,
) -> Report:
    """Parse and check every parameter first (``InvalidInput`` names each bad one), then
    resolve the segment (``SegmentNotFound``), then compute."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown report {name!r}; one of {', '.join(NAMES)}")
    chosen = parse_period(start, end, period, now.date(), default=DEFAULT_PERIODS[name])
    margin = check_margin(margin)
    scope = scope_for(conn, chosen, segment, lifecycle=name in LIFECYCLE_REPORTS)
    report: Report = _BUILDERS[name](conn, scope, now, margin)
    return report


def csv_text(report: Report) -> str:
    """The report's table as CSV; an unknown figure is an empty field, never a zero."""
    columns, rows = report.table()
    return to_csv([dict(zip(columns, row, strict=True)) for row in rows], columns, bom=False)
