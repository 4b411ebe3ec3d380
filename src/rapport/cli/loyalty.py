"""`rapport loyalty`: the programme's settings, a customer's points, adjustments, the
daily run. Changes are written to the audit log as made by the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer
from rich.table import Table

from rapport.cli.common import DatabaseUrl, app, console, settings_for
from rapport.clock import SystemClock
from rapport.store.engine import create_engine

loyalty_app = typer.Typer(
    help="The loyalty programme: settings, balances, manual adjustments, the daily run "
    "(docs/loyalty.md).",
    no_args_is_help=True,
)
programme_app = typer.Typer(
    help="Show or replace the programme's settings (a JSON document).", no_args_is_help=True
)
loyalty_app.add_typer(programme_app, name="programme")
app.add_typer(loyalty_app, name="loyalty")

CustomerArg = Annotated[
    str, typer.Argument(help="a customer id, an email, or the shop's user id", show_default=False)
]


def _fail(message: str) -> None:
    console.print(f"[red]{message}[/red]", highlight=False)
    raise typer.Exit(1)


def _engine(database_url: str | None) -> sa.Engine:
    from rapport.store.migrate import upgrade

    engine = create_engine(settings_for(database_url).database_url)
    upgrade(engine)
    return engine


def _customer(engine: sa.Engine, given: str) -> int:
    from rapport.customers.card import find_by_identity
    from rapport.customers.profile import live_id
    from rapport.ingest.normalize import normalize_email

    with engine.connect() as conn:
        if given.isdigit():
            cid = live_id(conn, int(given))
        elif "@" in given:
            try:
                cid = find_by_identity(conn, "email", normalize_email(given))
            except ValueError as exc:
                cid = None
                _fail(f"CUSTOMER: {exc}")
        else:
            cid = find_by_identity(conn, "user_id", given)
    if cid is None:
        _fail(f"CUSTOMER: no customer {given!r} (give an id, an email or a user id)")
        raise AssertionError  # not reached: _fail exits
    return cid


@programme_app.command("show")
def programme_show(database_url: DatabaseUrl = None) -> None:
    """Print the programme's settings as JSON (the defaults, switched off, if never set)."""
    from rapport.loyalty.programme import load_stored

    with _engine(database_url).connect() as conn:
        stored = load_stored(conn)
    console.print(f"# version {stored.version}", highlight=False)
    console.print_json(json.dumps(stored.programme.model_dump(mode="json")))


@programme_app.command("set")
def programme_set(
    file: Annotated[
        Path, typer.Argument(help="a JSON file with the whole programme (docs/loyalty.md)")
    ],
    database_url: DatabaseUrl = None,
) -> None:
    """Replace the programme's settings with FILE; a new version, audited. Every problem
    is named with its place in the file, and nothing changes unless the file is valid."""
    from rapport.access.audit import Actor
    from rapport.errors import InvalidInput
    from rapport.loyalty.programme import parse, save
    from rapport.store.engine import writing

    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        _fail(f"FILE: {file} does not exist")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        _fail(f"FILE: {file} is not a JSON document: {exc}")
    try:
        programme = parse(raw)
    except InvalidInput as exc:
        _fail("\n".join(f"{file}: {p}" for p in exc.problems))
        return
    engine = _engine(database_url)
    with writing(engine) as conn:
        stored = save(conn, programme, Actor.cli(), SystemClock().now())
    state = "enabled" if programme.enabled else "switched off"
    console.print(f"Programme saved as version {stored.version} ({state})", highlight=False)


@loyalty_app.command("balance")
def balance(customer: CustomerArg, database_url: DatabaseUrl = None) -> None:
    """A customer's points: balance, pending, tier, expiring soon, the latest entries."""
    from rapport.loyalty.summary import loyalty_summary

    engine = _engine(database_url)
    cid = _customer(engine, customer)
    with engine.connect() as conn:
        summary = loyalty_summary(conn, cid, SystemClock().now())
    console.print(
        f"Customer #{cid}: {summary['balance']} points, {summary['pending']} pending, "
        f"tier {summary['tier'] or '—'}; {summary['points_expiring']} expiring within 30 "
        f"days (next on {summary['next_expiry'] or '—'})",
        highlight=False,
    )
    table = Table("at", "kind", "points", "pending", "order", "reason")
    for entry in summary["history"]:
        table.add_row(
            str(entry["at"])[:19],
            entry["kind"],
            f"{entry['points']:+d}" if entry["points"] else "",
            f"{entry['pending']:+d}" if entry["pending"] else "",
            entry["order_id"] or "",
            entry["reason"],
        )
    console.print(table)


@loyalty_app.command("adjust")
def adjust(
    customer: CustomerArg,
    points: Annotated[
        int, typer.Argument(help="points to add; negative to take away", show_default=False)
    ],
    reason: Annotated[str, typer.Option("--reason", help="why, for the history and audit log")],
    database_url: DatabaseUrl = None,
) -> None:
    """Add (or with a negative number take away) points by hand, with a reason."""
    from rapport.access.audit import Actor
    from rapport.errors import InvalidInput
    from rapport.loyalty.points import adjust as adjust_points
    from rapport.pipeline import Pipeline
    from rapport.store.engine import writing

    engine = _engine(database_url)
    cid = _customer(engine, customer)
    pipeline = Pipeline(engine)
    try:
        with writing(engine) as conn:
            events = adjust_points(conn, cid, points, reason, Actor.cli(), pipeline.clock.now())
            if events:
                pipeline.record_many(conn, events)
    except InvalidInput as exc:
        _fail("; ".join(f"{p.where.upper()}: {p.reason}" for p in exc.problems))
        return
    console.print(f"Customer #{cid}: {points:+d} points ({reason})", highlight=False)


@loyalty_app.command("run-daily")
def run_daily(database_url: DatabaseUrl = None) -> None:
    """Run the programme's daily work now: activate points whose return period ended,
    expire old points, re-tier everyone, give today's birthday bonuses. `rapport serve`
    and `rapport worker` already run it once a day; running it again changes nothing."""
    from rapport.loyalty.daily import run_daily as run
    from rapport.pipeline import Pipeline

    engine = _engine(database_url)
    pipeline = Pipeline(engine)
    report = run(engine, pipeline.clock.now(), lambda conn, ev: pipeline.record_many(conn, ev))
    console.print(
        f"{report.activated} points activated, {report.expired} expired, "
        f"{report.tier_changes} tier changes, {report.birthday_bonuses} birthday bonuses "
        f"({len(report.customers)} customers)",
        highlight=False,
    )
