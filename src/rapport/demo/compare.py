"""The strategy backtest: two strategies on one simulated population, with honest intervals.

The shop's history is generated once and the store copied, so both strategies start from
identical stores; the baseline customers then do exactly the same things in both runs
(``generator.History`` keeps what messages cause on a random stream of its own), and
every difference in what customers spent or how many unsubscribed is the strategies'
doing. The comparison is per customer (a paired design): for each one the difference B −
A in revenue over the simulated days and in unsubscribing (0 or 1), with the t interval
of the mean difference (``experiments.stats.mean_interval``) and a percentile bootstrap
(``experiments.bootstrap.resampled_means``), scaled to the whole population.
"""

from __future__ import annotations

import copy
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from rapport.analytics.experiments.bootstrap import RESAMPLES, SEED, resampled_means
from rapport.analytics.experiments.stats import mean_interval
from rapport.demo.bank_simulate import name_the_bank
from rapport.demo.generator import DemoConfig, History
from rapport.demo.mailcatcher import MailCatcher
from rapport.demo.simulate import SimulationConfig, caused_revenue
from rapport.demo.stage import stage
from rapport.demo.strategy import Strategy
from rapport.demo.verticals import WORDS, simulation_class
from rapport.store.engine import create_engine
from rapport.store.tables import events, identities, orders

PUBLIC_URL = "http://127.0.0.1:8000"


@dataclass
class Run:
    """One strategy's simulated days, per customer (user id)."""

    strategy: str
    revenue: dict[str, float]
    unsubscribed: set[str]
    counts: dict[str, int]
    planted_revenue: float
    store: Path

    def totals(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "revenue": round(sum(self.revenue.values()), 2),
            "unsubscribed_customers": len(self.unsubscribed),
            "planted_revenue": round(self.planted_revenue, 2),
            "messages": {k: v for k, v in sorted(self.counts.items())},
        }


@dataclass
class Difference:
    """B − A summed over the population: the estimate and its 95 % intervals."""

    value: float
    ci: tuple[float, float]
    bootstrap_ci: tuple[float, float]
    per_customer: float

    def as_json(self) -> dict[str, Any]:
        return {
            "value": round(self.value, 2),
            "ci": [round(x, 2) for x in self.ci],
            "bootstrap_ci": [round(x, 2) for x in self.bootstrap_ci],
            "per_customer": round(self.per_customer, 4),
        }


@dataclass
class Comparison:
    a: Run
    b: Run
    customers: int
    revenue: Difference
    unsubscribes: Difference
    config: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "simulated": True,
            "config": self.config,
            "customers": self.customers,
            "a": self.a.totals(),
            "b": self.b.totals(),
            "incremental_revenue": self.revenue.as_json(),
            "incremental_unsubscribes": self.unsubscribes.as_json(),
        }


def difference(values: np.ndarray, *, seed: int = SEED, resamples: int = RESAMPLES) -> Difference:
    """The population total of per-customer differences, with t and bootstrap intervals."""
    n = len(values)
    if n < 2:
        return Difference(float(values.sum()), (float("nan"),) * 2, (float("nan"),) * 2, 0.0)
    mean = float(values.mean())
    low, high = mean_interval(n, mean, float(values.var(ddof=1)))
    means = resampled_means(values[values != 0], n, resamples, np.random.default_rng(seed))
    b_low, b_high = np.percentile(means, [2.5, 97.5])
    return Difference(
        mean * n, (float(low) * n, float(high) * n), (float(b_low) * n, float(b_high) * n), mean
    )


def _copy_store(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite store (WAL included), by SQLite's own backup."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def outcomes(
    engine: sa.Engine, start: datetime, end: datetime
) -> tuple[dict[str, float], set[str]]:
    """Per user id: revenue of completed orders placed in the period (net of refunds), and
    whether they unsubscribed through a message in it."""
    o, i, e = orders.c, identities.c, events.c
    with engine.connect() as conn:
        revenue = {
            str(user): float(total)
            for user, total in conn.execute(
                sa.select(i.value, sa.func.sum(o.total - o.refunded))
                .join(orders, o.customer_id == i.customer_id)
                .where(
                    i.kind == "user_id",
                    o.status == "completed",
                    o.occurred_at >= start,
                    o.occurred_at < end,
                )
                .group_by(i.value)
            )
        }
        unsubscribed = set(
            conn.execute(
                sa.select(i.value)
                .distinct()
                .join(events, e.customer_id == i.customer_id)
                .where(
                    i.kind == "user_id",
                    e.name == "Message Unsubscribed",
                    e.occurred_at >= start,
                    e.occurred_at < end,
                )
            ).scalars()
        )
    return revenue, unsubscribed


