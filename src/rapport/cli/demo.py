"""`rapport demo`: the synthetic shop."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rapport.cli.common import DatabaseUrl, app, console, settings_for
from rapport.cli.store import serve

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


@demo_app.command("mailcatcher")
def demo_mailcatcher(
    directory: Annotated[
        Path, typer.Option("--dir", help="the Maildir to store caught mail in (created if new)")
    ],
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="SMTP port on 127.0.0.1; 0: a free one")
    ] = 0,
) -> None:
    """Catch every e-mail sent to 127.0.0.1 in a Maildir (foreground; Ctrl+C stops it)."""
    import threading

    from rapport.demo.mailcatcher import MailCatcher

    with MailCatcher(directory, port=port) as catcher:
        console.print(
            f"Catching mail on 127.0.0.1:{catcher.port} (SMTP, no TLS, no login) into {directory}",
            highlight=False,
        )
        console.print(
            f"Read it at /mail: RAPPORT_MAIL_CATCHER_DIR={directory} rapport serve",
            highlight=False,
            soft_wrap=True,
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            console.print(f"Stopped; {catcher.received} message(s) caught.")
