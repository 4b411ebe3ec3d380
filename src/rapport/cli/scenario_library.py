"""`rapport scenarios install-library`: put the playbook library into the store.

A thin shell over ``scenarios.library.install``: options in, one transaction, a table
out. Re-running it is the way to pick up a newer library, so its output says per
playbook what it did (created, updated, unchanged, or kept because someone edited the
stored copy).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from rapport.cli.common import DatabaseUrl, console, settings_for
from rapport.cli.scenarios import scenarios_app

_STYLE = {"created": "green", "updated": "cyan", "unchanged": "dim", "kept": "yellow"}


def _engine(database_url: str | None) -> Any:
    from rapport.store.engine import create_engine
    from rapport.store.migrate import upgrade

    engine = create_engine(settings_for(database_url).database_url)
    upgrade(engine)
    return engine


def _counts(counts: Any) -> str:
    return ", ".join(f"{n} {result}" for result, n in sorted(counts.items())) or "-"


@scenarios_app.command("install-library")
def install_library(
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help="install just this playbook (file name or scenario name); repeatable",
        ),
    ] = None,
    pack: Annotated[
        str | None, typer.Option("--pack", help="only one pack: retail or bank")
    ] = None,
    activate: Annotated[
        bool,
        typer.Option("--activate", help="activate the scenarios (default: new ones are drafts)"),
    ] = False,
    site_url: Annotated[
        str | None,
        typer.Option(
            "--site-url", help="your site, for the links in messages (remembered for next time)"
        ),
    ] = None,
    brand: Annotated[
        str | None,
        typer.Option("--brand", help="your brand name, as messages sign (remembered)"),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="also overwrite templates and scenarios edited since"),
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Install the playbook library: ready scenarios with their templates and segments.

    Welcome chain, abandoned cart and browse, cross-sell, reactivation, win-back,
    birthday, opened-not-clicked, service offer, early access, and the bank pack;
    docs/scenarios.md describes each. Safe to run again: what is unchanged stays, what the library changed gets a new
    version, and copies edited in the store are kept unless --force.
    """
    from rapport.clock import SystemClock
    from rapport.errors import InvalidInput
    from rapport.messaging.templates.store import TemplateConflict
    from rapport.scenarios.library import SETTING, Brand, install
    from rapport.scenarios.store import ScenarioConflict
    from rapport.segments.config import read_setting
    from rapport.segments.definitions import SegmentConflict
    from rapport.store.engine import writing

    engine = _engine(database_url)
    try:
        with writing(engine) as conn:
            chosen = None
            if site_url is not None or brand is not None:
                stored = (read_setting(conn, SETTING) or {}).get("brand") or {}
                base = Brand(**stored) if stored else Brand()
                chosen = Brand(site_url or base.site_url, brand or base.name)
            report = install(
                conn,
                SystemClock().now(),
                only=only or (),
                pack=pack,
                activate=activate,
                brand=chosen,
                force=force,
            )
    except (InvalidInput, TemplateConflict, ScenarioConflict, SegmentConflict) as exc:
        for problem in getattr(exc, "problems", None) or [exc]:
            console.print(f"[red]{problem}[/red]", highlight=False)
        raise typer.Exit(1) from None
    table = Table()
    table.add_column("name", no_wrap=True)
    table.add_column("trigger", ratio=1)
    table.add_column("steps", justify="right")
    table.add_column("status")
    table.add_column("scenario", no_wrap=True)
    table.add_column("templates")
    for item in report:
        style = _STYLE.get(item.result, "")
        table.add_row(
            item.name,
            item.trigger,
            str(item.steps),
            item.status,
            f"[{style}]{item.result}[/{style}]" if style else item.result,
            _counts(item.templates),
        )
    console.print(table)
    segments = {name: result for item in report for name, result in item.segments.items()}
    if segments:
        listed = ", ".join(f"{name} ({result})" for name, result in segments.items())
        console.print(f"Segments: {listed}", highlight=False)
    results = [item.result for item in report]
    summary = ", ".join(f"{results.count(r)} {r}" for r in _STYLE if results.count(r))
    console.print(f"{len(report)} playbooks: {summary}.", highlight=False)
    kept = [item.name for item in report if item.result == "kept" or item.templates["kept"]]
    if kept:
        console.print(
            f"[yellow]Edited in the store since the last install, so left as they are: "
            f"{', '.join(kept)}. Run with --force to overwrite them.[/yellow]",
            highlight=False,
        )
