"""`rapport scenarios`: define, activate and inspect customer journeys (docs/scenarios.md).

The group lives here; commands are added by this module and by
``cli/scenario_dry_run.py`` (the dry run), which import ``scenarios_app``.

Commands work on the store directly, so a change made here reaches a running server or
worker when its index of active scenarios next reloads (within seconds).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.table import Table

from rapport.cli.common import DatabaseUrl, app, console, settings_for

scenarios_app = typer.Typer(
    help="Scenarios: triggered customer journeys (docs/scenarios.md).",
    no_args_is_help=True,
)
app.add_typer(scenarios_app, name="scenarios")

ScenarioKey = Annotated[str, typer.Argument(help="the scenario's id or name")]
DefinitionFile = Annotated[
    Path,
    typer.Option(
        "--file",
        help="the scenario as YAML or JSON (docs/scenarios.md, Writing a scenario)",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
]
Since = Annotated[
    datetime | None,
    typer.Option("--since", help="only runs started at or after this time (UTC)"),
]
Until = Annotated[
    datetime | None,
    typer.Option("--until", help="only runs started before this time (UTC)"),
]


def _fail(exc: Exception) -> NoReturn:
    """Every problem on its own line (with its path), then exit 1."""
    for problem in getattr(exc, "problems", None) or [exc]:
        console.print(f"[red]{problem}[/red]", highlight=False)
    raise typer.Exit(1)


def _engine(database_url: str | None) -> Any:
    from rapport.store.engine import create_engine
    from rapport.store.migrate import upgrade

    engine = create_engine(settings_for(database_url).database_url)
    upgrade(engine)
    return engine


def _find(conn: Any, key: str) -> Any:
    from rapport.scenarios.store import ScenarioNotFound, find_scenario

    try:
        return find_scenario(conn, key)
    except ScenarioNotFound as exc:
        _fail(exc)


def _read(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(exc)


def _flow(value: Any) -> str:
    """A trigger or a step in one line, as it would be written in the YAML."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, sort_keys=False)
    return text.strip().removesuffix("...").strip()


