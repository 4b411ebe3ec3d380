"""Business reports (management API, Bearer secret key): business metrics, LTV, cohorts,
funnel and the RFM grid, as JSON, CSV or charts (docs/metrics.md).

Thin routes: parse the query, call ``analytics.business_reports``, answer. A bad period or
margin answers 422 naming the query parameter; an unknown segment 404.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from rapport.analytics.business_charts import CHARTS
from rapport.analytics.business_reports import Report, csv_text, run_report
from rapport.analytics.charts import MEDIA_TYPES, Format
from rapport.analytics.scope import DEFAULT_MARGIN
from rapport.api.auth import require_secret_key
from rapport.api.errors import ApiError
from rapport.errors import InvalidInput, Problem
from rapport.segments.definitions import SegmentNotFound
from rapport.segments.lifecycle import LifecycleSettingsError


def _errors() -> Iterator[None]:
    try:
        yield
    except InvalidInput as exc:
        problems = [Problem(f"query.{p.where}", p.reason) for p in exc.problems]
        raise ApiError(422, "; ".join(str(p) for p in problems), problems) from None
    except SegmentNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except LifecycleSettingsError as exc:  # the stored stage thresholds are broken
        raise ApiError(409, f"the lifecycle settings cannot be used: {exc}") from None


router = APIRouter(
    prefix="/api/reports",
    tags=["reports"],
    dependencies=[Depends(require_secret_key), Depends(_errors)],
)


class _Params:
    """The query every business report takes."""

    def __init__(
        self,
        start: str | None = Query(None, alias="from", description="first day, YYYY-MM-DD"),
        end: str | None = Query(None, alias="to", description="last day, YYYY-MM-DD"),
        period: str | None = Query(None, description="a preset: last_30_days, this_month, …"),
        segment: str | None = Query(None, description="segment id or name: its members now"),
        margin: float = Query(DEFAULT_MARGIN, description="gross margin share for the CAC ceiling"),
    ) -> None:
        self.start, self.end, self.period = start, end, period
        self.segment, self.margin = segment, margin


def _report(request: Request, name: str, q: _Params) -> Report:
    with request.app.state.engine.connect() as conn:
        return run_report(
            conn,
            name,
            request.app.state.clock.now(),
            start=q.start,
            end=q.end,
            period=q.period,
            segment=q.segment,
            margin=q.margin,
        )


def _answer(report: Report, name: str, fmt: str) -> Response:
    if fmt == "csv":
        p = report.scope.period
        return Response(
            csv_text(report),
            media_type="text/csv",
            headers={
                "Content-Disposition": f'attachment; filename="{name}-{p.first}-{p.last}.csv"'
            },
        )
    body: Any = report.as_json()
    return Response(
        orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY),
        media_type="application/json",
    )


def _chart(request: Request, name: str, fmt: Format, q: _Params) -> Response:
    report = _report(request, name, q)
    return Response(CHARTS[name](report, fmt), media_type=MEDIA_TYPES[fmt])


TableFormat = Literal["json", "csv"]


@router.get("/business")
def business(request: Request, q: _Params = Depends(), format: TableFormat = "json") -> Response:
    """Revenue, orders, buyers, average check, ARPU, repeat orders, time to repeat purchase,
    churn, LTV and the CAC ceiling of the period (default the last 30 days)."""
    return _answer(_report(request, "business", q), "business", format)


@router.get("/ltv")
def ltv(request: Request, q: _Params = Depends(), format: TableFormat = "json") -> Response:
    """LTV = purchase frequency × average check × lifetime, overall, by acquisition month and
    by segment, with the CAC ceiling (default the last 90 days)."""
    return _answer(_report(request, "ltv", q), "ltv", format)


@router.get("/cohorts")
def cohorts(request: Request, q: _Params = Depends(), format: TableFormat = "json") -> Response:
    """Retention and revenue by month since the first order, for the cohorts acquired in
    the period (default the last 365 days), up to 24 months."""
    return _answer(_report(request, "cohorts", q), "cohorts", format)


@router.get("/funnel")
def funnel(request: Request, q: _Params = Depends(), format: TableFormat = "json") -> Response:
    """Acquisition → activation → repeat → retention → reactivation in the period (default
    the last 30 days), with the conversion of each step."""
    return _answer(_report(request, "funnel", q), "funnel", format)


@router.get("/rfm")
def rfm(request: Request, q: _Params = Depends(), format: TableFormat = "json") -> Response:
    """Customers per RFM score and cell now, with their revenue in the period (default the
    last 365 days)."""
    return _answer(_report(request, "rfm", q), "rfm", format)


@router.get("/funnel.{fmt}")
def funnel_chart(request: Request, fmt: Format, q: _Params = Depends()) -> Response:
    """The funnel as bars labelled with each step's conversion (SVG or PNG)."""
    return _chart(request, "funnel", fmt, q)


@router.get("/cohorts.{fmt}")
def cohorts_chart(request: Request, fmt: Format, q: _Params = Depends()) -> Response:
    """Cohort retention as a heatmap (SVG or PNG)."""
    return _chart(request, "cohorts", fmt, q)


@router.get("/ltv.{fmt}")
def ltv_chart(request: Request, fmt: Format, q: _Params = Depends()) -> Response:
    """LTV by acquisition month as bars, with the revenue per customer so far (SVG or PNG)."""
    return _chart(request, "ltv", fmt, q)


@router.get("/rfm.{fmt}")
def rfm_chart(request: Request, fmt: Format, q: _Params = Depends()) -> Response:
    """The RFM grid as a heatmap of customers, labelled with their revenue (SVG or PNG)."""
    return _chart(request, "rfm", fmt, q)
