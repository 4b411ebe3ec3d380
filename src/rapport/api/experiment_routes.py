"""Experiment reports (management API, Bearer secret key): campaign variants, scenario
splits, the global control group, and the sample-size calculator (docs/experiments.md).

Thin routes: parse, call ``analytics.experiments``, answer JSON, CSV (``?format=csv``) or a
chart (``….svg`` / ``….png``). A bad option is 422 naming it (``query.mde``,
``body.baseline``); an unknown campaign, scenario or step is 404.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from rapport.analytics.charts import MEDIA_TYPES
from rapport.analytics.experiments import export
from rapport.analytics.experiments.chart import experiment_chart
from rapport.analytics.experiments.incrementality import global_control_report
from rapport.analytics.experiments.options import Options, parse_options, prefixed
from rapport.analytics.experiments.sample_size import (
    ALPHA,
    POWER,
    SampleSize,
    mean_sample_size,
    rate_sample_size,
)
from rapport.analytics.experiments.splits import (
    NotASplit,
    StepNotFound,
    campaign_experiment,
    scenario_experiment,
)
from rapport.analytics.periods import parse_period
from rapport.api.auth import require_secret_key
from rapport.api.errors import ApiError
from rapport.errors import InvalidInput, Problem
from rapport.messaging.campaigns import CampaignNotFound
from rapport.scenarios.store import ScenarioNotFound


def _errors(request: Request) -> Iterator[None]:
    try:
        yield
    except InvalidInput as exc:
        raise ApiError(422, str(exc), exc.problems) from None
    except NotASplit as exc:
        raise ApiError(422, str(exc), [Problem("path.step", str(exc))]) from None
    except (CampaignNotFound, ScenarioNotFound, StepNotFound) as exc:
        raise ApiError(404, str(exc)) from None


router = APIRouter(
    prefix="/api/reports/experiments",
    tags=["reports"],
    dependencies=[Depends(require_secret_key), Depends(_errors)],
)

Format = Literal["json", "csv"]
Chart = Literal["svg", "png"]


class ReportOptions:
    """The query options every experiment report takes (docs/experiments.md)."""

    def __init__(
        self,
        window_days: int | None = Query(None, description="conversion window, days"),
        metric: str | None = Query(None, description="conversion | revenue: the verdict's"),
        mde: float | None = Query(None, description="relative MDE the plan is for (0.1)"),
        power: float | None = Query(None, description="power the plan is for (0.8)"),
        alpha: float | None = Query(None, description="significance level (0.05)"),
        weeks: int | None = Query(None, description="weeks since the start to show (8)"),
        seed: int | None = Query(None, description="bootstrap seed"),
        resamples: int | None = Query(None, description="bootstrap resamples (2000)"),
        locale: str | None = Query(None, description="en | ru: the verdict's language"),
    ) -> None:
        self.raw = {
            "window_days": window_days,
            "metric": metric,
            "mde": mde,
            "power": power,
            "alpha": alpha,
            "weeks": weeks,
            "seed": seed,
            "resamples": resamples,
            "locale": locale,
        }

    def parse(self, **defaults: Any) -> Options:
        raw = {k: v for k, v in self.raw.items() if v is not None}
        try:
            return parse_options(defaults | raw)
        except InvalidInput as exc:
            raise prefixed(exc, "query") from None


def _json(data: Any) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS), media_type="application/json"
    )


def _csv(text: str, name: str) -> Response:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def _chart(report: dict[str, Any], fmt: Chart) -> Response:
    return Response(experiment_chart(report, fmt), media_type=MEDIA_TYPES[fmt])


def _now(request: Request) -> Any:
    return request.app.state.clock.now()


# Charts first: ``/campaigns/3.svg`` must not be taken for a campaign id.
@router.get("/campaigns/{campaign_id:int}.{fmt}")
def campaign_chart(
    request: Request, campaign_id: int, fmt: Chart, options: ReportOptions = Depends()
) -> Response:
    """Conversion and revenue per recipient per variant, with 95 % error bars."""
    with request.app.state.engine.connect() as conn:
        report = campaign_experiment(conn, campaign_id, options.parse(), _now(request))
    return _chart(report, fmt)


@router.get("/campaigns/{campaign_id}")
def campaign_report(
    request: Request,
    campaign_id: int,
    options: ReportOptions = Depends(),
    format: Format = Query("json"),
) -> Response:
    """A campaign's variants against its control group (or the first variant)."""
    with request.app.state.engine.connect() as conn:
        report = campaign_experiment(conn, campaign_id, options.parse(), _now(request))
    if format == "csv":
        return _csv(export.split_csv(report), f"campaign-{campaign_id}-experiment")
    return _json(report)


