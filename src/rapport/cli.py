"""The `rapport` command: set up the store, serve, manage keys, import data, run the demo."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rapport.clock import SystemClock
from rapport.settings import Settings
from rapport.store.engine import create_engine

app = typer.Typer(
    help="Rapport: an open-source CRM-marketing engine.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="The store: create or upgrade its schema.", no_args_is_help=True)
keys_app = typer.Typer(
    help="API keys: write keys for ingest, secret keys for the management API.",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
console = Console()

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL; default $RAPPORT_DATABASE_URL or sqlite:///rapport.db",
    ),
]


def settings_for(database_url: str | None) -> Settings:
    settings = Settings()
    if database_url:
        settings.database_url = database_url
    return settings


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None) -> None:
    """Create the tables, or migrate them to the newest schema."""
    from rapport.store.migrate import current_revision, upgrade

    settings = settings_for(database_url)
    engine = create_engine(settings.database_url)
    upgrade(engine)
    console.print(f"Store at revision [bold]{current_revision(engine)}[/bold]")


@keys_app.command("create")
def keys_create(
    kind: Annotated[str, typer.Option("--kind", help="write (ingest) or secret (management API)")],
    name: Annotated[str, typer.Option("--name", help="what the key is for")] = "default",
    database_url: DatabaseUrl = None,
) -> None:
    """Create a key. The key itself is printed once, as the last line: store it now."""
    from rapport.access.keys import KINDS, create_key

    if kind not in KINDS:
        raise typer.BadParameter(f"must be one of {', '.join(KINDS)}", param_hint="--kind")
    engine = create_engine(settings_for(database_url).database_url)
    created = create_key(engine, kind, name, SystemClock().now())
    console.print(
        f"Created {kind} key #{created.id} ({name}). It is shown only now:", highlight=False
    )
    print(created.key)


@keys_app.command("list")
def keys_list(database_url: DatabaseUrl = None) -> None:
    """List keys (their prefixes only: the keys themselves are not stored)."""
    from rapport.access.keys import list_keys

    table = Table("id", "kind", "name", "prefix", "created", "revoked")
    for key in list_keys(create_engine(settings_for(database_url).database_url)):
        table.add_row(
            str(key["id"]),
            str(key["kind"]),
            str(key["name"]),
            f"{key['prefix']}…",
            str(key["created_at"])[:19],
            str(key["revoked_at"] or "")[:19],
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: int, database_url: DatabaseUrl = None) -> None:
    """Revoke a key by id; requests with it fail within seconds."""
    from rapport.access.keys import revoke_key

    if not revoke_key(
        create_engine(settings_for(database_url).database_url), key_id, SystemClock().now()
    ):
        console.print(f"[red]No active key #{key_id}[/red]")
        raise typer.Exit(1)
    console.print(f"Revoked key #{key_id}")


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="address to listen on (default 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8000)")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Run the API (OpenAPI at /docs). The store is upgraded first."""
    import uvicorn

    from rapport.api.app import create_app
    from rapport.store.migrate import upgrade

    settings = settings_for(database_url)
    if host:
        settings.host = host
    if port:
        settings.port = port
    engine = create_engine(settings.database_url)
    upgrade(engine)
    console.print(f"Rapport on http://{settings.host}:{settings.port}  (API docs at /docs)")
    uvicorn.run(
        create_app(settings, engine=engine),
        host=settings.host,
        port=settings.port,
        log_level="warning",
    )


