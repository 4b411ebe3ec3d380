"""`rapport bounces read`: a bounce mailbox (mbox file or Maildir) in, suppressions out.

For setups where returned mail lands in a mailbox instead of being piped to the API. Each
message is its own transaction, so one that cannot be read or stored is reported and the
rest still count; reading the same mailbox again changes nothing (reports are idempotent).
"""

from __future__ import annotations

import mailbox
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rapport.cli.common import DatabaseUrl, app, console, settings_for
from rapport.store.engine import create_engine

bounces_app = typer.Typer(
    help="Bounces and complaints: read them from a mailbox.", no_args_is_help=True
)
app.add_typer(bounces_app, name="bounces")

MAX_SHOWN_PROBLEMS = 50


def open_mailbox(path: Path) -> mailbox.Mailbox:
    """A Maildir directory (with cur/ and new/) or an mbox file; anything else is refused."""
    if path.is_dir():
        if not (path / "cur").is_dir() or not (path / "new").is_dir():
            raise ValueError(f"{path} is a directory but not a Maildir (no cur/ and new/)")
        return mailbox.Maildir(path, create=False)
    if path.is_file():
        with path.open("rb") as f:
            head = f.read(5)
        if head and head != b"From ":
            raise ValueError(f"{path} is not an mbox file (it does not start with 'From ')")
        return mailbox.mbox(path, create=False)
    raise ValueError(f"{path} does not exist")


@bounces_app.command("read")
def read_command(
    path: Annotated[
        Path, typer.Argument(help="an mbox file or a Maildir directory", show_default=False)
    ],
    database_url: DatabaseUrl = None,
) -> None:
    """Process every bounce and complaint in a mailbox (see docs/bounces.md)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from rapport.messaging.bounces import UnparseableReport, parse_report
    from rapport.messaging.delivery_reports import apply_report
    from rapport.pipeline import Pipeline
    from rapport.store.engine import writing
    from rapport.store.migrate import upgrade

    try:
        box = open_mailbox(path)
        keys = list(box.keys())
    except (ValueError, OSError, mailbox.Error) as exc:
        console.print(f"[red]Cannot read {path}:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    engine = create_engine(settings_for(database_url).database_url)
    upgrade(engine)
    pipeline = Pipeline(engine)
    counts: Counter[str] = Counter()
    problems: list[tuple[int, str, str]] = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("Reading bounces", total=len(keys))
        for position, key in enumerate(keys, 1):
            bar.advance(task)
            try:
                raw = box.get_bytes(key)
                report = parse_report(raw)
                with writing(engine) as conn:
                    applied = apply_report(conn, report, pipeline.clock.now())
                    pipeline.record_many(conn, applied.events)
            except UnparseableReport as exc:
                counts["unparsed"] += 1
                problems.append((position, str(key), str(exc)))
                continue
            except Exception as exc:  # one message must not stop the mailbox
                counts["failed"] += 1
                problems.append((position, str(key), f"not stored: {exc!r}"))
                continue
            for result in applied.results:
                if not result.matched:
                    counts["unmatched"] += 1
                elif result.duplicate:
                    counts["already processed"] += 1
                else:
                    counts[result.outcome] += 1
                counts["suppressed"] += result.suppressed
    box.close()
    _report(len(keys), counts, problems)


# What the summary shows, in order: (counter, label).
_LINES = (
    ("hard", "hard bounces"),
    ("soft", "soft bounces"),
    ("complaint", "complaints"),
    ("delayed", "delay warnings (no action)"),
    ("delivered", "delivery confirmations"),
    ("unmatched", "not about our mail (ignored)"),
    ("already processed", "already processed"),
    ("unparsed", "unparsed"),
    ("failed", "failed to store"),
    ("suppressed", "addresses suppressed"),
)


def _report(total: int, counts: Counter[str], problems: list[tuple[int, str, str]]) -> None:
    if problems:
        table = Table("#", "mailbox key", "problem", title="Messages not processed")
        for position, key, reason in problems[:MAX_SHOWN_PROBLEMS]:
            table.add_row(str(position), key, reason)
        console.print(table)
        if len(problems) > MAX_SHOWN_PROBLEMS:
            console.print(f"… and {len(problems) - MAX_SHOWN_PROBLEMS} more")
    summary = Table("", "count", title="Bounces read")
    summary.add_row("messages", str(total))
    for key, label in _LINES:
        summary.add_row(label, str(counts[key]))
    console.print(summary)
