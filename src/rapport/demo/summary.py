"""What the demo store holds after generation, read back from the store itself.

The figures come from the tables the rest of Rapport reads (customers, identities, events,
orders), not from the generator's own counts, so the summary also shows that the ingest
path produced what was sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from rich.console import Group
from rich.table import Table

from rapport.demo.catalog import CURRENCY
from rapport.demo.generator import GenerationResult
from rapport.demo.simulate import SimulationResult
from rapport.store.tables import customers, events, identities, orders


@dataclass
class DemoSummary:
    profiles: int = 0
    identified: int = 0
    merged: int = 0
    events_by_name: dict[str, int] = field(default_factory=dict)
    orders_by_status: dict[str, int] = field(default_factory=dict)
    offline_orders: int = 0
    revenue: float = 0.0
    buyers: int = 0
    repeat_buyers: int = 0

    @property
    def events(self) -> int:
        return sum(self.events_by_name.values())

    @property
    def identified_share(self) -> float:
        return self.identified / self.profiles if self.profiles else 0.0

    @property
    def repeat_share(self) -> float:
        return self.repeat_buyers / self.buyers if self.buyers else 0.0


def summarize(engine: sa.Engine) -> DemoSummary:
    c, o = customers.c, orders.c
    live = c.merged_into.is_(None)
    with engine.connect() as conn:
        summary = DemoSummary()
        summary.profiles = conn.execute(sa.select(sa.func.count()).where(live)).scalar_one()
        summary.merged = conn.execute(
            sa.select(sa.func.count()).where(c.merged_into.is_not(None))
        ).scalar_one()
        summary.identified = conn.execute(
            sa.select(sa.func.count(sa.distinct(identities.c.customer_id))).where(
                identities.c.kind == "user_id"
            )
        ).scalar_one()
        summary.events_by_name = {
            name: n
            for name, n in conn.execute(
                sa.select(events.c.name, sa.func.count())
                .group_by(events.c.name)
                .order_by(sa.func.count().desc(), events.c.name)
            )
        }
        summary.orders_by_status = {
            status: n
            for status, n in conn.execute(
                sa.select(o.status, sa.func.count()).group_by(o.status).order_by(o.status)
            )
        }
        summary.offline_orders = conn.execute(
            sa.select(sa.func.count()).where(o.channel == "offline")
        ).scalar_one()
        summary.revenue = float(
            conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(o.total - o.refunded), 0.0)).where(
                    o.status == "completed"
                )
            ).scalar_one()
        )
        summary.buyers = conn.execute(
            sa.select(sa.func.count()).where(live, c.orders_count >= 1)
        ).scalar_one()
        summary.repeat_buyers = conn.execute(
            sa.select(sa.func.count()).where(live, c.orders_count >= 2)
        ).scalar_one()
    return summary


def _money(value: float) -> str:
    return f"{value:,.0f} {CURRENCY}".replace(",", " ")


def render(summary: DemoSummary, result: GenerationResult | None = None) -> Group:
    """Rich tables: the shop at a glance, then events by name."""
    shop = Table(title="Demo shop (synthetic data)", show_header=False, title_justify="left")
    shop.add_column(style="bold")
    shop.add_column(justify="right")
    if result is not None:
        shop.add_row("history", f"{result.start:%Y-%m-%d} → {result.end:%Y-%m-%d}")
        shop.add_row("customers generated", f"{result.people:,}")
        shop.add_row("products", f"{result.products:,}")
    shop.add_row("profiles in the store", f"{summary.profiles:,}")
    shop.add_row("identified (have a user id)", f"{summary.identified_share:.1%}")
    shop.add_row("anonymous profiles merged", f"{summary.merged:,}")
    total_orders = sum(summary.orders_by_status.values())
    statuses = ", ".join(f"{k} {v:,}" for k, v in summary.orders_by_status.items())
    shop.add_row("orders", f"{total_orders:,} ({statuses})")
    shop.add_row("offline store orders", f"{summary.offline_orders:,}")
    shop.add_row("revenue (net of refunds)", _money(summary.revenue))
    average = summary.revenue / summary.orders_by_status.get("completed", 1)
    shop.add_row("average order", _money(average))
    shop.add_row(
        "repeat-purchase share", f"{summary.repeat_share:.1%} of {summary.buyers:,} buyers"
    )
    if result is not None:
        shop.add_row("messages sent", f"{result.messages:,}")
        shop.add_row("duplicates dropped", f"{result.duplicates_dropped:,}")
        shop.add_row("events stored", f"{result.stored:,}")
        shop.add_row(
            "events/s achieved",
            f"{result.events_per_second:,.0f} overall, "
            f"{result.stored / max(result.ingest_seconds, 1e-9):,.0f} in the pipeline",
        )
        shop.add_row("time", f"{result.seconds:.1f} s")
    by_name = Table("event", "count", title="Events by name", title_justify="left")
    by_name.columns[1].justify = "right"
    for name, n in summary.events_by_name.items():
        by_name.add_row(name, f"{n:,}")
    return Group(shop, by_name)


def simulation_table(
    result: SimulationResult, planted: float, global_control: dict[str, Any]
) -> Table:
    """The simulated days at a glance: what was sent, what customers did, what it earned."""
    table = Table(title="Simulated days (synthetic data)", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    counts = result.counts
    table.add_row("simulated", f"{result.start:%Y-%m-%d} → {result.end:%Y-%m-%d}")
    for name in sorted(k for k in counts if k.startswith("sent by ")):
        table.add_row(f"messages {name}", f"{counts[name]:,}")
    table.add_row("e-mails caught (real SMTP)", f"{counts['emails caught']:,}")
    for name in ("opens", "clicks", "unsubscribes"):
        table.add_row(name, f"{counts[name]:,}")
    table.add_row("orders caused by messages", f"{len(result.caused_orders):,}")
    table.add_row("revenue planted by the simulation", _money(planted))
    inc = global_control.get("incremental") or {}
    low, high = (inc.get("ci") or [None, None])[:2]
    if inc.get("value") is not None and low is not None and high is not None:
        measured = f"{_money(inc['value'])} (95% CI {_money(low)} to {_money(high)})"
    else:
        measured = "not measurable"
    table.add_row("incremental revenue measured (global control)", measured)
    table.add_row("shop events in the simulation", f"{result.shop_events:,}")
    table.add_row("time", f"{result.seconds:.1f} s (+ refresh {result.refresh_seconds:.1f} s)")
    return table
