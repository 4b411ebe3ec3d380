"""`rapport report experiment|global-control|sample-size`: A/B tests and holdouts in the
terminal — Rich tables, the verdict in words, and the same figures as CSV or a chart."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from rapport.cli.common import DatabaseUrl, console, settings_for
from rapport.cli.report import report_app

Locale = Annotated[str, typer.Option("--locale", help="the verdict's language: en or ru")]
Csv = Annotated[Path | None, typer.Option("--csv", help="also write the figures to this CSV")]
ChartFile = Annotated[
    Path | None, typer.Option("--chart", help="also draw the chart to this .svg or .png")
]
Mde = Annotated[
    float | None, typer.Option("--mde", help="relative change the plan is for (default 0.1)")
]
Power = Annotated[float | None, typer.Option("--power", help="power of the plan (0.8)")]
Alpha = Annotated[float | None, typer.Option("--alpha", help="significance level (0.05)")]


def _engine(database_url: str | None) -> Any:
    from rapport.store.engine import create_engine
    from rapport.store.migrate import upgrade

    engine = create_engine(settings_for(database_url).database_url)
    upgrade(engine)
    return engine


def _fail(exc: Exception) -> None:
    for problem in getattr(exc, "problems", None) or [exc]:
        console.print(f"[red]{problem}[/red]", highlight=False)
    raise typer.Exit(1)


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value * 100:+.1f} %" if signed else f"{value * 100:.1f} %"


def _money(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+,.2f}" if signed else f"{value:,.2f}"


def _range(pair: list[float | None], fmt: Any, signed: bool = True) -> str:
    return f"{fmt(pair[0], signed)} … {fmt(pair[1], signed)}"


def _p(value: float | None) -> str:
    return "—" if value is None else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def _points(value: float | None, signed: bool = True) -> str:
    return "—" if value is None else f"{value * 100:+.1f} pp"


def _lift(c: dict[str, Any], rate: bool) -> tuple[str, str]:
    """The relative lift and its interval, or the difference when the ratio is undefined
    (no conversions, no revenue): in percentage points for a rate."""
    if c["relative"] is not None:
        return _pct(c["relative"], True), _range(c["relative_ci"], _pct)
    fmt = _points if rate else _money
    return fmt(c["difference"], True), _range(c["difference_ci"], fmt)


def _groups_table(report: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    table.add_column("group")
    for name in ("recipients", "conv.", "rate", "95 % CI", "rev./recipient", "95 % CI"):
        table.add_column(name, justify="right")
    for g in report["groups"]:
        table.add_row(
            g["name"] + (" (ref.)" if g["name"] == report["reference"] else ""),
            f"{g['recipients']:,}",
            f"{g['conversions']:,}",
            _pct(g["conversion_rate"]),
            _range(g["conversion_ci"], _pct, False),
            _money(g["revenue_per_recipient"]),
            _range(g["revenue_per_recipient_ci"], _money, False),
        )
    return table


def _comparisons_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"Against {report['reference']}")
    for name in ("group", "metric", "lift", "95 % CI", "p", "p (Holm)"):
        table.add_column(name, justify="left" if name in ("group", "metric") else "right")
    for c in report["comparisons"]:
        for metric, key in (("conversion", "conversion"), ("revenue", "revenue_per_recipient")):
            figures = c[key]
            lift, ci = _lift(figures, rate=metric == "conversion")
            mark = " *" if figures["significant"] else ""
            table.add_row(
                c["group"],
                metric,
                lift + mark,
                ci,
                _p(figures["p_value"]),
                _p(figures["p_adjusted"]),
            )
    return table


def _weeks_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"Lift by week since the start (vs {report['reference']})")
    table.add_column("week", justify="right")
    others = [g["name"] for g in report["groups"] if g["name"] != report["reference"]]
    for name in others:
        table.add_column(f"{name} conv.", justify="right")
        table.add_column(f"{name} revenue", justify="right")
    for w in report["weeks"]:
        cells = []
        for name in others:
            c = w["comparisons"].get(name)
            if c is None:
                cells += ["", ""]
                continue
            cells += [
                _lift(c["conversion"], rate=True)[0],
                _lift(c["revenue_per_recipient"], rate=False)[0],
            ]
        table.add_row(f"{w['week']}{'' if w['complete'] else ' (so far)'}", *cells)
    return table


def _verdict(verdict: dict[str, Any]) -> None:
    console.print(f"[bold]{verdict['status']}[/bold]: {verdict['text']}", highlight=False)
    for warning in verdict["warnings"]:
        console.print(f"[yellow]! {warning}[/yellow]", highlight=False)


def _outputs(report: dict[str, Any], csv_text: str, csv: Path | None, chart: Path | None) -> None:
    if csv is not None:
        csv.write_text(csv_text, encoding="utf-8")
        console.print(f"CSV written to {csv}", highlight=False)
    if chart is not None:
        from rapport.analytics.experiments.chart import experiment_chart

        png = chart.suffix.lower() == ".png"
        chart.write_bytes(experiment_chart(report, "png" if png else "svg"))
        console.print(f"Chart written to {chart}", highlight=False)


@report_app.command("experiment")
def experiment(
    campaign: Annotated[str | None, typer.Option(help="the campaign's id or name")] = None,
    scenario: Annotated[str | None, typer.Option(help="the scenario's id or name")] = None,
    step: Annotated[str | None, typer.Option(help="the scenario's split step")] = None,
    window_days: Annotated[
        int | None, typer.Option("--window-days", help="conversion window (5, or the goal's)")
    ] = None,
    metric: Annotated[
        str | None, typer.Option(help="the verdict's metric: conversion or revenue")
    ] = None,
    mde: Mde = None,
    power: Power = None,
    alpha: Alpha = None,
    weeks: Annotated[int | None, typer.Option(help="weeks since the start to show")] = None,
    locale: Locale = "en",
    csv: Csv = None,
    chart: ChartFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """A campaign's variants or a scenario split against the control, with the verdict."""
    from rapport.analytics.experiments.export import split_csv
    from rapport.analytics.experiments.options import parse_options
    from rapport.analytics.experiments.splits import campaign_experiment, scenario_experiment
    from rapport.clock import SystemClock
    from rapport.messaging.campaigns import find_campaign
    from rapport.scenarios.store import find_scenario

    if (campaign is None) == (scenario is None) or (scenario is not None and step is None):
        _fail(ValueError("give --campaign ID, or --scenario ID with --step NAME"))
    engine = _engine(database_url)
    now = SystemClock().now()
    try:
        options = parse_options(
            {
                "window_days": window_days,
                "metric": metric,
                "mde": mde,
                "power": power,
                "alpha": alpha,
                "weeks": weeks,
                "locale": locale,
            }
        )
        with engine.connect() as conn:
            if campaign is not None:
                found = find_campaign(conn, campaign)
                report = campaign_experiment(conn, found.id, options, now)
                title = f"Campaign {report['name']} (#{report['campaign_id']})"
            else:
                stored = find_scenario(conn, str(scenario))
                report = scenario_experiment(conn, stored.id, str(step), options, now)
                title = f"Scenario {report['name']}, step {step}"
    except (ValueError, LookupError) as exc:
        _fail(exc)
    console.print(_groups_table(report, title))
    console.print(
        f"Conversion: {report['conversion']} within {report['window_days']} days of the "
        "assignment; * significant after the Holm correction.",
        highlight=False,
    )
    console.print(_comparisons_table(report))
    if report["weeks"]:
        console.print(_weeks_table(report))
    _verdict(report["verdict"])
    _outputs(report, split_csv(report), csv, chart)


