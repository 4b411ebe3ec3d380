"""The demo bank's customers: the shop's people (names, cities, phones, birthdays,
consents), each with a bank's view of them added.

Heterogeneity follows the same models as the shop's, read for a card: each cardholder pays
at their own Poisson rate (gamma across customers), moves their everyday spending
elsewhere after an exponentially distributed time whose monthly hazard is drawn from a
beta distribution (churn), and spends around their own mean ticket (gamma). The credit
score (300–850) is a beta draw stretched over the scale; app users log in at their own
rate (gamma) and get push messages, the others use the website now and then.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date
from typing import Any

import numpy as np

from rapport.demo.people import Person, build_population

SCORE_LOW, SCORE_HIGH = 300, 850
EPOCH = date(1970, 1, 1)
TICKET = 1500.0  # RUB: the population's mean ticket (one card purchase)


@dataclass
class BankCustomer(Person):
    """A person with a bank's parameters, and what the bank knows of them so far."""

    score: int = 650
    app_user: bool = False
    platform: str = "android"
    tx_per_month: float = 0.0
    churn_per_month: float = 0.0
    ticket: float = TICKET
    big_per_month: float = 0.0  # purchases of 30 000 RUB and more, on top of the rest
    logins_per_month: float = 0.0
    calls_per_month: float = 0.0
    # What the bank knows, updated as things happen.
    cards: list[str] = field(default_factory=list)  # active cards, the main one first
    products: set[str] = field(default_factory=set)  # product ids held
    subscribed: bool = False  # the app sent its push token


def build_clients(
    rng: np.random.Generator, count: int, start: float, end: float
) -> list[BankCustomer]:
    """``count`` customers; those the shop model calls "known before" hold a debit card
    from before the history starts, the others arrive and apply during it."""
    people = build_population(rng, count, start, end)
    clients = []
    for person in people:
        age = (end / 86400 - (person.birthday - EPOCH).days) / 365.25
        app_user = bool(rng.random() < (0.75 if age < 45 else 0.5))
        tx = float(rng.gamma(1.2, 5.0))
        ticket = TICKET * float(rng.gamma(3.0, 1 / 3))
        churn = float(rng.beta(1.2, 14.0))
        score = round(SCORE_LOW + (SCORE_HIGH - SCORE_LOW) * float(rng.beta(6.0, 2.6)))
        logins = float(rng.gamma(2.0, 4.0)) if app_user else float(rng.gamma(1.5, 1.0))
        consents = dict(person.consents)
        consents["push"] = False  # set by the app's push subscription, not by a form
        base: dict[str, Any] = {f.name: getattr(person, f.name) for f in fields(Person)}
        clients.append(
            BankCustomer(
                **base,
                score=score,
                app_user=app_user,
                platform="ios" if rng.random() < 0.4 else "android",
                tx_per_month=tx,
                churn_per_month=churn,
                ticket=ticket,
                big_per_month=float(rng.gamma(1.0, 0.2)) * ticket / TICKET,
                logins_per_month=logins,
                calls_per_month=float(rng.gamma(1.0, 0.2)) if person.phone else 0.0,
            )
        )
        client = clients[-1]
        client.consents = consents
        # What the response model reads (purchases a month, churn, spend) in bank terms.
        client.orders_per_month = tx
        client.dropout = churn
        client.spend_level = ticket / TICKET
        client.registered = person.known_before
    return clients
