"""`rapport report business|ltv|cohorts|funnel|rfm`: the business reports in the terminal.

Each prints Rich tables (the cohort triangle coloured like a heatmap), and can also write
the report's CSV (``--csv``) and its chart (``--chart FILE.svg|.png``). The figures and
their definitions are the API's (analytics/business_reports.py, docs/metrics.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from rapport.cli.common import DatabaseUrl, console, settings_for
from rapport.cli.report import report_app

From = Annotated[str | None, typer.Option("--from", help="first day, YYYY-MM-DD")]
To = Annotated[str | None, typer.Option("--to", help="last day, YYYY-MM-DD")]
PeriodName = Annotated[
    str | None, typer.Option("--period", help="a preset: last_30_days, this_month, all …")
]
SegmentRef = Annotated[
    str | None,
    typer.Option("--segment", help="only the current members of this segment (id or name)"),
]
Margin = Annotated[
    float, typer.Option("--margin", help="gross margin share for the CAC ceiling (0–1]")
]
Csv = Annotated[Path | None, typer.Option("--csv", help="also write the report as CSV")]
Chart = Annotated[Path | None, typer.Option("--chart", help="also write the chart (.svg or .png)")]


def _fail(exc: Exception) -> None:
    for problem in getattr(exc, "problems", None) or [exc]:
        console.print(f"[red]{problem}[/red]", highlight=False)
    raise typer.Exit(1)


def _run(
    name: str,
    start: str | None,
    end: str | None,
    period: str | None,
    segment: str | None,
    margin: float,
    csv: Path | None,
    chart: Path | None,
    database_url: str | None,
) -> Any:
    """Check the outputs, compute the report, write CSV and chart; the caller prints it."""
    from rapport.analytics.business_reports import csv_text, run_report
    from rapport.analytics.scope import DEFAULT_MARGIN
    from rapport.clock import SystemClock
    from rapport.errors import InvalidInput, Problem
    from rapport.segments.definitions import SegmentNotFound
    from rapport.store.engine import create_engine
    from rapport.store.migrate import upgrade

    fmt = None
    if chart is not None:
        fmt = chart.suffix.lstrip(".").lower()
        if fmt not in ("svg", "png"):
            _fail(InvalidInput([Problem("--chart", "must end in .svg or .png")]))
    engine = create_engine(settings_for(database_url).database_url)
    upgrade(engine)
    try:
        with engine.connect() as conn:
            report = run_report(
                conn,
                name,
                SystemClock().now(),
                start=start,
                end=end,
                period=period,
                segment=segment,
                margin=DEFAULT_MARGIN if margin is None else margin,
            )
    except (InvalidInput, SegmentNotFound) as exc:
        _fail(exc)
    if csv is not None:
        csv.write_text(csv_text(report), encoding="utf-8")
    if chart is not None:
        from rapport.analytics.business_charts import CHARTS

        chart.write_bytes(CHARTS[name](report, fmt))  # type: ignore[arg-type]
    return report


def _written(*paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            console.print(f"wrote {path}", highlight=False)


def _title(text: str, report: Any) -> str:
    s = report.scope
    segment = f" · segment {s.segment_name}" if s.segment_name else ""
    return f"{text} {s.period.first} – {s.period.last}{segment}"


def _num(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _estimate_row(table: Table, name: str, est: Any, *, percent: bool = False) -> None:
    table.add_row(name, est.text(percent=percent), est.reason or "")


@report_app.command("business")
def business(
    start: From = None,
    end: To = None,
    period: PeriodName = None,
    segment: SegmentRef = None,
    margin: Margin = 0.3,
    csv: Csv = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Revenue, orders, buyers, average check, ARPU, repeat orders, time to repeat, churn,
    LTV and the CAC ceiling (docs/metrics.md)."""
    r = _run("business", start, end, period, segment, margin, csv, None, database_url)
    f = r.facts
    table = Table("metric", "value", "note", title=_title("Business", r))
    table.add_row("revenue", _num(round(f.revenue, 2)), "completed orders, net of refunds")
    table.add_row("orders", _num(f.orders), "")
    table.add_row("buyers", _num(f.buyers), f"{f.first_orders:,} of them first-time")
    _estimate_row(table, "average check", r.average_check)
    table.add_row(
        "active customers", _num(f.active), f"not lapsed ({r.scope.lifecycle.lapsed_days} days)"
    )
    _estimate_row(table, "ARPU", r.arpu)
    _estimate_row(table, "revenue per buyer", r.revenue_per_buyer)
    _estimate_row(table, "repeat order share", r.repeat_share, percent=True)
    _estimate_row(table, "time to repeat, median days", r.repeat.median)
    _estimate_row(table, "churn rate", r.churn, percent=True)
    ltv = r.ltv
    _estimate_row(table, "lifetime, days", ltv.lifetime_days)
    _estimate_row(table, "LTV", ltv.ltv)
    _estimate_row(table, f"CAC ceiling (margin {r.margin:g})", ltv.cac_ceiling)
    console.print(table)
    from rapport.analytics.business import bucket_labels

    n = r.repeat.gaps.customers
    gaps = Table("days to the second order", "customers", "share", title="Time to repeat purchase")
    for (_, _, label), count in zip(bucket_labels(), r.repeat.gaps.buckets, strict=True):
        gaps.add_row(label, _num(count), _pct(count / n if n else None))
    console.print(gaps)
    _written(csv)


