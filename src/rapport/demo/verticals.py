"""What differs between the demo's businesses (``--vertical shop|bank``), in one place:
how the history is made, which simulation runs it, the default strategy and its playbook
pack, and the words the terminal and the report use for what analytics calls orders.
"""

from __future__ import annotations

from dataclasses import dataclass

from rapport.demo.bank_history import BankHistory
from rapport.demo.bank_simulate import BANK_DEFAULT, BankSimulation
from rapport.demo.generator import DemoConfig, History
from rapport.demo.simulate import Simulation
from rapport.demo.strategy import DEFAULT, Strategy


@dataclass(frozen=True)
class Words:
    business: str  # "a clothing and footwear shop"
    revenue: str  # what the orders' total is called
    orders: str  # what an order is called, plural
    events: str  # the business's own events, in the simulation table


SHOP_WORDS = Words("a clothing and footwear shop", "revenue", "orders", "shop events")
BANK_WORDS = Words("a retail bank", "card spend", "card purchases", "bank events")
WORDS = {"shop": SHOP_WORDS, "bank": BANK_WORDS}
PACKS = {"shop": "retail", "bank": "bank"}


def make_history(config: DemoConfig) -> History:
    """The planned business of ``config.vertical``."""
    if config.vertical == "bank":
        return BankHistory(config)
    return History(config)


def simulation_class(vertical: str) -> type[Simulation]:
    if vertical == "bank":
        return BankSimulation
    return Simulation


def default_strategy(vertical: str) -> Strategy:
    if vertical == "bank":
        return BANK_DEFAULT
    return DEFAULT
