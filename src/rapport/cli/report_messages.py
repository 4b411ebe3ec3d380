"""`rapport report messages|attribution` and `rapport analytics rebuild|attribution`.

The reports print Rich tables (or CSV, or a chart); ``analytics rebuild`` recomputes the
message facts, the daily roll-up and the order attribution from the timeline, with
progress bars — after changing the attribution windows or restoring a backup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress
from rich.table import Table

from rapport.cli.common import DatabaseUrl, app, console, settings_for
from rapport.cli.report import report_app

analytics_app = typer.Typer(
    help="Analytics upkeep: rebuild the message facts and attribution; attribution windows.",
    no_args_is_help=True,
)
app.add_typer(analytics_app, name="analytics")

From = Annotated[str | None, typer.Option("--from", help="first day, YYYY-MM-DD")]
To = Annotated[str | None, typer.Option("--to", help="last day, YYYY-MM-DD")]
PeriodName = Annotated[
    str | None, typer.Option("--period", help="a preset: last_30_days, this_month, all …")
]
Csv = Annotated[Path | None, typer.Option("--csv", help="also write the rows to this CSV file")]


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


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def _money(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


@report_app.command("messages")
def messages(
    start: From = None,
    end: To = None,
    period: PeriodName = None,
    group_by: Annotated[
        str,
        typer.Option(
            "--group-by",
            help="total, day, week, month, channel, campaign, scenario_step or variant",
        ),
    ] = "total",
    channel: Annotated[str | None, typer.Option(help="only this channel")] = None,
    campaign: Annotated[str | None, typer.Option(help="only this campaign id")] = None,
    scenario: Annotated[str | None, typer.Option(help="only this scenario id")] = None,
    step: Annotated[str | None, typer.Option(help="only this scenario step")] = None,
    segment: Annotated[int | None, typer.Option(help="only customers in this segment")] = None,
    csv: Csv = None,
    chart: Annotated[
        Path | None, typer.Option(help="write the trend chart (.svg or .png; time groupings)")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Sent, delivered, open rate, CTR, CTOR, unsubscribes, bounces, conversions, revenue."""
    from rapport.analytics.export import to_csv
    from rapport.analytics.message_charts import trend_chart
    from rapport.analytics.message_metrics import MessageFilter, message_metrics
    from rapport.analytics.periods import parse_period
    from rapport.clock import SystemClock

    engine = _engine(database_url)
    try:
        span = parse_period(start, end, period, SystemClock().now().date())
        flt = MessageFilter(channel, campaign, scenario, step, None, segment)
        with engine.connect() as conn:
            rows = message_metrics(conn, span, flt, group_by)
    except (ValueError, LookupError) as exc:
        _fail(exc)
    docs = [m.as_json() for m in rows]
    table = Table(title=f"Messages {span.first} – {span.last}")
    keys = list(rows[0].key) if rows else []
    for name in keys:
        table.add_column(name)
    for title in (
        "sent",
        "delivered",
        "open rate",
        "CTR",
        "CTOR",
        "unsub.",
        "bounce",
        "orders",
        "revenue",
        "per recipient",
    ):
        table.add_column(title, justify="right")
    for d in docs:
        table.add_row(
            *[str(d[k]) if d[k] is not None else "—" for k in keys],
            f"{d['sent']:,}",
            f"{d['delivered']:,}",
            _pct(d["open_rate"]),
            _pct(d["ctr"]),
            _pct(d["ctor"]),
            _pct(d["unsubscribe_rate"]),
            _pct(d["bounce_rate"]),
            f"{d['conversions']:,}",
            _money(d["revenue"]),
            _money(d["revenue_per_recipient"]),
        )
    console.print(table)
    if csv is not None:
        csv.write_text(to_csv(docs), encoding="utf-8")
        console.print(f"wrote {csv}")
    if chart is not None:
        if group_by not in ("day", "week", "month"):
            _fail(ValueError("--chart needs --group-by day, week or month"))
        fmt = chart.suffix.lstrip(".").lower()
        if fmt not in ("svg", "png"):
            _fail(ValueError("--chart must end in .svg or .png"))
        chart.write_bytes(trend_chart(rows, fmt))  # type: ignore[arg-type]
        console.print(f"wrote {chart}")


