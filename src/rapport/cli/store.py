"""`rapport db`, `keys`, `serve` and `worker`: set up the store and run the server."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from rapport.cli.common import DatabaseUrl, app, console, settings_for, tune_collector
from rapport.clock import SystemClock
from rapport.store.engine import create_engine

db_app = typer.Typer(help="The store: create or upgrade its schema.", no_args_is_help=True)
keys_app = typer.Typer(
    help="API keys: write keys for ingest, secret keys for the management API.",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")


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
    role: Annotated[
        str | None,
        typer.Option(
            "--role", help="a secret key's role: admin (default), marketer, analyst or viewer"
        ),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a key. The key itself is printed once, as the last line: store it now."""
    from rapport.access.keys import KINDS, create_key

    if kind not in KINDS:
        raise typer.BadParameter(f"must be one of {', '.join(KINDS)}", param_hint="--kind")
    engine = create_engine(settings_for(database_url).database_url)
    try:
        created = create_key(engine, kind, name, SystemClock().now(), role)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--role") from None
    console.print(
        f"Created {kind} key #{created.id} ({name}). It is shown only now:", highlight=False
    )
    print(created.key)


@keys_app.command("list")
def keys_list(database_url: DatabaseUrl = None) -> None:
    """List keys (their prefixes only: the keys themselves are not stored)."""
    from rapport.access.keys import list_keys

    table = Table("id", "kind", "role", "name", "prefix", "created", "revoked")
    for key in list_keys(create_engine(settings_for(database_url).database_url)):
        table.add_row(
            str(key["id"]),
            str(key["kind"]),
            str(key["role"] or "—"),
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
    """Run the API (OpenAPI at /docs) and deliver the outbox. The store is upgraded first.

    Delivery uses the channels configured through /api/channels; RAPPORT_DISPATCH=false
    leaves it to `rapport worker` processes.
    """
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
    application = create_app(settings, engine=engine)
    tune_collector()
    uvicorn.run(
        application,
        host=settings.host,
        port=settings.port,
        log_level="warning",
    )


@app.command()
def worker(
    interval: Annotated[float, typer.Option(help="seconds between segment sweeps")] = 60.0,
    dispatch: Annotated[
        bool, typer.Option(help="deliver the outbox through the configured channels")
    ] = True,
    ingest: Annotated[
        bool, typer.Option(help="apply the queued-ingest inbox (see docs/ingest.md)")
    ] = True,
    ingest_only: Annotated[
        bool, typer.Option(help="only apply the inbox: no sweeps, scenarios or delivery")
    ] = False,
    appliers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=16,
            help="inbox applier processes side by side, each on its lanes "
            "(default: RAPPORT_INGEST_LANES on PostgreSQL, 1 on SQLite)",
        ),
    ] = None,
    applier: Annotated[
        str | None,
        typer.Option(help="be applier NUMBER/COUNT of a set (started by --appliers)"),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Run the sweeps, apply queued ingest and deliver the outbox without the API (beside
    `rapport serve`)."""
    import signal
    import time

    from rapport.cli.appliers import ApplierProcesses, parse_applier
    from rapport.inbox_applier import InboxApplier
    from rapport.pipeline import Pipeline
    from rapport.store.migrate import upgrade
    from rapport.worker import (
        ConfiguredDispatcher,
        DispatchLoop,
        ScenarioLoop,
        Sweeper,
        settings_links,
    )

    settings = settings_for(database_url)
    engine = create_engine(settings.database_url)
    upgrade(engine)
    pipeline = Pipeline(engine)
    links = settings_links(pipeline)
    pipeline.links = lambda: links
    loops: list[Any] = []
    doing: list[str] = []
    one_of = parse_applier(applier) if applier is not None else None
    if appliers is None:
        appliers = settings.ingest_lanes if engine.dialect.name == "postgresql" else 1
    others = ApplierProcesses(appliers, settings.database_url)
    if (ingest or ingest_only) and one_of is None and appliers > 1:
        one_of = (0, appliers)
        loops.append(others)
    if ingest or ingest_only:
        loops.append(InboxApplier(pipeline, settings, one_of))
        doing.append(
            f"queued ingest (applier {one_of[0]}/{one_of[1]})" if one_of else "queued ingest"
        )
        if others in loops:
            doing.append(f"{appliers - 1} more applier process(es)")
    if not ingest_only:
        loops += [Sweeper(pipeline, interval), ScenarioLoop(pipeline)]
        doing += [f"segment sweeps every {interval:g} s", "scenario steps"]
        if dispatch:
            loops.append(DispatchLoop(ConfiguredDispatcher(pipeline)))
            doing.append("delivery")
    tune_collector()  # the worker's appliers ingest in groups of thousands, as serve does
    for loop in loops:
        loop.start()
    console.print(f"Worker running: {', '.join(doing)}. Ctrl-C stops it.")

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)  # stop the applier processes too
    try:
        while True:
            time.sleep(1)
            if others in loops:
                others.check()
    except KeyboardInterrupt:
        for loop in reversed(loops):
            loop.stop()
