"""The bank's summaries in the terminal: the shop's figures (``summary.py``), in a bank's
words, with the events the bank playbooks read counted beside them."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table

from rapport.demo.bank_catalog import CURRENCY
from rapport.demo.generator import GenerationResult
from rapport.demo.simulate import SimulationResult
from rapport.demo.summary import DemoSummary

# Events the bank playbooks trigger on or wait for, in the order of a customer's story.
PLAYBOOK_EVENTS = (
    "Application Submitted",
    "Application Approved",
    "Card Activated",
    "Transaction Made",
    "Login",
    "Support Call",
    "Push Subscribed",
)


def _money(value: float) -> str:
    return f"{value:,.0f} {CURRENCY}".replace(",", " ")


def _table(title: str) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    return table


def render_bank(summary: DemoSummary, result: GenerationResult | None = None) -> Group:
    """The bank at a glance, then events by name."""
    bank = _table("Demo bank (synthetic data)")
    if result is not None:
        bank.add_row("history", f"{result.start:%Y-%m-%d} → {result.end:%Y-%m-%d}")
        bank.add_row("customers generated", f"{result.people:,}")
        bank.add_row("products", f"{result.products:,}")
    bank.add_row("profiles in the store", f"{summary.profiles:,}")
    bank.add_row("identified (have a user id)", f"{summary.identified_share:.1%}")
    bank.add_row("anonymous profiles merged", f"{summary.merged:,}")
    for name in PLAYBOOK_EVENTS:
        bank.add_row(name, f"{summary.events_by_name.get(name, 0):,}")
    purchases = summary.orders_by_status.get("completed", 0)
    bank.add_row("card purchases (orders)", f"{purchases:,}")
    bank.add_row("card spend", _money(summary.revenue))
    bank.add_row("average purchase", _money(summary.revenue / max(purchases, 1)))
    bank.add_row(
        "cardholders with 2+ purchases", f"{summary.repeat_share:.1%} of {summary.buyers:,}"
    )
    if result is not None:
        bank.add_row("messages sent", f"{result.messages:,}")
        bank.add_row("duplicates dropped", f"{result.duplicates_dropped:,}")
        bank.add_row("events stored", f"{result.stored:,}")
        bank.add_row("events/s achieved", f"{result.events_per_second:,.0f}")
        bank.add_row("time", f"{result.seconds:.1f} s")
    by_name = Table("event", "count", title="Events by name", title_justify="left")
    by_name.columns[1].justify = "right"
    for name, n in summary.events_by_name.items():
        by_name.add_row(name, f"{n:,}")
    return Group(bank, by_name)


def simulation_table_bank(
    result: SimulationResult, planted: float, global_control: dict[str, Any]
) -> Table:
    """The simulated days at a glance, in a bank's words."""
    table = _table("Simulated days at the bank (synthetic data)")
    counts = result.counts
    table.add_row("simulated", f"{result.start:%Y-%m-%d} → {result.end:%Y-%m-%d}")
    for name in sorted(k for k in counts if k.startswith("sent by ")):
        table.add_row(f"messages {name}", f"{counts[name]:,}")
    table.add_row("e-mails caught (real SMTP)", f"{counts['emails caught']:,}")
    for name in ("opens", "clicks", "unsubscribes"):
        table.add_row(name, f"{counts[name]:,}")
    table.add_row("purchases and applications caused", f"{counts['purchases caused']:,}")
    table.add_row("card purchases caused by messages", f"{len(result.caused_orders):,}")
    table.add_row("card spend planted by the simulation", _money(planted))
    inc = global_control.get("incremental") or {}
    low, high = (inc.get("ci") or [None, None])[:2]
    if inc.get("value") is not None and low is not None and high is not None:
        measured = f"{_money(inc['value'])} (95% CI {_money(low)} to {_money(high)})"
    else:
        measured = "not measurable"
    table.add_row("incremental card spend measured (global control)", measured)
    table.add_row("bank events in the simulation", f"{result.shop_events:,}")
    table.add_row("time", f"{result.seconds:.1f} s (+ refresh {result.refresh_seconds:.1f} s)")
    return table