def run_strategy(
    base: Path,
    history: History,
    strategy: Strategy,
    workdir: Path,
    label: str,
    *,
    simulation_config: SimulationConfig | None = None,
    progress: Any = None,
) -> Run:
    """One strategy on a copy of the generated store and of the history's state."""
    store = workdir / f"{label}.db"
    _copy_store(base, store)
    engine = create_engine(f"sqlite:///{store}")
    history = copy.deepcopy(history)
    start = history.config.history_end()
    if history.config.vertical == "bank":
        name_the_bank(engine, start)
    try:
        with MailCatcher(workdir / f"mail-{label}") as catcher:
            staged = stage(
                engine,
                strategy,
                now=start,
                simulation_start=start,
                smtp_port=catcher.port,
                public_url=PUBLIC_URL,
            )
            simulation = simulation_class(history.config.vertical)(
                engine, history, staged, workdir / f"mail-{label}", config=simulation_config
            )
            result = simulation.run(progress)
        revenue, unsubscribed = outcomes(engine, start, simulation.end)
        planted = caused_revenue(engine, result.caused_orders)
    finally:
        engine.dispose()
    counts = {k: v for k, v in result.counts.items() if k.startswith("sent by ")}
    return Run(strategy.name, revenue, unsubscribed, counts, planted, store)


def compare_runs(a: Run, b: Run, people: list[str], config: dict[str, Any]) -> Comparison:
    """Per-customer differences B − A over the whole generated population."""
    rev = np.array([b.revenue.get(u, 0.0) - a.revenue.get(u, 0.0) for u in people])
    uns = np.array(
        [float(u in b.unsubscribed) - float(u in a.unsubscribed) for u in people], dtype=float
    )
    return Comparison(a, b, len(people), difference(rev), difference(uns), config)


def config_json(config: DemoConfig) -> dict[str, Any]:
    return {
        "customers": config.customers,
        "months": config.months,
        "days": config.days,
        "seed": config.seed,
        "vertical": config.vertical,
    }


def comparison_table(comparison: Comparison) -> Table:
    a, b = comparison.a.totals(), comparison.b.totals()
    table = Table(
        "", f"A: {a['strategy']}", f"B: {b['strategy']}", "B − A (95% CI)",
        title=f"Strategy backtest on {comparison.customers:,} simulated customers (synthetic data)",
        title_justify="left",
    )  # fmt: skip
    for col in table.columns[1:]:
        col.justify = "right"

    def ci(d: Difference, fmt: str) -> str:
        low, high = d.ci
        return f"{d.value:{fmt}} ({low:{fmt}} to {high:{fmt}})"

    revenue = WORDS[comparison.config.get("vertical", "shop")].revenue
    table.add_row(
        revenue, f"{a['revenue']:,.0f}", f"{b['revenue']:,.0f}", ci(comparison.revenue, ",.0f")
    )
    table.add_row(
        "customers who unsubscribed",
        f"{a['unsubscribed_customers']:,}",
        f"{b['unsubscribed_customers']:,}",
        ci(comparison.unsubscribes, ",.1f"),
    )
    table.add_row(
        f"{revenue} planted by messages",
        f"{a['planted_revenue']:,.0f}",
        f"{b['planted_revenue']:,.0f}",
        "",
    )
    for name in sorted({*a["messages"], *b["messages"]}):
        table.add_row(
            name.replace("sent by", "messages sent by"),
            f"{a['messages'].get(name, 0):,}",
            f"{b['messages'].get(name, 0):,}",
            "",
        )
    return table


def print_comparison(comparison: Comparison, console: Console) -> None:
    console.print(comparison_table(comparison))
    boot = comparison.revenue.bootstrap_ci
    revenue = WORDS[comparison.config.get("vertical", "shop")].revenue
    console.print(
        f"Incremental {revenue} of B over A: bootstrap 95% CI {boot[0]:,.0f} to {boot[1]:,.0f}. "
        "Intervals are over per-customer differences on the same population.",
        highlight=False,
    )