@report_app.command("attribution")
def attribution(
    start: From = None,
    end: To = None,
    period: PeriodName = None,
    segment: Annotated[int | None, typer.Option(help="only customers in this segment")] = None,
    csv: Csv = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Revenue of the period's orders and the share credited to messages, per channel."""
    from rapport.analytics.export import to_csv
    from rapport.analytics.message_metrics import crm_revenue_share
    from rapport.analytics.periods import parse_period
    from rapport.clock import SystemClock

    engine = _engine(database_url)
    try:
        span = parse_period(start, end, period, SystemClock().now().date())
        with engine.connect() as conn:
            share = crm_revenue_share(conn, span, segment)
    except (ValueError, LookupError) as exc:
        _fail(exc)
    table = Table(title=f"Revenue from CRM {span.first} – {span.last}")
    for title in ("channel", "orders", "revenue", "share of all revenue"):
        table.add_column(title, justify="right" if title != "channel" else "left")
    for row in share["channels"]:
        table.add_row(
            row["channel"], f"{row['orders']:,}", _money(row["revenue"]), _pct(row["share"])
        )
    table.add_row(
        "[b]CRM[/b]",
        f"{share['crm_orders']:,}",
        _money(share["crm_revenue"]),
        _pct(share["crm_share"]),
    )
    table.add_row("all orders", f"{share['orders']:,}", _money(share["revenue"]), "100 %")
    console.print(table)
    if csv is not None:
        csv.write_text(to_csv(share["channels"]), encoding="utf-8")
        console.print(f"wrote {csv}")


@analytics_app.command("rebuild")
def rebuild(
    facts: Annotated[bool, typer.Option(help="recompute the message facts and roll-up")] = True,
    credit: Annotated[
        bool, typer.Option("--attribution/--no-attribution", help="credit every order again")
    ] = True,
    order_rollups: Annotated[
        bool,
        typer.Option(
            "--orders/--no-orders",
            help="number the counted orders again and recount the order roll-ups",
        ),
    ] = True,
    database_url: DatabaseUrl = None,
) -> None:
    """Recompute the message facts, the daily roll-up, the order attribution and the order
    roll-ups the dashboard's business figures read (after orders were written around the
    pipeline, or a restore)."""
    import sqlalchemy as sa

    from rapport.analytics.attribution import rebuild_attribution
    from rapport.analytics.message_facts import count_status_events, rebuild_facts
    from rapport.analytics.order_days import rebuild as rebuild_order_rollups
    from rapport.store.engine import writing
    from rapport.store.tables import orders

    engine = _engine(database_url)
    with writing(engine) as conn, Progress(console=console) as progress:
        if order_rollups:
            n = rebuild_order_rollups(conn)
            progress.console.print(f"{n:,} counted orders numbered in their customers' histories")
        if facts:
            task = progress.add_task("message facts", total=count_status_events(conn))
            n = rebuild_facts(conn, progress=lambda k: progress.advance(task, k))
            progress.console.print(f"{n:,} status events folded")
        if credit:
            total = conn.execute(
                sa.select(sa.func.count()).where(orders.c.status == "completed")
            ).scalar_one()
            task = progress.add_task("attribution", total=total)
            n = rebuild_attribution(conn, progress=lambda k: progress.advance(task, k))
            progress.console.print(f"{n:,} orders credited to a message")


@analytics_app.command("attribution")
def attribution_windows(
    click_days: Annotated[float | None, typer.Option(help="days a click is credited")] = None,
    open_days: Annotated[float | None, typer.Option(help="days an open is credited")] = None,
    channel: Annotated[
        str | None, typer.Option(help="set the windows of this channel only")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Show the attribution windows, or change them (then `rapport analytics rebuild`)."""
    from rapport.analytics.attribution import load_attribution, parse_attribution, save_attribution
    from rapport.clock import SystemClock
    from rapport.store.engine import writing

    engine = _engine(database_url)
    with writing(engine) as conn:
        current = load_attribution(conn)
        if click_days is not None or open_days is not None:
            doc = current.model_dump(mode="json")
            target = doc if channel is None else doc["channels"].setdefault(channel, {})
            if channel is not None:
                target.setdefault("click_days", current.click_days)
                target.setdefault("open_days", current.open_days)
            if click_days is not None:
                target["click_days"] = click_days
            if open_days is not None:
                target["open_days"] = open_days
            try:
                current = parse_attribution(doc)
                save_attribution(conn, current, SystemClock().now())
            except ValueError as exc:
                _fail(exc)
    console.print_json(data=current.model_dump(mode="json"))
