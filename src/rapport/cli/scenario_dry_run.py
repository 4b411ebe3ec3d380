"""`rapport scenarios dry-run`: replay stored history through a scenario; nothing is sent.

A marketer tries a journey on last month's traffic before switching it on (or before
saving it: ``--file``) and wants the answer in terms of people: who would have entered,
who would have got which message when, what the policy would have held back and why.
The command prints that as tables, and ``--json`` keeps the whole report for a
spreadsheet or a colleague. How the replay works: docs/scenarios.md, "Dry runs".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.table import Table

from rapport.cli.common import DatabaseUrl, console, settings_for
from rapport.cli.scenarios import scenarios_app
from rapport.scenarios.dry_run_sandbox import DEFAULT_MAX_EVENTS
from rapport.store.engine import create_engine

_DAY = "%Y-%m-%d %H:%M"


class _Refused(Exception):
    """A bad option, said in one line."""


def _fail(exc: BaseException) -> NoReturn:
    for problem in getattr(exc, "problems", None) or [exc]:
        console.print(f"[red]{problem}[/red]", highlight=False)
    raise typer.Exit(1)


def _moment(text: str, option: str, *, end: bool = False) -> datetime:
    """A day (UTC; as an end, the whole day is included) or an exact moment (naive: UTC)."""
    text = text.strip()
    if len(text) == 10:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            pass
        else:
            return datetime.combine(day + timedelta(days=1) if end else day, time(), UTC)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _Refused(
            f"{option}: {text!r} is neither a day (2026-03-01) nor a moment (2026-03-01T14:30)"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@scenarios_app.command("dry-run")
def scenarios_dry_run(
    start: Annotated[
        str,
        typer.Option(
            "--from",
            help="first day (2026-03-01, UTC) or moment (2026-03-01T14:30)",
            show_default=False,
        ),
    ],
    scenario: Annotated[
        str | None, typer.Argument(metavar="NAME", help="a saved scenario's id or name")
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--to", help="last day, included, or a moment, excluded", show_default="now"),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="an unsaved scenario (YAML or JSON) instead of NAME"),
    ] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="write the whole report to this file")
    ] = None,
    limit_customers: Annotated[
        int | None,
        typer.Option("--limit-customers", min=1, help="replay only the first N customers"),
    ] = None,
    max_events: Annotated[
        int, typer.Option("--max-events", min=1, help="refuse ranges with more events")
    ] = DEFAULT_MAX_EVENTS,
    sample: Annotated[
        int, typer.Option("--sample", min=0, help="customers shown in the sample table")
    ] = 10,
    database_url: DatabaseUrl = None,
) -> None:
    """Replay stored history through a scenario: who would have got what, and when.

    Nothing is sent and nothing is stored; live traffic is not held up (docs/scenarios.md).
    """
    from rapport.clock import SystemClock
    from rapport.errors import InvalidInput
    from rapport.scenarios.dry_run import DryRunError, dry_run
    from rapport.scenarios.dry_run_sandbox import SandboxError
    from rapport.scenarios.model import parse_scenario
    from rapport.scenarios.store import ScenarioNotFound

    if (scenario is None) == (file is None):
        _fail(_Refused("give a saved scenario's NAME or --file FILE (one of them)"))
    now = SystemClock().now()
    try:
        first = _moment(start, "--from")
        last = now if end is None else _moment(end, "--to", end=True)
    except _Refused as exc:
        _fail(exc)
    until_now = end is None or last > now
    last = min(last, now)
    if first >= last:
        _fail(_Refused(f"--from {first:{_DAY}} is not before --to {last:{_DAY}} (UTC)"))
    ref: Any = scenario
    if file is not None:
        try:
            ref = parse_scenario(file.read_text(encoding="utf-8"), "scenario")
        except (InvalidInput, OSError, UnicodeDecodeError) as exc:
            _fail(exc)
    engine = create_engine(settings_for(database_url).database_url)
    try:
        with _progress() as progress:
            report = dry_run(
                engine,
                ref,
                first,
                last,
                limit_customers=limit_customers,
                max_events=max_events,
                progress=progress,
            )
    except (DryRunError, ScenarioNotFound, InvalidInput, SandboxError) as exc:
        _fail(exc)
    finally:
        engine.dispose()
    _print(report, sample, until_now)
    if json_file is not None:
        import orjson

        try:
            json_file.write_bytes(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2))
        except OSError as exc:
            _fail(exc)
        console.print(f"The whole report is in {json_file}", highlight=False)


@contextmanager
def _progress() -> Iterator[Callable[[int, int], None]]:
    """A progress bar over the replayed events, gone when the report prints."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("Replaying events"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task("replay", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield progress


def _print(report: Any, sample: int, until_now: bool) -> None:
    saved = f"v{report.version}" if report.saved else "unsaved"
    to = "now" if until_now else f"{report.end:{_DAY}}"
    console.print(
        f"[bold]Dry run of {report.scenario}[/bold] ({saved}), {report.start:{_DAY}} → {to} "
        f"UTC: {report.events:,} events replayed, {report.wakeups:,} wake-ups. "
        "Nothing was sent or stored.",
        highlight=False,
    )
    statuses, outcomes = report.statuses(), report.outcomes()
    summary = Table("", "", title="Summary", show_header=False)
    summary.add_row("runs entered", f"{len(report.runs):,} ({len(report.customers):,} customers)")
    summary.add_row("messages that would go out", f"{outcomes['sent']:,}")
    summary.add_row("deferred by quiet hours", f"{outcomes['deferred']:,}")
    summary.add_row("skipped (policy, no address)", f"{outcomes['skipped']:,}")
    summary.add_row("converted (goal reached)", f"{report.converted:,}")
    summary.add_row("exited (exit event)", f"{statuses['exited']:,}")
    summary.add_row("control group", f"{statuses['control']:,}")
    summary.add_row("still in flight at the end", f"{statuses['active'] + statuses['waiting']:,}")
    console.print(summary)
    if report.messages:
        steps = Table(
            "step", "channel", "would go out", "deferred", "skipped", title="Messages by step"
        )
        for step, channel, sent, deferred, skipped in report.by_step():
            steps.add_row(step, channel, f"{sent:,}", f"{deferred:,}", f"{skipped:,}")
        console.print(steps)
    _counts("Skipped, by reason", "reason", "messages", report.skipped_by_reason())
    _counts("Exited, by reason", "reason", "runs", report.exits_by_reason())
    actions: dict[str, int] = {}
    for a in report.actions:
        actions[a.action] = actions.get(a.action, 0) + 1
    _counts("Actions (listed, not performed)", "action", "times", actions)
    shown = report.customers[:sample]
    if shown:
        title = f"Sample: {len(shown):,} of {len(report.customers):,} customers"
        people = Table("customer", "when (UTC)", "step", "what", "detail", title=title)
        for cid in shown:
            label = report.label(cid)
            for at, step, what, detail in report.timeline(cid):
                people.add_row(label, f"{at:{_DAY}}", step, what, detail)
                label = ""
            people.add_section()
        console.print(people)
    for caveat in report.caveats:
        console.print(f"[dim]· {caveat}[/dim]", highlight=False)


def _counts(title: str, what: str, unit: str, counts: Any) -> None:
    if not counts:
        return
    table = Table(what, unit, title=title)
    for key, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(str(key), f"{n:,}")
    console.print(table)