@app.command("import")
def import_command(
    kind: Annotated[str, typer.Argument(help="customers, orders, products or events")],
    file: Annotated[Path, typer.Argument(help="a .csv or .jsonl file", show_default=False)],
    file_format: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: from the extension)")
    ] = None,
    database_url: DatabaseUrl = None,
    skip_invalid: Annotated[
        bool,
        typer.Option("--skip-invalid", help="store the good rows even if some are rejected"),
    ] = False,
    rejects: Annotated[
        Path | None,
        typer.Option("--rejects", help="where rejected rows go (default FILE.rejects.csv)"),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="rows handed to the pipeline at once")
    ] = 1000,
) -> None:
    """Import a CSV or JSONL file, whole or not at all (see docs/import.md)."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from rapport.ingest.importers import KINDS, ImportFileError, import_file
    from rapport.pipeline import Pipeline
    from rapport.store.migrate import upgrade

    if kind not in KINDS:
        raise typer.BadParameter(f"must be one of {', '.join(KINDS)}", param_hint="KIND")
    settings = settings_for(database_url)
    engine = create_engine(settings.database_url)
    upgrade(engine)
    labels = {"check": "Checking", "store": "Importing"}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(labels[phase], total=total)
            bar.update(tasks[phase], completed=done)

        try:
            report = import_file(
                engine,
                Pipeline(engine),
                kind,
                file,
                fmt=file_format,
                skip_invalid=skip_invalid,
                rejects_path=rejects,
                batch_size=batch_size,
                phone_region=settings.default_phone_region,
                progress=progress,
            )
        except ImportFileError as exc:
            console.print(f"[red]Cannot import {file}:[/red] {exc}", highlight=False)
            raise typer.Exit(2) from None

    if report.problems:
        problems = Table("line", "field", "reason", title="Rejected rows")
        for p in report.problems:
            problems.add_row(str(p.line), p.field, p.reason)
        console.print(problems)
        if report.problems_total > len(report.problems):
            console.print(f"… and {report.problems_total - len(report.problems)} more problems")
    summary = Table("rows read", "stored", "duplicates skipped", "rejected", "rows/s")
    summary.add_row(
        str(report.rows_read),
        str(report.rows_stored),
        str(report.rows_duplicate),
        str(report.rows_rejected),
        f"{report.rows_per_second:,.0f}",
    )
    console.print(summary)
    if report.rejects_path is not None:
        console.print(f"Rejected rows written to {report.rejects_path}", highlight=False)
    if not report.committed:
        console.print(
            f"[red]Nothing was imported:[/red] {report.rows_rejected} row(s) are invalid. "
            "Fix them, or use --skip-invalid to import the rest."
        )
        raise typer.Exit(1)
    console.print(f"Imported {file} ({kind}) in {report.seconds:.1f} s", highlight=False)


demo_app = typer.Typer(
    help="The demo: a synthetic clothing and footwear shop sent through the real ingest path.",
    no_args_is_help=True,
)
app.add_typer(demo_app, name="demo")

DemoCustomers = Annotated[int, typer.Option("--customers", min=1, help="customers to generate")]
DemoMonths = Annotated[int, typer.Option("--months", min=1, help="months of history")]
DemoSeed = Annotated[int, typer.Option("--seed", help="random seed: same seed, same shop")]


@demo_app.command("generate")
def demo_generate(
    customers: DemoCustomers = 3000,
    months: DemoMonths = 6,
    seed: DemoSeed = 42,
    database_url: DatabaseUrl = None,
) -> None:
    """Generate the shop's history into a store (upgraded first) and print a summary."""
    from rapport.demo.generator import DemoConfig
    from rapport.demo.runner import generate_with_progress, prepare, print_summary

    engine = prepare(settings_for(database_url).database_url)
    config = DemoConfig(customers=customers, months=months, seed=seed)
    result = generate_with_progress(engine, config, console)
    print_summary(engine, result, console)


@demo_app.command("run")
def demo_run(
    customers: DemoCustomers = 3000,
    months: DemoMonths = 6,
    seed: DemoSeed = 42,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="a store to use instead of a fresh ./rapport-demo.db"),
    ] = None,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="stop after the summary")] = False,
) -> None:
    """A fresh demo store, the shop's history, API keys, a summary, then `rapport serve`."""
    from pathlib import Path

    from rapport.demo.generator import DemoConfig
    from rapport.demo.runner import (
        DEMO_DATABASE,
        create_demo_keys,
        fresh_sqlite_url,
        generate_with_progress,
        prepare,
        print_summary,
    )

    url = database_url or fresh_sqlite_url(Path(DEMO_DATABASE))
    engine = prepare(url)
    config = DemoConfig(customers=customers, months=months, seed=seed)
    result = generate_with_progress(engine, config, console)
    keys = create_demo_keys(engine)
    print_summary(engine, result, console)
    console.print(f"Store: {engine.url.render_as_string(hide_password=True)}", highlight=False)
    console.print(f"Write key (ingest, HTTP Basic username): {keys.write}", soft_wrap=True)
    console.print(f"Secret key (management API, Bearer):     {keys.secret}", soft_wrap=True)
    if not no_serve:
        serve(host=None, port=None, database_url=url)


