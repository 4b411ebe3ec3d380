"""`rapport import` and `rapport lists import`: files in, whole or not at all."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from rapport.cli.common import DatabaseUrl, app, console, settings_for
from rapport.store.engine import create_engine

lists_app = typer.Typer(help="Static lists: members named by a file.", no_args_is_help=True)
app.add_typer(lists_app, name="lists")


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

    _print_problems(report)
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
    _print_problems(report)
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


def _print_problems(report: Any) -> None:
    """The per-row report of rejected rows, as a table (first rows; the count of the rest)."""
    if not report.problems:
        return
    problems = Table("line", "field", "reason", title="Rejected rows")
    for p in report.problems:
        problems.add_row(str(p.line), p.field, p.reason)
    console.print(problems)
    if report.problems_total > len(report.problems):
        console.print(f"… and {report.problems_total - len(report.problems)} more problems")