@report_app.command("global-control")
def global_control(
    start: Annotated[str | None, typer.Option("--from", help="first day, YYYY-MM-DD")] = None,
    end: Annotated[str | None, typer.Option("--to", help="last day, YYYY-MM-DD")] = None,
    period: Annotated[str | None, typer.Option("--period", help="a preset: last_30_days …")] = None,
    metric: Annotated[
        str, typer.Option(help="the verdict's metric: revenue (per customer) or conversion")
    ] = "revenue",
    mde: Mde = None,
    power: Power = None,
    alpha: Alpha = None,
    locale: Locale = "en",
    csv: Csv = None,
    chart: ChartFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Everyone who gets CRM against the global control: the incremental revenue."""
    from rapport.analytics.experiments.export import global_control_csv
    from rapport.analytics.experiments.incrementality import global_control_report
    from rapport.analytics.experiments.options import parse_options
    from rapport.analytics.periods import parse_period
    from rapport.clock import SystemClock

    engine = _engine(database_url)
    now = SystemClock().now()
    try:
        span = parse_period(start, end, period, now.date())
        options = parse_options(
            {"metric": metric, "mde": mde, "power": power, "alpha": alpha, "locale": locale}
        )
        with engine.connect() as conn:
            report = global_control_report(conn, span, options, now)
    except (ValueError, LookupError) as exc:
        _fail(exc)
    setting = report["global_control"]
    title = f"Global control ({setting['percent']} %), {span.first} – {span.last}"
    console.print(_groups_table(report, title))
    if report["comparisons"]:
        console.print(_comparisons_table(report))
    inc = report["incremental"]
    if inc["value"] is not None:
        console.print(
            f"Incremental revenue: {_money(inc['value'], True)} "
            f"(95 % CI {_range(inc['ci'], _money)}; bootstrap "
            f"{_range(inc['bootstrap_ci'], _money)}) over {inc['customers']:,} customers",
            highlight=False,
        )
    _verdict(report["verdict"])
    _outputs(report, global_control_csv(report), csv, chart)


@report_app.command("sample-size")
def sample_size(
    mde: Annotated[
        float, typer.Option(help="minimum detectable effect (absolute unless --relative)")
    ],
    baseline: Annotated[float | None, typer.Option(help="the rate now, 0–1")] = None,
    relative: Annotated[bool, typer.Option("--relative", help="mde is relative")] = False,
    power: Annotated[float, typer.Option(help="chance to detect the effect")] = 0.8,
    alpha: Annotated[float, typer.Option(help="significance level, two-sided")] = 0.05,
    ratio: Annotated[float, typer.Option(help="treatment size / reference size")] = 1.0,
    sd: Annotated[
        float | None, typer.Option(help="a revenue metric: its standard deviation per recipient")
    ] = None,
    mean: Annotated[float | None, typer.Option(help="a revenue metric: its mean now")] = None,
) -> None:
    """Recipients per group a test needs (a rate with --baseline, revenue with --sd)."""
    from rapport.analytics.experiments.sample_size import mean_sample_size, rate_sample_size
    from rapport.errors import InvalidInput, Problem

    try:
        if sd is not None:
            size = mean_sample_size(
                sd, mde, mean=mean, relative=relative, power=power, alpha=alpha, ratio=ratio
            )
        elif baseline is not None:
            size = rate_sample_size(
                baseline, mde, relative=relative, power=power, alpha=alpha, ratio=ratio
            )
        else:
            raise InvalidInput([Problem("baseline", "give --baseline (a rate) or --sd (revenue)")])
    except InvalidInput as exc:
        _fail(exc)
    table = Table(title="Sample size (two-sided z-test)")
    table.add_column("")
    table.add_column("", justify="right")
    level = _pct if size.metric == "rate" else _money
    rows = [
        ("baseline", level(size.baseline)),
        ("target", level(size.target)),
        ("effect size", f"{size.effect_size:.4f}"),
        ("power / alpha", f"{size.power} / {size.alpha}"),
        ("reference group", f"{size.reference:,}"),
        ("each treatment group", f"{size.treatment:,}"),
        ("total (one treatment)", f"{size.total:,}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
