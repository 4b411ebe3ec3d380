"""`rapport demo`: the synthetic shop, its simulated days, and the strategy backtest."""

from __future__ import annotations

import json
import os
import tempfile
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from rapport.cli.common import DatabaseUrl, app, console, settings_for
from rapport.cli.store import serve

if TYPE_CHECKING:
    from rapport.demo.strategy import Strategy

demo_app = typer.Typer(
    help="The demo: a synthetic clothing and footwear shop (or, with --vertical bank, a retail "
    "bank) sent through the real ingest path. Without a command, runs it (as `demo run`).",
)
app.add_typer(demo_app, name="demo")

# The demo's defaults fit its time budget (docs/demo.md, "Timings"); the generator alone
# makes the full-size shop the issue of record asks for.
CUSTOMERS, MONTHS, DAYS = 1000, 12, 90
GENERATE_CUSTOMERS, GENERATE_MONTHS = 20_000, 12

DemoCustomers = Annotated[int, typer.Option("--customers", min=1, help="customers to generate")]
DemoMonths = Annotated[
    int, typer.Option("--months", min=1, help="months of history before the simulated days")
]
DemoDays = Annotated[
    int, typer.Option("--days", min=1, max=3650, help="days to simulate with scenarios running")
]
DemoSeed = Annotated[int, typer.Option("--seed", help="random seed: same seed, same shop")]


class Vertical(StrEnum):
    shop = "shop"
    bank = "bank"


DemoVertical = Annotated[
    Vertical,
    typer.Option(
        "--vertical",
        help="the business simulated: a clothing and footwear shop with the retail playbooks, "
        "or a retail bank (cards, deposits, loans, insurance; applications, activations, card "
        "transactions, logins, support calls, a credit score) with the bank playbooks",
    ),
]


def _strategy(path: Path | None, vertical: Vertical = Vertical.shop) -> Strategy:
    from rapport.demo.strategy import StrategyError, load_strategy
    from rapport.demo.verticals import PACKS, default_strategy

    if path is None:
        return default_strategy(vertical.value)
    try:
        return load_strategy(path, PACKS[vertical.value])
    except StrategyError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None


DemoStrategy = Annotated[
    Path | None,
    typer.Option(
        "--strategy",
        help="a strategy YAML naming playbooks of the vertical's pack (default: the "
        "retail playbook library; with --vertical bank, the bank pack)",
    ),
]
DemoStore = Annotated[
    str | None,
    typer.Option("--database-url", help="a store to use instead of a fresh ./rapport-demo.db"),
]
DemoReport = Annotated[Path, typer.Option("--report", help="where to write the HTML report")]
DemoNoServe = Annotated[bool, typer.Option("--no-serve", help="stop after the report")]


@demo_app.callback(invoke_without_command=True)
def demo_default(
    ctx: typer.Context,
    customers: DemoCustomers = CUSTOMERS,
    months: DemoMonths = MONTHS,
    days: DemoDays = DAYS,
    seed: DemoSeed = 42,
    strategy: DemoStrategy = None,
    database_url: DemoStore = None,
    report: DemoReport = Path("demo-report.html"),
    no_serve: DemoNoServe = False,
    vertical: DemoVertical = Vertical.shop,
) -> None:
    """The demo: a synthetic clothing and footwear shop (or, with --vertical bank, a retail
    bank) sent through the real ingest path. Without a command, `rapport demo [OPTIONS]`
    runs it as `rapport demo run` does."""
    if ctx.invoked_subcommand is None:
        demo_run(customers, months, days, seed, strategy, database_url, report, no_serve, vertical)


@demo_app.command("generate")
def demo_generate(
    customers: Annotated[
        int,
        typer.Option(
            "--customers",
            min=1,
            help="customers to generate (20,000 by default: about 2.2 million events over 12 "
            "months, some minutes of storing; `rapport demo` runs a smaller shop)",
        ),
    ] = GENERATE_CUSTOMERS,
    months: DemoMonths = GENERATE_MONTHS,
    seed: DemoSeed = 42,
    database_url: DatabaseUrl = None,
    vertical: DemoVertical = Vertical.shop,
) -> None:
    """Generate the shop's (or the bank's) history into a store (upgraded first) and print a
    summary."""
    from rapport.demo.generator import DemoConfig
    from rapport.demo.runner import generate_with_progress, prepare, print_summary

    engine = prepare(settings_for(database_url).database_url)
    config = DemoConfig(customers=customers, months=months, seed=seed, vertical=vertical.value)
    result = generate_with_progress(engine, config, console)
    print_summary(engine, result, console)