segments_app = typer.Typer(
    help="Segments: list, count, export; sweeps; RFM scores and lifecycle stages.",
    no_args_is_help=True,
)
app.add_typer(segments_app, name="segments")
lists_app = typer.Typer(help="Static lists: members named by a file.", no_args_is_help=True)
app.add_typer(lists_app, name="lists")


@segments_app.command("rfm")
def segments_rfm(
    period_days: Annotated[
        int | None,
        typer.Option("--period-days", min=1, help="override the stored period for this run"),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Recompute RFM scores and cells now; print customers per cell (docs/rfm-lifecycle.md)."""
    from rapport.segments.rfm import CELLS, recompute_rfm
    from rapport.store.migrate import upgrade

    engine = create_engine(settings_for(database_url).database_url)
    upgrade(engine)
    summary = recompute_rfm(engine, SystemClock().now(), period_days=period_days)
    table = Table("cell", "customers", title=f"RFM over the last {summary.period_days} days")
    for slug, n in summary.cells.items():
        table.add_row(CELLS[slug], f"{n:,}")
    table.add_row("(no order in the period)", f"{summary.without_orders:,}")
    console.print(table)
    console.print(
        f"Scored {summary.scored:,} buyers ({summary.changed:,} changed, "
        f"{summary.cleared:,} cleared) in {summary.seconds:.2f} s",
        highlight=False,
    )


@segments_app.command("lifecycle")
def segments_lifecycle(database_url: DatabaseUrl = None) -> None:
    """Recompute lifecycle stages now; print customers per stage (docs/rfm-lifecycle.md)."""
    from rapport.pipeline import Pipeline
    from rapport.segments.lifecycle import recompute_lifecycle
    from rapport.store.migrate import upgrade

    engine = create_engine(settings_for(database_url).database_url)
    upgrade(engine)
    summary = recompute_lifecycle(engine, Pipeline(engine), SystemClock().now())
    t = summary.thresholds
    table = Table("stage", "customers", title="Lifecycle stages")
    for stage, n in summary.stages.items():
        table.add_row(stage.replace("_", " "), f"{n:,}")
    console.print(table)
    median = f"{t.median_gap_days:g} d over {t.repeat_gaps:,} gaps" if t.median_gap_days else "n/a"
    console.print(
        f"Active ≤ {t.active_days} d, lapsed > {t.lapsed_days} d, active from "
        f"{t.active_min_orders} orders (from {t.source}; median gap {median})",
        highlight=False,
    )
    console.print(
        f"{summary.changed:,} of {summary.visited:,} customers changed stage "
        f"({summary.announced:,} events) in {summary.seconds:.2f} s",
        highlight=False,
    )


@segments_app.command("list")
def segments_list(database_url: DatabaseUrl = None) -> None:
    """Every segment and list with its current size."""
    from rapport.segments.definitions import all_segments, sizes

    engine = create_engine(settings_for(database_url).database_url)
    with engine.connect() as conn:
        found, counts = all_segments(conn), sizes(conn)
    table = Table("id", "name", "kind", "members", "version", "updated")
    for seg in found:
        table.add_row(
            str(seg.id),
            seg.name,
            seg.kind,
            f"{counts.get(seg.id, 0):,}",
            str(seg.version),
            str(seg.updated_at)[:19],
        )
    console.print(table)


@segments_app.command("count")
def segments_count(
    segment: Annotated[str | None, typer.Argument(help="a saved segment's id or name")] = None,
    rule: Annotated[
        Path | None, typer.Option("--rule", help="an unsaved rule, as a JSON or YAML file")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Evaluate a segment now; the count is the last line of the output."""
    from rapport.ingest.errors import InvalidInput
    from rapport.segments.compiler import count
    from rapport.segments.definitions import SegmentNotFound, find_segment
    from rapport.segments.rules import parse_rule, segment_lookup

    if (segment is None) == (rule is None):
        raise typer.BadParameter("give a segment or --rule FILE, not both")
    engine = create_engine(settings_for(database_url).database_url)
    now = SystemClock().now()
    with engine.connect() as conn:
        try:
            if rule is not None:
                parsed = parse_rule(rule.read_text(), "rule", lookup=segment_lookup(conn))
            else:
                parsed = find_segment(conn, segment or "").rule()
        except (InvalidInput, SegmentNotFound, ValueError, OSError) as exc:
            for problem in getattr(exc, "problems", []) or [exc]:
                console.print(f"[red]{problem}[/red]", highlight=False)
            raise typer.Exit(1) from None
        total = count(conn, parsed, now)
    print(total)


@segments_app.command("export")
def segments_export(
    segment: Annotated[str, typer.Argument(help="a saved rule segment's id or name")],
    out: Annotated[Path | None, typer.Option("--out", help="CSV file (default: stdout)")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Members as CSV, evaluated now."""
    from rapport.segments.definitions import SegmentNotFound, find_segment
    from rapport.segments.export import export_rows

    engine = create_engine(settings_for(database_url).database_url)
    with engine.connect() as conn:
        try:
            rule = find_segment(conn, segment).rule()
        except (SegmentNotFound, ValueError) as exc:
            console.print(f"[red]{exc}[/red]", highlight=False)
            raise typer.Exit(1) from None
    rows = export_rows(engine, rule, SystemClock().now())
    if out is None:
        for chunk in rows:
            sys.stdout.write(chunk)
        return
    with out.open("w", newline="", encoding="utf-8") as fh:
        for chunk in rows:
            fh.write(chunk)
    console.print(f"Written {out}")


@segments_app.command("sweep")
def segments_sweep(database_url: DatabaseUrl = None) -> None:
    """Re-check time-dependent segments now (rapport serve does it every minute)."""
    from rapport.pipeline import Pipeline
    from rapport.worker import sweep_segments

    engine = create_engine(settings_for(database_url).database_url)
    result = sweep_segments(Pipeline(engine))
    console.print(f"{result.entered:,} entered, {result.exited:,} exited")


@app.command()
def worker(
    interval: Annotated[float, typer.Option(help="seconds between segment sweeps")] = 60.0,
    database_url: DatabaseUrl = None,
) -> None:
    """Run the sweeps without the API (for more workers beside `rapport serve`)."""
    import time

    from rapport.pipeline import Pipeline
    from rapport.store.migrate import upgrade
    from rapport.worker import Sweeper

    engine = create_engine(settings_for(database_url).database_url)
    upgrade(engine)
    sweeper = Sweeper(Pipeline(engine), interval)
    sweeper.start()
    console.print(f"Worker running: segment sweeps every {interval:g} s. Ctrl-C stops it.")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sweeper.stop()


@lists_app.command("import")
def lists_import(
    list_name: Annotated[str, typer.Argument(help="the list (created if it does not exist)")],
    file: Annotated[
        Path,
        typer.Argument(help="CSV with user_id, email, phone or customer_id", show_default=False),
    ],
    database_url: DatabaseUrl = None,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="add the good rows even if some are rejected")
    ] = False,
    rejects: Annotated[
        Path | None,
        typer.Option("--rejects", help="where rejected rows go (default FILE.rejects.csv)"),
    ] = None,
) -> None:
    """Add the customers a file names to a static list, whole or not at all (docs/lists.md)."""
    from rapport.ingest.importers import ImportFileError
    from rapport.pipeline import Pipeline
    from rapport.segments.list_import import import_list
    from rapport.segments.lists import ListError
    from rapport.store.migrate import upgrade

    settings = settings_for(database_url)
    engine = create_engine(settings.database_url)
    upgrade(engine)
    try:
        report = import_list(
            engine,
            Pipeline(engine),
            list_name,
            file,
            skip_invalid=skip_invalid,
            rejects_path=rejects,
            phone_region=settings.default_phone_region,
        )
    except (ImportFileError, ListError) as exc:
        console.print(f"[red]Cannot import {file}:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    if report.problems:
        problems = Table("line", "field", "reason", title="Rejected rows")
        for p in report.problems:
            problems.add_row(str(p.line), p.field, p.reason)
        console.print(problems)
        if report.problems_total > len(report.problems):
            console.print(f"… and {report.problems_total - len(report.problems)} more problems")
    summary = Table("rows read", "added", "already members", "rejected")
    summary.add_row(
        str(report.rows_read),
        str(report.rows_stored),
        str(report.rows_duplicate),
        str(report.rows_rejected),
    )
    console.print(summary)
    if report.rejects_path is not None:
        console.print(f"Rejected rows written to {report.rejects_path}", highlight=False)
    if not report.committed:
        console.print(
            f"[red]Nothing was imported:[/red] {report.rows_rejected} row(s) are invalid. "
            "Fix them, or use --skip-invalid to import the rest."
        )
        raise typer.Exit(1)
    console.print(f"Imported {file} into list {list_name!r}", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
