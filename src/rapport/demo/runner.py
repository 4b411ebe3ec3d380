"""The demo as a user runs it: a fresh store, the shop's history with a progress bar, keys.

The CLI only wires options to these functions, so the same steps can be driven from a
notebook or a later, longer demo (scenarios on the simulated clock) without the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from rapport.access.keys import create_key
from rapport.clock import SystemClock
from rapport.demo.generator import DemoConfig, GenerationResult, generate
from rapport.demo.summary import render, summarize
from rapport.store.engine import create_engine
from rapport.store.migrate import upgrade

DEMO_DATABASE = "rapport-demo.db"


def fresh_sqlite_url(path: Path) -> str:
    """The demo starts from nothing: an old demo store (and its WAL files) is removed."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


def generate_with_progress(
    engine: sa.Engine, config: DemoConfig, console: Console
) -> GenerationResult:
    start, end = config.period()
    console.print(
        f"Generating a synthetic clothing and footwear shop: {config.customers:,} customers, "
        f"{start:%Y-%m-%d} → {end:%Y-%m-%d}, seed {config.seed}",
        highlight=False,
    )
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[events]:>9,} events  {task.fields[rate]:>7,.0f}/s"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("history", total=1.0, events=0, rate=0.0)
        shown = [0.0]

        def update(done: float, result: GenerationResult) -> None:
            if done - shown[0] < 0.002 and done < 1.0:
                return
            shown[0] = done
            elapsed = progress.tasks[task].elapsed or 0.0
            progress.update(
                task,
                completed=done,
                events=result.stored,
                rate=result.stored / elapsed if elapsed else 0.0,
            )

        result = generate(engine, config, progress=update)
        progress.update(task, completed=1.0, events=result.stored)
    return result


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


def prepare(database_url: str) -> sa.Engine:
    engine = create_engine(database_url)
    upgrade(engine)
    return engine


def print_summary(engine: sa.Engine, result: GenerationResult, console: Console) -> None:
    console.print(render(summarize(engine), result))
