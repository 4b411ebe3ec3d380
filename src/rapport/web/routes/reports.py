"""Reports: messages, attribution, funnel, cohorts, LTV and the RFM grid for one period.

Thin routes over ``rapport.analytics``: the page shows each report's figures, its chart as
an ``<img>`` from ``/reports/{name}.svg`` (session-authenticated, the same chart functions
as ``/api/reports/…``) and, for roles with ``export``, a CSV from ``/reports/{name}.csv``.
The period switch reloads only the panel (htmx) and puts the period in the address.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from fastapi.responses import Response

from rapport.access.roles import Permission
from rapport.analytics.business_charts import CHARTS
from rapport.analytics.business_reports import Report, csv_text, run_report
from rapport.analytics.charts import MEDIA_TYPES
from rapport.analytics.export import to_csv
from rapport.analytics.message_charts import trend_chart
from rapport.analytics.message_metrics import (
    MessageFilter,
    MessageMetrics,
    crm_revenue_share,
    message_metrics,
)
from rapport.analytics.periods import Period, parse_period
from rapport.web.context import Page, render, require
from rapport.web.routes.dashboard import DEFAULT_PERIOD, FUNNEL_LABELS, PERIODS

router = APIRouter(include_in_schema=False)

BUSINESS = ("funnel", "cohorts", "ltv", "rfm")
CHARTED = ("messages", *BUSINESS)
DOWNLOADS = ("messages", "attribution", *BUSINESS)
# The table on the page shows the most recent rows; the CSV has them all.
TABLE_ROWS = 12


def _bad_period(name: str) -> Response:
    return Response(
        f"Unknown period {name!r}; one of {', '.join(dict(PERIODS))}.",
        status_code=422,
        media_type="text/plain; charset=utf-8",
    )


def _period(page: Page, name: str) -> Period:
    return parse_period(None, None, name, page.clock.now().date())


def _business(conn: sa.Connection, page: Page, name: str, period_name: str) -> Report:
    return run_report(conn, name, page.clock.now(), period=period_name)


def _figures(page: Page, period_name: str) -> dict[str, Any]:
    problem = None
    if period_name not in dict(PERIODS):  # said on the page; the default shown instead
        problem, period_name = period_name, DEFAULT_PERIOD
    period = _period(page, period_name)
    everything = MessageFilter()
    with page.engine.connect() as conn:
        totals = message_metrics(conn, period, everything, "total")
        by_day = message_metrics(conn, period, everything, "day")
        share = crm_revenue_share(conn, period)
        campaigns = message_metrics(conn, period, everything, "campaign")
        steps = message_metrics(conn, period, everything, "scenario_step")
        reports = {name: _business(conn, page, name, period_name) for name in BUSINESS}
    total = totals[0].as_json() if totals else None
    # Months without a new customer are rows of the report, not data to show.
    cohorts = [c for c in reports["cohorts"].cohorts if c.customers]  # type: ignore[attr-defined]
    ltv_cohorts = [c for c in reports["ltv"].cohorts if c.customers]  # type: ignore[attr-defined]
    return {
        "period": period.as_json(),
        "period_name": period_name,
        "periods": PERIODS,
        "bad_period": problem,
        "query": f"?period={period_name}",
        "messages": total if total and total["sent"] else None,
        "by_day": [m.as_json() for m in by_day],
        "share": share,
        "campaigns": [m.as_json() for m in campaigns if m.key.get("campaign_id") is not None],
        "steps": [m.as_json() for m in steps if m.key.get("scenario_id") is not None],
        "funnel": reports["funnel"],
        "funnel_empty": not any(reports["funnel"].counts().values()),  # type: ignore[attr-defined]
        "cohorts": cohorts[-TABLE_ROWS:],
        "ltv": reports["ltv"],
        "ltv_cohorts": ltv_cohorts[-TABLE_ROWS:],
        "rfm": reports["rfm"],
        "funnel_labels": FUNNEL_LABELS,
    }


@router.get("/reports")
def reports_page(
    period: str = DEFAULT_PERIOD, page: Page = Depends(require(Permission.VIEW))
) -> Response:
    return render(page, "reports.html", _figures(page, period))


@router.get("/reports/panel")
def reports_panel(
    period: str = DEFAULT_PERIOD, page: Page = Depends(require(Permission.VIEW))
) -> Response:
    """The panel alone, for the period switch; the address bar shows the full page's URL."""
    context = _figures(page, period)
    url = "/reports" + ("" if context["period_name"] == DEFAULT_PERIOD else context["query"])
    return render(page, "_reports_panel.html", context, headers={"HX-Push-Url": url})


@router.get("/reports/{name}.svg")
def report_chart(
    name: str, period: str = DEFAULT_PERIOD, page: Page = Depends(require(Permission.VIEW))
) -> Response:
    """A report's chart, drawn by the same functions as ``/api/reports/{name}.svg``."""
    if name not in CHARTED:
        return Response("No such chart.", status_code=404, media_type="text/plain")
    if period not in dict(PERIODS):
        return _bad_period(period)
    with page.engine.connect() as conn:
        if name == "messages":
            rows = message_metrics(conn, _period(page, period), MessageFilter(), "day")
            image = trend_chart(rows, "svg", page.language)
        else:
            image = CHARTS[name](_business(conn, page, name, period), "svg")
    return Response(image, media_type=MEDIA_TYPES["svg"], headers={"Cache-Control": "no-store"})


@router.get("/reports/{name}.csv")
def report_csv(
    name: str, period: str = DEFAULT_PERIOD, page: Page = Depends(require(Permission.EXPORT))
) -> Response:
    """A report's table as CSV, the same as ``/api/reports/…`` with ``format=csv``."""
    if name not in DOWNLOADS:
        return Response("No such report.", status_code=404, media_type="text/plain")
    if period not in dict(PERIODS):
        return _bad_period(period)
    span = _period(page, period)
    with page.engine.connect() as conn:
        if name == "messages":
            rows = message_metrics(conn, span, MessageFilter(), "day")
            columns = list(MessageMetrics(key={"day": None}).as_json())
            text = to_csv([m.as_json() for m in rows], columns)
        elif name == "attribution":
            channels = crm_revenue_share(conn, span)["channels"]
            text = to_csv(channels, ["channel", "orders", "revenue", "share"])
        else:
            text = csv_text(_business(conn, page, name, period))
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}-{span.first}-{span.last}.csv"',
            "Cache-Control": "no-store",
        },
    )
