"""`rapport inbox …`: the queued-ingest inbox seen and handled from the shell.

``status`` shows how far applying is behind; ``apply`` applies everything pending now (after
turning queued ingest off, or in a job); ``parked``, ``retry`` and ``discard`` deal with
requests that failed to apply (see docs/ingest.md).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from rapport.cli.common import DatabaseUrl, app, console, settings_for
from rapport.clock import SystemClock
from rapport.store.engine import create_engine, writing

inbox_app = typer.Typer(
    help="Queued ingest: the inbox of acknowledged requests not applied yet.",
    no_args_is_help=True,
)
app.add_typer(inbox_app, name="inbox")


@inbox_app.command("status")
def status_command(database_url: DatabaseUrl = None) -> None:
    """Pending requests and messages, the age of the oldest, the parked requests."""
    from rapport.ingest.inbox import health, status

    engine = create_engine(settings_for(database_url).database_url)
    with engine.connect() as conn:
        figures = health(status(conn), SystemClock().now())
    for name, value in figures.items():
        console.print(f"{name.replace('_', ' ')}: {value}")


@inbox_app.command("apply")
def apply_command(database_url: DatabaseUrl = None) -> None:
    """Apply every pending request now, with a progress bar; parked requests stay parked."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from rapport.inbox_applier import apply_all, decoder
    from rapport.ingest.inbox import status
    from rapport.pipeline import Pipeline

    settings = settings_for(database_url)
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        pending = status(conn).pending_messages
    pipeline = Pipeline(engine)
    with Progress(
        TextColumn("applying"), BarColumn(), MofNCompleteColumn(), console=console
    ) as progress:
        task = progress.add_task("inbox", total=pending)
        total = apply_all(
            pipeline,
            decoder(settings),
            settings.ingest_apply_max_messages,
            lambda group: progress.advance(task, group.stored + group.duplicates),
        )
    console.print(
        f"Applied {total.requests} requests: {total.stored} events stored, "
        f"{total.duplicates} duplicates ignored, {total.parked} parked."
    )
    if total.parked:
        raise typer.Exit(1)


@inbox_app.command("parked")
def parked_command(database_url: DatabaseUrl = None) -> None:
    """Requests that failed to apply, with the error each last gave."""
    from rapport.ingest.inbox import parked

    engine = create_engine(settings_for(database_url).database_url)
    with engine.connect() as conn:
        rows = parked(conn)
    if not rows:
        console.print("No parked requests.")
        return
    table = Table("id", "endpoint", "received", "messages", "attempts", "last error")
    for row in rows:
        table.add_row(
            str(row.id),
            row.kind,
            row.received_at.isoformat(timespec="seconds"),
            str(row.messages),
            str(row.attempts),
            row.last_error or "",
        )
    console.print(table)


@inbox_app.command("retry")
def retry_command(
    ids: Annotated[list[int] | None, typer.Argument(help="parked request ids")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every parked request")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Put parked requests back in line for the appliers."""
    from rapport.ingest.inbox import retry

    if not ids and not all_:
        console.print("[red]Name the parked requests to retry, or pass --all.[/red]")
        raise typer.Exit(2)
    engine = create_engine(settings_for(database_url).database_url)
    with writing(engine) as conn:
        count = retry(conn, None if all_ else ids)
    console.print(f"{count} requests back in line.")


@inbox_app.command("discard")
def discard_command(
    ids: Annotated[list[int], typer.Argument(help="parked request ids")],
    database_url: DatabaseUrl = None,
) -> None:
    """Delete parked requests for good; only parked requests can be discarded."""
    from rapport.ingest.inbox import discard

    engine = create_engine(settings_for(database_url).database_url)
    with writing(engine) as conn:
        count = discard(conn, ids)
    console.print(f"{count} parked requests discarded.")
    if count < len(ids):
        console.print(f"[yellow]{len(ids) - count} of the ids were not parked requests.[/yellow]")
        raise typer.Exit(1)