@router.get("/scenarios/{scenario_id}/steps/{step}.{fmt}")
def scenario_chart(
    request: Request, scenario_id: int, step: str, fmt: Chart, options: ReportOptions = Depends()
) -> Response:
    with request.app.state.engine.connect() as conn:
        report = scenario_experiment(conn, scenario_id, step, options.parse(), _now(request))
    return _chart(report, fmt)


@router.get("/scenarios/{scenario_id}/steps/{step}")
def scenario_report(
    request: Request,
    scenario_id: int,
    step: str,
    options: ReportOptions = Depends(),
    format: Format = Query("json"),
) -> Response:
    """A scenario split step's paths against its control group (or the first path)."""
    with request.app.state.engine.connect() as conn:
        report = scenario_experiment(conn, scenario_id, step, options.parse(), _now(request))
    if format == "csv":
        return _csv(export.split_csv(report), f"scenario-{scenario_id}-{step}-experiment")
    return _json(report)


@router.get("/global-control")
def global_control(
    request: Request,
    start: str | None = Query(None, alias="from", description="first day, YYYY-MM-DD"),
    end: str | None = Query(None, alias="to", description="last day, YYYY-MM-DD"),
    period: str | None = Query(None, description="a preset such as last_30_days"),
    options: ReportOptions = Depends(),
    format: Format = Query("json"),
) -> Response:
    """CRM as a whole against the global control group, and its incremental revenue."""
    now = _now(request)
    try:
        chosen = parse_period(start, end, period, now.date())
    except InvalidInput as exc:
        raise prefixed(exc, "query") from None
    with request.app.state.engine.connect() as conn:
        report = global_control_report(conn, chosen, options.parse(metric="revenue"), now)
    if format == "csv":
        return _csv(export.global_control_csv(report), "global-control")
    return _json(report)


class SampleSizeRequest(BaseModel):
    """A rate (``baseline``) or a mean (``sd``, and ``mean`` for a relative MDE)."""

    model_config = ConfigDict(extra="forbid")

    metric: Literal["rate", "mean"] = "rate"
    baseline: float | None = None
    sd: float | None = None
    mean: float | None = None
    mde: float
    relative: bool = False
    power: float = POWER
    alpha: float = ALPHA
    ratio: float = 1.0


def sample_size_of(body: SampleSizeRequest) -> SampleSize:
    """The calculator for the request's metric; problems located in the body."""
    try:
        if body.metric == "rate":
            if body.baseline is None:
                raise InvalidInput([Problem("baseline", "a rate needs its baseline, 0–1")])
            return rate_sample_size(
                body.baseline,
                body.mde,
                relative=body.relative,
                power=body.power,
                alpha=body.alpha,
                ratio=body.ratio,
            )
        if body.sd is None:
            raise InvalidInput([Problem("sd", "a mean needs its standard deviation")])
        return mean_sample_size(
            body.sd,
            body.mde,
            mean=body.mean,
            relative=body.relative,
            power=body.power,
            alpha=body.alpha,
            ratio=body.ratio,
        )
    except InvalidInput as exc:
        raise prefixed(exc, "body") from None


@router.post("/sample-size")
def sample_size(body: SampleSizeRequest, format: Format = Query("json")) -> Response:
    """Recipients per group a test needs (two-sided z-test, as statsmodels computes it)."""
    size = sample_size_of(body)
    if format == "csv":
        return _csv(export.sample_size_csv(size), "sample-size")
    return _json(size.as_dict())