def _utc(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def _when(at: Any) -> str:
    return "" if at is None else f"{at:%Y-%m-%d %H:%M}"


@scenarios_app.command("list")
def scenarios_list(database_url: DatabaseUrl = None) -> None:
    """Every scenario with its status, version, trigger and live runs."""
    from rapport.scenarios.stats import live_runs
    from rapport.scenarios.store import all_scenarios

    with _engine(database_url).connect() as conn:
        found = all_scenarios(conn)
        live = live_runs(conn)
    table = Table("id", "name", "status", "version", "trigger", "live runs", "updated")
    for s in found:
        table.add_row(
            str(s.id),
            s.name,
            s.status,
            str(s.version),
            _flow(s.definition.get("trigger")),
            f"{live.get(s.id, 0):,}",
            _when(s.updated_at),
        )
    console.print(table)


@scenarios_app.command("show")
def scenarios_show(scenario: ScenarioKey, database_url: DatabaseUrl = None) -> None:
    """A scenario's definition as YAML, its versions, and its per-step figures."""
    import yaml

    from rapport.scenarios.stats import scenario_stats, versions

    with _engine(database_url).connect() as conn:
        found = _find(conn, scenario)
        figures = scenario_stats(conn, found.id, found.parsed())
        saved = versions(conn, found.id)
    console.print(
        f"#{found.id} {found.name}: {found.status}, version {found.version} "
        f"(updated {_when(found.updated_at)})",
        highlight=False,
    )
    console.print(
        "Versions: "
        + ", ".join(
            f"{v['version']} ({v['live_runs']:,} live of {v['runs']:,} runs)" for v in saved
        ),
        highlight=False,
    )
    # As it would be written: the defaults the store filled in are left out.
    written = found.parsed().definition.model_dump(
        mode="json", by_alias=True, exclude_none=True, exclude_defaults=True
    )
    console.print(
        yaml.safe_dump(written, sort_keys=False, allow_unicode=True),
        highlight=False,
        markup=False,
    )
    _print_stats(figures)


@scenarios_app.command("create")
def scenarios_create(
    file: DefinitionFile,
    activate: Annotated[
        bool, typer.Option("--activate", help="make it active at once (otherwise a draft)")
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Define a scenario from a file; the new id is the last line of the output.

    \b
    name: welcome
    trigger: {event: Signed Up}
    steps:
      - {id: hello, send: {template: welcome}}
      - {id: later, wait: {days: 2}}
      - {id: tips, send: {template: welcome-tips}}
    """
    from rapport.clock import SystemClock
    from rapport.errors import InvalidInput
    from rapport.scenarios.store import ScenarioConflict, create_scenario
    from rapport.store.engine import writing

    text = _read(file)
    engine = _engine(database_url)
    try:
        with writing(engine) as conn:
            found = create_scenario(
                conn, text, SystemClock().now(), "active" if activate else "draft"
            )
    except (InvalidInput, ScenarioConflict) as exc:
        _fail(exc)
    console.print(f"Created scenario #{found.id} ({found.name}), {found.status}", highlight=False)
    print(found.id)


@scenarios_app.command("update")
def scenarios_update(
    scenario: ScenarioKey, file: DefinitionFile, database_url: DatabaseUrl = None
) -> None:
    """Save a new version from a file; runs in flight keep the version they started on."""
    from rapport.clock import SystemClock
    from rapport.errors import InvalidInput
    from rapport.scenarios.store import ScenarioConflict, update_scenario
    from rapport.store.engine import writing

    text = _read(file)
    engine = _engine(database_url)
    try:
        with writing(engine) as conn:
            found = update_scenario(conn, _find(conn, scenario).id, text, SystemClock().now())
    except (InvalidInput, ScenarioConflict) as exc:
        _fail(exc)
    console.print(
        f"Saved version {found.version} of scenario #{found.id} ({found.name})", highlight=False
    )


def _set_status(key: str, status: str, database_url: str | None) -> None:
    from rapport.clock import SystemClock
    from rapport.errors import InvalidInput
    from rapport.scenarios.store import ScenarioConflict, set_status
    from rapport.store.engine import writing

    engine = _engine(database_url)
    try:
        with writing(engine) as conn:
            found = set_status(conn, _find(conn, key).id, status, SystemClock().now())
    except (InvalidInput, ScenarioConflict) as exc:
        _fail(exc)
    console.print(f"Scenario #{found.id} ({found.name}) is {found.status}", highlight=False)


@scenarios_app.command("activate")
def scenarios_activate(scenario: ScenarioKey, database_url: DatabaseUrl = None) -> None:
    """Start reacting to the trigger; runs a pause stopped resume where they were."""
    _set_status(scenario, "active", database_url)


@scenarios_app.command("pause")
def scenarios_pause(scenario: ScenarioKey, database_url: DatabaseUrl = None) -> None:
    """Start no new runs and hold the live ones where they are until activated again."""
    _set_status(scenario, "paused", database_url)


@scenarios_app.command("archive")
def scenarios_archive(scenario: ScenarioKey, database_url: DatabaseUrl = None) -> None:
    """Put a scenario away: like a pause, for good (activating brings it back)."""
    _set_status(scenario, "archived", database_url)


@scenarios_app.command("stats")
def scenarios_stats(
    scenario: ScenarioKey,
    since: Since = None,
    until: Until = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Per-step figures and the conversion, per split path and control group too.

    Per step: runs that entered it, runs at it now, messages sent, skipped (and why) and
    deferred, the paths taken, deliveries, opens and clicks, exits and failures.
    """
    from rapport.scenarios.stats import scenario_stats

    with _engine(database_url).connect() as conn:
        found = _find(conn, scenario)
        figures = scenario_stats(conn, found.id, found.parsed(), _utc(since), _utc(until))
    console.print(f"#{found.id} {found.name} ({found.status})", highlight=False)
    _print_stats(figures)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _print_stats(figures: dict[str, Any]) -> None:
    runs = figures["runs"]
    console.print(
        f"Runs: {runs['entered']:,} entered, {runs['live']:,} live, {runs['done']:,} done, "
        f"{runs['exited']:,} exited, {runs['control']:,} control, {runs['failed']:,} failed; "
        f"{runs['converted']:,} converted {_pct(figures['conversion'])}".rstrip(),
        highlight=False,
    )
    table = Table(
        "step",
        "kind",
        "entered",
        "now",
        "sent",
        "skipped",
        "deferred",
        "paths",
        "delivered",
        "opened",
        "clicked",
        "exited",
        "failed",
    )
    for s in figures["steps"]:
        paths = " · ".join(f"{k} {v:,}" for k, v in s.get("paths", {}).items())
        sends = "messages" in s
        table.add_row(
            s["id"] + (" (removed)" if s.get("removed") else ""),
            s["kind"] or "",
            f"{s['entered']:,}",
            f"{s['waiting_now']:,}",
            f"{s['sent']:,}" if sends else "",
            f"{s['skipped']:,}" if s["skipped"] or sends else "",
            f"{s['deferred']:,}" if sends else "",
            paths,
            f"{s['delivered']:,}" if sends else "",
            f"{s['opened']:,}" if sends else "",
            f"{s['clicked']:,}" if sends else "",
            f"{s['exited']:,}",
            f"{s['failed']:,}",
        )
    console.print(table)
    reasons = [
        (s["id"], reason, n)
        for s in figures["steps"]
        for reason, n in s["skipped_by_reason"].items()
    ]
    if reasons:
        skipped = Table("step", "skipped because", "times")
        for sid, reason, n in sorted(reasons, key=lambda r: -r[2]):
            skipped.add_row(sid, reason, f"{n:,}")
        console.print(skipped)
    if figures["groups"]:
        groups = Table("split", "group", "entered", "converted", "conversion")
        for sid, by_name in figures["groups"].items():
            for name, g in by_name.items():
                converted = "" if g["converted"] is None else f"{g['converted']:,}"
                groups.add_row(sid, name, f"{g['entered']:,}", converted, _pct(g["conversion"]))
        console.print(groups)


@scenarios_app.command("runs")
def scenarios_runs(
    customer: Annotated[int, typer.Option("--customer", help="the customer's id")],
    limit: Annotated[int, typer.Option("--limit", min=1, help="newest first")] = 50,
    database_url: DatabaseUrl = None,
) -> None:
    """A customer's scenario runs, newest first, with the steps each went through."""
    from rapport.customers.profile import live_id
    from rapport.scenarios.stats import customer_runs

    with _engine(database_url).connect() as conn:
        cid = live_id(conn, customer)
        if cid is None:
            _fail(LookupError(f"customer {customer} does not exist"))
        runs = customer_runs(conn, cid, limit)
    table = Table(
        "run",
        "scenario",
        "version",
        "status",
        "step",
        "wakes",
        "entity",
        "started",
        "ended",
        "why it ended",
        "path",
    )
    for run in runs:
        path = " → ".join(f"{line['step']}:{line['outcome']}" for line in run["log"])
        table.add_row(
            str(run["id"]),
            run["scenario"] or str(run["scenario_id"]),
            str(run["version"]),
            run["status"],
            run["step"] or "",
            _when(run["wake_at"]),
            run["entity_key"],
            _when(run["started_at"]),
            _when(run["ended_at"]),
            run["end_reason"] or "",
            path,
        )
    console.print(table)
    if not runs:
        console.print(f"Customer {cid} has no scenario runs.", highlight=False)
