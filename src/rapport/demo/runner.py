"""The demo as a user runs it: a fresh store, the history, the simulated days, the report.

The CLI only wires options to these functions, so the same steps can be driven from a
notebook or a test without the CLI. Each long step shows a Rich progress bar.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from rapport.access.audit import Actor
from rapport.access.keys import create_key
from rapport.access.users import create_user, find_user, set_password
from rapport.analytics.periods import Period
from rapport.clock import SystemClock
from rapport.demo.bank_simulate import name_the_bank
from rapport.demo.bank_summary import render_bank, simulation_table_bank
from rapport.demo.generator import DemoConfig, GenerationResult, History, generate
from rapport.demo.mailcatcher import MailCatcher
from rapport.demo.report import Facts, collect, render
from rapport.demo.simulate import Simulation, SimulationConfig, SimulationResult, caused_revenue
from rapport.demo.stage import stage
from rapport.demo.strategy import Strategy
from rapport.demo.summary import render as render_summary
from rapport.demo.summary import simulation_table, summarize
from rapport.demo.verticals import WORDS, simulation_class
from rapport.settings import Settings
from rapport.store.engine import create_engine
from rapport.store.migrate import upgrade

DEMO_DATABASE = "rapport-demo.db"
DEMO_MAIL = "rapport-demo-mail"
DEMO_REPORT = "demo-report.html"
ADMIN_EMAIL = "admin@shop.example"


def fresh_sqlite_url(path: Path) -> str:
    """The demo starts from nothing: an old demo store (and its WAL files) is removed."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


def fresh_maildir(path: Path) -> Path:
    """The demo's own mail directory, emptied (only ever the one the demo names)."""
    if path.is_dir():
        shutil.rmtree(path)
    return path


@contextmanager
def _bar(console: Console, description: str, extra: str = "") -> Iterator[Callable[..., None]]:
    columns = [
        TextColumn("[bold]{task.description:<9}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn(extra),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=1.0, events=0, rate=0.0, sent=0, orders=0)
        shown = [0.0]

        def update(done: float, **fields: Any) -> None:
            if done - shown[0] < 0.002 and done < 1.0:
                return
            shown[0] = done
            progress.update(task, completed=done, **fields)

        yield update
        progress.update(task, completed=1.0)


def generate_with_progress(
    engine: sa.Engine, config: DemoConfig, console: Console, history: History | None = None
) -> GenerationResult:
    start = config.period()[0]
    business = WORDS[config.vertical].business
    console.print(
        f"Generating {business} (synthetic): {config.customers:,} customers, "
        f"history {start:%Y-%m-%d} → {config.history_end():%Y-%m-%d}, seed {config.seed}",
        highlight=False,
    )
    with _bar(
        console, "history", "{task.fields[events]:>9,} events  {task.fields[rate]:>6,.0f}/s"
    ) as bar:
        began = time.perf_counter()

        def update(done: float, result: GenerationResult) -> None:
            elapsed = time.perf_counter() - began
            bar(done, events=result.stored, rate=result.stored / elapsed if elapsed else 0.0)

        return generate(engine, config, progress=update, history=history)


@contextmanager
def simulate_progress_bar(
    console: Console, description: str = "simulate", orders: str = "orders"
) -> Iterator[Callable[[float, SimulationResult], None]]:
    """A bar for ``Simulation.run``: e-mails caught and what they caused so far."""
    with _bar(
        console,
        description,
        "{task.fields[sent]:>7,} e-mails  {task.fields[orders]:>5,} " + orders + " caused",
    ) as bar:

        def update(done: float, result: SimulationResult) -> None:
            bar(done, sent=result.counts["emails caught"], orders=result.counts["purchases caused"])

        yield update


def simulate_with_progress(simulation: Simulation, console: Console) -> SimulationResult:
    console.print(
        f"Simulating {simulation.start:%Y-%m-%d} → {simulation.end:%Y-%m-%d} on the clock: "
        "scenarios, campaigns, real SMTP into the mail catcher, customers answering",
        highlight=False,
    )
    orders = WORDS[simulation.history.config.vertical].orders
    with simulate_progress_bar(console, orders=orders) as update:
        return simulation.run(update)


@dataclass
class DemoKeys:
    write: str
    secret: str


def create_demo_keys(engine: sa.Engine) -> DemoKeys:
    now = SystemClock().now()
    return DemoKeys(
        write=create_key(engine, "write", "demo", now).key,
        secret=create_key(engine, "secret", "demo", now).key,
    )


def create_demo_admin(engine: sa.Engine, now: datetime) -> tuple[str, str]:
    """An admin for the UI with a fresh random password; (email, password)."""
    password = secrets.token_urlsafe(12)
    with engine.begin() as conn:
        found = find_user(conn, ADMIN_EMAIL)
        if found is None:
            create_user(
                conn,
                email=ADMIN_EMAIL,
                name="Demo admin",
                role="admin",
                password=password,
                now=now,
                actor=Actor.cli(),
            )
        else:
            set_password(conn, found.id, password, now, Actor.cli())
    return ADMIN_EMAIL, password


def prepare(database_url: str) -> sa.Engine:
    engine = create_engine(database_url)
    upgrade(engine)
    return engine


def print_summary(engine: sa.Engine, result: GenerationResult, console: Console) -> None:
    if result.config.vertical == "bank":
        console.print(render_bank(summarize(engine), result))
    else:
        console.print(render_summary(summarize(engine), result))


@dataclass
class DemoOutcome:
    generation: GenerationResult
    simulation: SimulationResult
    planted_revenue: float
    report: Path


def simulate_and_report(
    engine: sa.Engine,
    config: DemoConfig,
    history: History,
    strategy: Strategy,
    maildir: Path,
    report_path: Path,
    console: Console,
    *,
    generation: GenerationResult,
    simulation_config: SimulationConfig | None = None,
    settings: Settings | None = None,
) -> DemoOutcome:
    """Stage the strategy, simulate the days with the catcher running, write the report."""
    settings = settings or Settings()
    start = config.history_end()
    if config.vertical == "bank":
        name_the_bank(engine, start)
    with MailCatcher(maildir) as catcher:
        staged = stage(
            engine,
            strategy,
            now=start,
            simulation_start=start,
            smtp_port=catcher.port,
            public_url=settings.public_url,
            secret_key=settings.secret_key,
        )
        simulation: Simulation = simulation_class(config.vertical)(
            engine, history, staged, maildir, config=simulation_config, settings=settings
        )
        result = simulate_with_progress(simulation, console)
    with _bar(console, "refresh") as bar:
        simulation.refresh()  # segments, RFM, lifecycle, CLV, recommendations
    planted = caused_revenue(engine, result.caused_orders)
    with _bar(console, "report") as bar, engine.connect() as conn:
        end = simulation.end - timedelta(days=1)
        period = Period(start.date(), end.date())
        whole = Period(history.start.date(), end.date())
        sections = collect(conn, period, whole, simulation.end)
        bar(0.7)
        facts = Facts(
            customers=config.customers,
            days=config.days,
            seed=config.seed,
            strategy=strategy.name,
            planted_revenue=planted,
            caused_orders=len(result.caused_orders),
            emails_caught=result.counts["emails caught"],
            words=WORDS[config.vertical],
        )
        report_path.write_text(render(conn, sections, facts), encoding="utf-8")
    table = simulation_table_bank if config.vertical == "bank" else simulation_table
    console.print(table(result, planted, sections["global_control"].answer))
    return DemoOutcome(generation, result, planted, report_path)