@report_app.command("ltv")
def ltv(
    start: From = None,
    end: To = None,
    period: PeriodName = None,
    segment: SegmentRef = None,
    margin: Margin = 0.3,
    csv: Csv = None,
    chart: Chart = None,
    database_url: DatabaseUrl = None,
) -> None:
    """LTV = purchase frequency × average check × lifetime, overall, by acquisition month
    and by segment, with the CAC ceiling."""
    r = _run("ltv", start, end, period, segment, margin, csv, chart, database_url)
    table = Table(
        "group",
        "active",
        "freq.",
        "avg check",
        "churn",
        "lifetime, days",
        "LTV",
        f"CAC ceiling ({r.margin:g})",
        "note",
        title=_title("LTV", r),
    )

    def row(name: str, x: Any) -> None:
        table.add_row(
            name,
            _num(x.active),
            x.frequency.text(3),
            x.average_check.text(),
            x.churn.text(percent=True),
            x.lifetime_days.text(0),
            x.ltv.text(),
            x.cac_ceiling.text(),
            x.ltv.reason or "",
        )

    row("all", r.overall)
    for c in r.cohorts:
        row(f"cohort {c.month}", c.ltv)
    for s in r.segments:
        row(f"segment {s.name}", s.ltv)
    console.print(table)
    _written(csv, chart)


def _heat(share: float | None) -> Text:
    """A cell coloured from white to the brand blue by its share (heatmap in a terminal)."""
    if share is None:
        return Text("")
    level = max(0.0, min(1.0, share * 2))  # retention rarely passes 50 %: use the range
    shade = (
        int(255 - (255 - 59) * level),
        int(255 - (255 - 91) * level),
        int(255 - (255 - 219) * level),
    )
    colour = "#{:02x}{:02x}{:02x}".format(*shade)
    ink = "white" if level > 0.55 else "black"
    return Text(f"{share * 100:.0f}%", style=f"{ink} on {colour}")


@report_app.command("cohorts")
def cohorts(
    start: From = None,
    end: To = None,
    period: PeriodName = None,
    segment: SegmentRef = None,
    csv: Csv = None,
    chart: Chart = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Retention by month of first order: the share of each cohort who bought in month +k."""
    r = _run("cohorts", start, end, period, segment, 0.3, csv, chart, database_url)
    width = max((c.observed for c in r.cohorts), default=0)
    table = Table("cohort", "customers", title=_title("Retention by month of first order", r))
    for k in range(1, width + 1):
        table.add_column(f"+{k}", justify="right")
    for c in r.cohorts:
        table.add_row(c.month, _num(c.customers), *[_heat(c.share(k)) for k in range(1, width + 1)])
    console.print(table)
    revenue = Table("cohort", *[f"+{k}" for k in range(width + 1)], title="Revenue per customer")
    for c in r.cohorts:
        revenue.add_row(c.month, *[_num(c.revenue_per_customer(k)) for k in range(width + 1)])
    console.print(revenue)
    _written(csv, chart)


@report_app.command("funnel")
def funnel(
    start: From = None,
    end: To = None,
    period: PeriodName = None,
    segment: SegmentRef = None,
    csv: Csv = None,
    chart: Chart = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Acquisition → activation → repeat → retention → reactivation, with conversions."""
    r = _run("funnel", start, end, period, segment, 0.3, csv, chart, database_url)
    table = Table(
        "stage",
        "lifecycle stage",
        "customers",
        "eligible",
        "conversion",
        "of previous",
        title=_title("Funnel", r),
    )
    from rapport.analytics.funnel import LIFECYCLE

    for s in r.stages:
        table.add_row(
            s.name,
            LIFECYCLE[s.name],
            _num(s.customers),
            "" if s.eligible is None else _num(s.eligible),
            "" if s.conversion is None else s.conversion.text(percent=True),
            "" if s.of_previous is None else s.of_previous.text(percent=True),
        )
    console.print(table)
    _written(csv, chart)


@report_app.command("rfm")
def rfm(
    start: From = None,
    end: To = None,
    period: PeriodName = None,
    segment: SegmentRef = None,
    csv: Csv = None,
    chart: Chart = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Customers and revenue per RFM score (R × F) and per named cell."""
    from rapport.analytics.rfm_grid import SCORES
    from rapport.segments.rfm import CELLS

    r = _run("rfm", start, end, period, segment, 0.3, csv, chart, database_url)
    grid = Table(
        "R \\ F", *[str(f) for f in SCORES], title=_title("RFM grid: customers / revenue", r)
    )
    for rec in reversed(SCORES):
        grid.add_row(
            str(rec),
            *[f"{r.grid[(rec, f)].customers:,} / {r.grid[(rec, f)].revenue:,.0f}" for f in SCORES],
        )
    console.print(grid)
    doc = r.as_json()
    cells = Table("cell", "customers", "share", "revenue", "share of revenue", title="RFM cells")
    for c in doc["cells"]:
        cells.add_row(
            CELLS[c["cell"]],
            _num(c["customers"]),
            _pct(c["customer_share"]),
            _num(c["revenue"]),
            _pct(c["revenue_share"]),
        )
    cells.add_row("(no cell)", _num(r.unscored), "", "", "")
    console.print(cells)
    _written(csv, chart)
