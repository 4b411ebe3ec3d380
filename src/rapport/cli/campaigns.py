"""`rapport campaigns`: define a campaign from a YAML file, send it, read its report.

``send`` freezes the audience and writes every message to the outbox, with a progress bar;
the dispatcher (``rapport serve`` or ``rapport worker``) delivers them. ``--deliver`` also
runs a dispatcher in this process, through the channels configured in the store, until
the campaign's messages are final.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from rapport.cli.common import DatabaseUrl, app, console, settings_for
from rapport.store.engine import create_engine

campaigns_app = typer.Typer(
    help="Campaigns: one-off and scheduled broadcasts to a segment or list (docs/campaigns.md).",
    no_args_is_help=True,
)
app.add_typer(campaigns_app, name="campaigns")

CampaignKey = Annotated[str, typer.Argument(help="the campaign's id or name")]


def _fail(exc: Exception) -> None:
    for problem in getattr(exc, "problems", None) or [exc]:
        console.print(f"[red]{problem}[/red]", highlight=False)
    raise typer.Exit(1)


def _engine(database_url: str | None) -> Any:
    from rapport.store.migrate import upgrade

    engine = create_engine(settings_for(database_url).database_url)
    upgrade(engine)
    return engine


@campaigns_app.command("list")
def campaigns_list(database_url: DatabaseUrl = None) -> None:
    """Every campaign, newest first."""
    from rapport.messaging.campaigns import list_campaigns

    with _engine(database_url).connect() as conn:
        found = list_campaigns(conn)
    table = Table("id", "name", "status", "channel", "segment", "variants", "send at", "started")
    for c in found:
        table.add_row(
            str(c.id),
            c.name,
            c.status,
            c.channel,
            str(c.segment_id),
            ", ".join(str(v["name"]) for v in c.variants),
            str(c.send_at or "")[:16],
            str(c.started_at or "")[:16],
        )
    console.print(table)


def _resolve_names(conn: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """Let a file name the segment and templates (``segment: VIP``, ``template: spring``)."""
    from rapport.errors import InvalidInput, Problem
    from rapport.messaging.templates.store import all_templates
    from rapport.segments.definitions import SegmentNotFound, find_segment

    problems: list[Problem] = []
    doc = dict(doc)
    if "segment" in doc and "segment_id" not in doc:
        try:
            doc["segment_id"] = find_segment(conn, str(doc.pop("segment"))).id
        except SegmentNotFound as exc:
            problems.append(Problem("segment", str(exc)))
    by_name = {t.name: t.id for t in all_templates(conn)}
    for field in ("variants", "fallback"):
        items = doc.get(field)
        if not isinstance(items, list):
            continue
        doc[field] = resolved = []
        for i, item in enumerate(items):
            item = dict(item) if isinstance(item, dict) else item
            if isinstance(item, dict) and "template" in item and "template_id" not in item:
                name = str(item.pop("template"))
                if name in by_name:
                    item["template_id"] = by_name[name]
                else:
                    problems.append(
                        Problem(f"{field}[{i}].template", f"no template named {name!r}")
                    )
            resolved.append(item)
    if problems:
        raise InvalidInput(problems)
    return doc


@campaigns_app.command("create")
def campaigns_create(
    file: Annotated[
        Path,
        typer.Option("--file", help="the campaign as YAML or JSON (fields as in the API)"),
    ],
    database_url: DatabaseUrl = None,
) -> None:
    """Define a draft campaign from a file; the new id is the last line of the output.

    \b
    name: Spring sale
    channel: email
    segment: VIP            # or segment_id: 12
    variants:
      - {name: A, template: spring-a, weight: 50}
      - {name: B, template_id: 8, weight: 50}
    control_percent: 10
    local_hour: 10          # each customer's own 10:00
    """
    import yaml

    from rapport.clock import SystemClock
    from rapport.errors import InvalidInput
    from rapport.messaging.campaigns import CampaignConflict, create_campaign
    from rapport.store.engine import writing

    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        _fail(exc)
    if not isinstance(doc, dict):
        console.print("[red]the file must hold one mapping of campaign fields[/red]")
        raise typer.Exit(1)
    engine = _engine(database_url)
    try:
        with writing(engine) as conn:
            campaign = create_campaign(conn, _resolve_names(conn, doc), SystemClock().now())
    except (InvalidInput, CampaignConflict) as exc:
        _fail(exc)
    console.print(f"Created draft campaign #{campaign.id} ({campaign.name})", highlight=False)
    print(campaign.id)


def _find(conn: Any, key: str) -> Any:
    from rapport.messaging.campaigns import CampaignNotFound, find_campaign

    try:
        return find_campaign(conn, key)
    except CampaignNotFound as exc:
        _fail(exc)


@campaigns_app.command("show")
def campaigns_show(campaign: CampaignKey, database_url: DatabaseUrl = None) -> None:
    """A campaign's definition and status."""
    with _engine(database_url).connect() as conn:
        found = _find(conn, campaign)
    table = Table("field", "value", show_header=False)
    for key, value in found.as_dict().items():
        table.add_row(key, "" if value is None else str(value))
    console.print(table)


