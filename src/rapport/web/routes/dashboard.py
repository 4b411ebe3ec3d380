"""The dashboard: the figures of a period (analytics/dashboard.py) and their trend.

The period switch reloads only the panel (htmx) and puts the period in the address, so a
reload or a shared link shows the same period.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from rapport.access.roles import Permission
from rapport.analytics.dashboard import dashboard
from rapport.analytics.periods import parse_period
from rapport.web.context import Page, render, require
from rapport.web.i18n import N_, gettext

router = APIRouter(include_in_schema=False)

# The presets offered by the switch (analytics/periods.py knows more).
PERIODS: tuple[tuple[str, str], ...] = (
    ("last_7_days", N_("Last 7 days")),
    ("last_30_days", N_("Last 30 days")),
    ("last_90_days", N_("Last 90 days")),
    ("this_month", N_("This month")),
    ("last_month", N_("Last month")),
    ("this_year", N_("This year")),
    ("last_365_days", N_("Last 365 days")),
)
DEFAULT_PERIOD = "last_30_days"
# The charts' series, translated on the server: the JSON the charts read carries them.
CHART_LABELS = {
    "sent": N_("Sent"),
    "open_rate": N_("Open rate"),
    "ctr": N_("Click rate"),
    "revenue": N_("Revenue from messages"),
}


def _figures(page: Page, period_name: str) -> dict[str, Any]:
    now = page.clock.now()
    problem = None
    if period_name not in dict(PERIODS):  # said on the page; the default shown instead
        problem, period_name = period_name, DEFAULT_PERIOD
    period = parse_period(None, None, period_name, now.date())
    with page.engine.connect() as conn:
        data = dashboard(conn, period, now)
    t = page.language
    chart = {
        "days": [d["day"] for d in data["trend"]],
        "sent": [d["sent"] for d in data["trend"]],
        "open_rate": [d["open_rate"] for d in data["trend"]],
        "ctr": [d["ctr"] for d in data["trend"]],
        "revenue": [d["revenue"] for d in data["trend"]],
        "labels": {key: gettext(t, label) for key, label in CHART_LABELS.items()},
    }
    funnel = data["business"]["funnel"]
    top = max([1, *funnel.values()])
    return {
        "data": data,
        "chart": chart,
        "funnel": [(stage, n, n / top) for stage, n in funnel.items()],
        "period_name": period_name,
        "periods": PERIODS,
        "bad_period": problem,
    }


FUNNEL_LABELS = {
    "acquisition": N_("Acquisition"),
    "activation": N_("Activation"),
    "repeat": N_("Repeat"),
    "retention": N_("Retention"),
    "reactivation": N_("Reactivation"),
}


@router.get("/")
def dashboard_page(
    period: str = DEFAULT_PERIOD, page: Page = Depends(require(Permission.VIEW))
) -> Response:
    context = _figures(page, period) | {"funnel_labels": FUNNEL_LABELS}
    return render(page, "dashboard.html", context)


@router.get("/dashboard/panel")
def dashboard_panel(
    period: str = DEFAULT_PERIOD, page: Page = Depends(require(Permission.VIEW))
) -> Response:
    """The panel alone, for the period switch; the address bar shows the full page's URL."""
    context = _figures(page, period) | {"funnel_labels": FUNNEL_LABELS}
    url = "/" if context["period_name"] == DEFAULT_PERIOD else f"/?period={context['period_name']}"
    return render(page, "_dashboard_panel.html", context, headers={"HX-Push-Url": url})