@demo_app.command("run")
def demo_run(
    customers: DemoCustomers = CUSTOMERS,
    months: DemoMonths = MONTHS,
    days: DemoDays = DAYS,
    seed: DemoSeed = 42,
    strategy: DemoStrategy = None,
    database_url: DemoStore = None,
    report: DemoReport = Path("demo-report.html"),
    no_serve: DemoNoServe = False,
    vertical: DemoVertical = Vertical.shop,
) -> None:
    """History, then DAYS simulated days with scenarios, real SMTP into the mail catcher and
    customers answering; a summary, demo-report.html, keys, a login, then `rapport serve`.
    `--vertical bank` runs a retail bank with the bank playbooks instead of the shop."""
    from rapport.demo.generator import DemoConfig
    from rapport.demo.runner import (
        DEMO_DATABASE,
        DEMO_MAIL,
        create_demo_admin,
        create_demo_keys,
        fresh_maildir,
        fresh_sqlite_url,
        generate_with_progress,
        prepare,
        print_summary,
        simulate_and_report,
    )
    from rapport.demo.verticals import make_history

    chosen = _strategy(strategy, vertical)
    began = time.perf_counter()
    url = database_url or fresh_sqlite_url(Path(DEMO_DATABASE))
    maildir = fresh_maildir(Path(DEMO_MAIL).resolve())
    engine = prepare(url)
    config = DemoConfig(
        customers=customers, months=months, days=days, seed=seed, vertical=vertical.value
    )
    history = make_history(config)
    result = generate_with_progress(engine, config, console, history)
    print_summary(engine, result, console)
    outcome = simulate_and_report(
        engine, config, history, chosen, maildir, report.resolve(), console, generation=result
    )
    keys = create_demo_keys(engine)
    email, password = create_demo_admin(engine, config.period()[1])
    console.print(f"Done in {time.perf_counter() - began:.0f} s.", highlight=False)
    console.print(f"Report (simulated data): {outcome.report}", highlight=False, soft_wrap=True)
    console.print(f"Store: {engine.url.render_as_string(hide_password=True)}", highlight=False)
    console.print(f"Caught mail: {maildir}", highlight=False, soft_wrap=True)
    console.print(f"Write key (ingest, HTTP Basic username): {keys.write}", soft_wrap=True)
    console.print(f"Secret key (management API, Bearer):     {keys.secret}", soft_wrap=True)
    console.print(f"UI login: {email}  password: {password}", highlight=False, soft_wrap=True)
    if not no_serve:
        os.environ["RAPPORT_MAIL_CATCHER_DIR"] = str(maildir)
        serve(host=None, port=None, database_url=url)


@demo_app.command("compare")
def demo_compare(
    a: Annotated[Path, typer.Argument(help="strategy A (YAML)")],
    b: Annotated[Path, typer.Argument(help="strategy B (YAML)")],
    customers: DemoCustomers = CUSTOMERS,
    months: DemoMonths = MONTHS,
    days: DemoDays = DAYS,
    seed: DemoSeed = 42,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--workdir", help="keep the stores and caught mail here (default: a temp dir)"
        ),
    ] = None,
    vertical: DemoVertical = Vertical.shop,
) -> None:
    """Run strategies A and B on the same simulated population; B's incremental revenue and
    unsubscribes over A with 95% confidence intervals. With `--vertical bank` the strategies
    name bank playbooks and revenue is card spend."""
    from rapport.demo.compare import compare_runs, config_json, print_comparison, run_strategy
    from rapport.demo.generator import DemoConfig
    from rapport.demo.runner import generate_with_progress, prepare, simulate_progress_bar
    from rapport.demo.verticals import WORDS, make_history

    first, second = _strategy(a, vertical), _strategy(b, vertical)
    config = DemoConfig(
        customers=customers, months=months, days=days, seed=seed, vertical=vertical.value
    )
    out = Console(stderr=True) if as_json else console
    with tempfile.TemporaryDirectory(prefix="rapport-compare-") as temp:
        work = workdir or Path(temp)
        work.mkdir(parents=True, exist_ok=True)
        base = work / "base.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{base}{suffix}").unlink(missing_ok=True)
        engine = prepare(f"sqlite:///{base}")
        history = make_history(config)
        generate_with_progress(engine, config, out, history)
        engine.dispose()
        runs = []
        for label, strategy in (("a", first), ("b", second)):
            with simulate_progress_bar(
                out, f"{label.upper()}: {strategy.name}", WORDS[vertical.value].orders
            ) as progress:
                runs.append(run_strategy(base, history, strategy, work, label, progress=progress))
        people = [p.user_id for p in history.people]
        comparison = compare_runs(runs[0], runs[1], people, config_json(config))
    if as_json:
        typer.echo(json.dumps(comparison.as_json(), ensure_ascii=False, indent=2))
    else:
        print_comparison(comparison, console)


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
