"""Message reports and attribution (management API, Bearer secret key; docs/metrics.md).

Thin routes: parse the period and the filter, call ``analytics``, answer as JSON, CSV
(``?format=csv``) or a chart (``.svg`` / ``.png``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from rapport.analytics.attribution import load_attribution, parse_attribution, save_attribution
from rapport.analytics.charts import MEDIA_TYPES
from rapport.analytics.dashboard import dashboard
from rapport.analytics.export import to_csv
from rapport.analytics.message_charts import trend_chart
from rapport.analytics.message_metrics import (
    GROUPS,
    MessageFilter,
    crm_revenue_share,
    message_metrics,
)
from rapport.analytics.periods import Period, parse_period
from rapport.api.audit_key import record_key_change
from rapport.api.auth import require_secret_key
from rapport.api.errors import ApiError
from rapport.errors import InvalidInput
from rapport.store.engine import writing


def _errors() -> Iterator[None]:
    try:
        yield
    except InvalidInput as exc:
        raise ApiError(422, str(exc), exc.problems) from None
    except LookupError as exc:
        raise ApiError(404, str(exc.args[0] if exc.args else exc)) from None


router = APIRouter(dependencies=[Depends(require_secret_key), Depends(_errors)])


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


def _period(request: Request, start: str | None, end: str | None, name: str | None) -> Period:
    return parse_period(start, end, name, request.app.state.clock.now().date())


class _Query:
    """The query parameters every message report takes."""

    def __init__(
        self,
        start: str | None = Query(None, alias="from", description="first day, YYYY-MM-DD"),
        end: str | None = Query(None, alias="to", description="last day, YYYY-MM-DD"),
        period: str | None = Query(None, description="a preset such as last_30_days"),
        channel: str | None = None,
        campaign: str | None = Query(None, description="a campaign id"),
        scenario: str | None = Query(None, description="a scenario id"),
        step: str | None = Query(None, description="a step of that scenario"),
        variant: str | None = None,
        segment: int | None = Query(None, description="only customers now in this segment"),
    ) -> None:
        self.start, self.end, self.period = start, end, period
        self.filter = MessageFilter(channel, campaign, scenario, step, variant, segment)


@router.get("/api/reports/messages", tags=["reports"])
def messages_report(
    request: Request,
    q: _Query = Depends(),
    group_by: str = Query("total", description=f"one of {', '.join(GROUPS)}"),
    format: Literal["json", "csv"] = "json",
) -> Response:
    """Sent, delivered, open rate, CTR, CTOR, unsubscribes, bounces, conversions and
    attributed revenue of the messages first recorded in the period."""
    period = _period(request, q.start, q.end, q.period)
    with request.app.state.engine.connect() as conn:
        rows = [m.as_json() for m in message_metrics(conn, period, q.filter, group_by)]
    if format == "csv":
        return Response(to_csv(rows), media_type="text/csv; charset=utf-8")
    return _json(
        {
            "period": period.as_json(),
            "filter": q.filter.as_json(),
            "group_by": group_by,
            "rows": rows,
        }
    )


@router.get("/api/reports/messages.{fmt}", tags=["reports"])
def messages_chart(
    request: Request,
    fmt: Literal["svg", "png"],
    q: _Query = Depends(),
    group_by: Literal["day", "week", "month"] = "day",
    locale: Literal["en", "ru"] = "en",
) -> Response:
    """The trend: messages sent per day (or week, month) with the open rate and CTR."""
    period = _period(request, q.start, q.end, q.period)
    with request.app.state.engine.connect() as conn:
        rows = message_metrics(conn, period, q.filter, group_by)
    return Response(trend_chart(rows, fmt, locale), media_type=MEDIA_TYPES[fmt])


@router.get("/api/reports/dashboard", tags=["reports"])
def dashboard_report(
    request: Request,
    start: str | None = Query(None, alias="from"),
    end: str | None = Query(None, alias="to"),
    period: str | None = None,
) -> Response:
    """Revenue and CRM's share of it, messages with the previous period and the daily
    trend, the funnel, active scenarios and alerts (a failing channel, a bounce spike)."""
    span = _period(request, start, end, period)
    with request.app.state.engine.connect() as conn:
        return _json(dashboard(conn, span, request.app.state.clock.now()))


@router.get("/api/reports/attribution", tags=["reports"])
def attribution_report(
    request: Request,
    start: str | None = Query(None, alias="from"),
    end: str | None = Query(None, alias="to"),
    period: str | None = None,
    segment: int | None = None,
    format: Literal["json", "csv"] = "json",
) -> Response:
    """Revenue of the orders placed in the period and the share credited to messages, by
    channel; with the revenue per campaign and per scenario step."""
    span = _period(request, start, end, period)
    flt = MessageFilter(segment_id=segment)
    with request.app.state.engine.connect() as conn:
        share = crm_revenue_share(conn, span, segment)
        campaigns = [m.as_json() for m in message_metrics(conn, span, flt, "campaign")]
        steps = [m.as_json() for m in message_metrics(conn, span, flt, "scenario_step")]
    if format == "csv":
        return Response(to_csv(share["channels"]), media_type="text/csv; charset=utf-8")
    share["campaigns"] = [r for r in campaigns if r["campaign_id"] is not None]
    share["scenario_steps"] = [r for r in steps if r["scenario_id"] is not None]
    return _json(share)


@router.get("/api/settings/attribution", tags=["settings"])
def get_attribution(request: Request) -> Response:
    """The attribution windows: last click within N days, else last open within M."""
    with request.app.state.engine.connect() as conn:
        return _json(load_attribution(conn).model_dump(mode="json"))


@router.put("/api/settings/attribution", tags=["settings"])
async def put_attribution(request: Request) -> Response:
    """Replace the windows (applies to orders from now on; `rapport analytics rebuild`
    re-credits the history)."""
    try:
        doc = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from None
    settings = parse_attribution(doc)
    with writing(request.app.state.engine) as conn:
        save_attribution(conn, settings, request.app.state.clock.now())
        saved = settings.model_dump(mode="json")
        record_key_change(conn, request, "attribution.update", "settings", "attribution", saved)
    return _json(saved)