@campaigns_app.command("send")
def campaigns_send(
    campaign: CampaignKey,
    deliver: Annotated[
        bool,
        typer.Option(
            "--deliver",
            help="also deliver here, through the configured channels, until every message "
            "is final (otherwise `rapport serve` or `rapport worker` delivers)",
        ),
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Start a campaign and queue its messages, or schedule it if send_at is ahead.

    Running it again resumes a send that was interrupted; nobody gets a message twice.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from rapport.clock import SystemClock
    from rapport.errors import InvalidInput
    from rapport.messaging.campaign_send import send_campaign
    from rapport.messaging.campaign_start import start_campaign
    from rapport.messaging.campaigns import CampaignConflict
    from rapport.messaging.compose import Tracking
    from rapport.pipeline import Pipeline
    from rapport.store.engine import writing
    from rapport.worker import campaign_recorder, settings_links

    engine = _engine(database_url)
    clock = SystemClock()
    pipeline = Pipeline(engine, clock)
    with engine.connect() as conn:
        found = _find(conn, campaign)
    if found.status in ("draft", "scheduled"):
        try:
            with writing(engine) as conn:
                found = start_campaign(conn, found.id, clock.now())
        except (InvalidInput, CampaignConflict) as exc:
            _fail(exc)
    if found.status == "scheduled":
        console.print(
            f"Campaign #{found.id} is scheduled for {found.send_at:%Y-%m-%d %H:%M} UTC; "
            "`rapport serve` or `rapport worker` starts it then.",
            highlight=False,
        )
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task("Queueing", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = send_campaign(
            engine,
            found.id,
            clock=clock,
            record=campaign_recorder(pipeline),
            tracking=Tracking(settings_links(pipeline)),
            progress=progress,
        )
    if report.busy:
        console.print(f"Campaign #{found.id} is being sent by another process.")
    else:
        console.print(
            f"Campaign #{found.id} is {report.status}: {report.queued:,} queued, "
            f"{report.skipped:,} skipped in this run ({report.done:,} of {report.total:,}).",
            highlight=False,
        )
    if deliver:
        _deliver(pipeline, found.id, found.channel)


def _deliver(pipeline: Any, campaign_id: int, channel: str) -> None:
    """Run a dispatcher here until the campaign's messages are final (Ctrl-C stops)."""
    import sqlalchemy as sa
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from rapport.messaging.outbox import FINAL
    from rapport.store.tables import outbox
    from rapport.worker import ConfiguredDispatcher

    dispatcher = ConfiguredDispatcher(pipeline)
    if channel not in dispatcher.current().routes:
        dispatcher.close()
        console.print(
            f"[yellow]The {channel} channel is not configured (/api/channels): the messages "
            "wait in the outbox.[/yellow]"
        )
        raise typer.Exit(1)
    mine = outbox.c.campaign_id == str(campaign_id)

    def counts() -> tuple[int, int]:
        with pipeline.engine.connect() as conn:
            done = sa.func.sum(sa.case((outbox.c.status.in_(FINAL), 1), else_=0))
            total, final = conn.execute(sa.select(sa.func.count(), done).where(mine)).one()
        return int(final or 0), int(total)

    try:
        with Progress(
            TextColumn("Delivering"), BarColumn(), MofNCompleteColumn(), console=console
        ) as bar:
            task = bar.add_task("deliver", total=None)
            while True:
                final, total = counts()
                bar.update(task, completed=final, total=total)
                if final >= total:
                    break
                if not dispatcher.run_once().claimed:
                    time.sleep(1.0)  # the rest is due later (local hour, quiet hours, throttle)
    except KeyboardInterrupt:
        console.print("Stopped; the worker delivers the rest.")
    finally:
        dispatcher.close()


@campaigns_app.command("cancel")
def campaigns_cancel(campaign: CampaignKey, database_url: DatabaseUrl = None) -> None:
    """Stop a campaign: nothing more is queued, and messages still waiting are skipped."""
    from rapport.clock import SystemClock
    from rapport.messaging.campaign_start import cancel_campaign
    from rapport.messaging.campaigns import CampaignConflict
    from rapport.pipeline import Pipeline
    from rapport.store.engine import writing
    from rapport.worker import campaign_recorder

    engine = _engine(database_url)
    with engine.connect() as conn:
        found = _find(conn, campaign)
    try:
        with writing(engine) as conn:
            _, events = cancel_campaign(conn, found.id, SystemClock().now())
            campaign_recorder(Pipeline(engine))(conn, events)
    except CampaignConflict as exc:
        _fail(exc)
    console.print(f"Cancelled campaign #{found.id}; {len(events):,} waiting messages skipped.")


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


@campaigns_app.command("report")
def campaigns_report(campaign: CampaignKey, database_url: DatabaseUrl = None) -> None:
    """Audience, control group, queued and skipped (by reason), sent, opens and clicks."""
    from rapport.messaging.campaign_report import campaign_report

    with _engine(database_url).connect() as conn:
        data = campaign_report(conn, _find(conn, campaign))
    console.print(
        f"#{data['campaign_id']} {data['name']} ({data['status']}): audience "
        f"{data['audience']:,}, control {data['control']:,}",
        highlight=False,
    )
    table = Table(
        "variant",
        "audience",
        "queued",
        "skipped",
        "sent",
        "bounced",
        "failed",
        "opened",
        "clicked",
        "open rate",
        "CTR",
        "CTOR",
    )
    for name, part in [*data["variants"].items(), ("total", data["total"])]:
        m = part["messages"]
        table.add_row(
            name,
            f"{part['audience']:,}",
            f"{part['queued']:,}",
            f"{part['skipped']:,}",
            f"{m['sent']:,}",
            f"{m['bounced']:,}",
            f"{m['failed']:,}",
            f"{part['opened']:,}",
            f"{part['clicked']:,}",
            _pct(part["open_rate"]),
            _pct(part["click_rate"]),
            _pct(part["click_to_open_rate"]),
        )
    console.print(table)
    reasons = data["total"]["skipped_by_reason"]
    if reasons:
        skipped = Table("skipped because", "customers")
        for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
            skipped.add_row(reason, f"{n:,}")
        console.print(skipped)
