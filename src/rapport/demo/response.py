"""How the demo's customers answer the messages they get: the simulation's response model.

Nothing here is measured from real people: it is a model with stated parameters, chosen so
that what marketers expect of CRM shows up and can be measured by Rapport's own analytics.

* **Relevance** R (0–1) is a weighted sum of three fits: *segment fit* (is the message for
  someone like them: a win-back for a lapsing customer, a cart reminder for someone with a
  cart), *recommendation fit* (are the products in the message in their favourite
  categories) and the *discount* it offers.
* **Fatigue** F is how many messages they received in the seven days before this one.
* P(open) = (open_base + open_relevance·R) / (1 + open_fatigue·F)
* P(click | open) = (click_base + click_relevance·R) / (1 + click_fatigue·F)
* P(unsubscribe | opened, not clicked) = unsubscribe_base + unsubscribe_fatigue·F
* P(order | click) = buy_base + buy_relevance·R: an order *on top of* the customer's own
  buying process, a few hours to days after the click. That order is the true incremental
  effect the simulation plants; control groups, which get no message, show none of it.

docs/demo.md lists every parameter with its default; ``ResponseModel`` holds them, so a
caller can run the same shop with a more (or less) responsive population.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rapport.demo.catalog import CATEGORIES
from rapport.demo.people import Person

DAY = 86400.0
_CATEGORY_INDEX = {c.id: i for i, c in enumerate(CATEGORIES)}

# Segment fit by playbook (the scenario name without "playbook-"): how well the message
# suits whoever gets it, before anything is known about them. ``_segment_fit`` refines
# the ones that depend on the customer's state.
SEGMENT_FIT: dict[str, float] = {
    "abandoned-cart": 0.9,
    "abandoned-browse": 0.7,
    "welcome": 0.6,
    "cross-sell": 0.6,
    "reactivation": 0.4,
    "win-back": 0.3,
    "birthday": 0.6,
    "opened-not-clicked": 0.4,
    "service-offer": 0.3,
    "early-access": 0.4,
}
# What a message offers, as a share of the price: the library's bonus and personal
# discounts (a campaign variant states its own in the strategy file).
TEMPLATE_DISCOUNT: dict[str, float] = {
    "playbook-browse": 0.10,
    "playbook-win-back": 0.10,
    "playbook-welcome-3": 0.05,
    "playbook-birthday": 0.15,
}


@dataclass(frozen=True)
class ResponseModel:
    """The parameters (docs/demo.md, "The response model")."""

    weight_segment: float = 0.5
    weight_recommendation: float = 0.3
    weight_discount: float = 0.2
    discount_full: float = 0.20  # a discount this large counts as fully relevant
    open_base: float = 0.12
    open_relevance: float = 0.40
    open_fatigue: float = 0.15
    click_base: float = 0.05
    click_relevance: float = 0.35
    click_fatigue: float = 0.10
    unsubscribe_base: float = 0.002
    unsubscribe_fatigue: float = 0.006
    buy_base: float = 0.10
    buy_relevance: float = 0.40
    fatigue_days: float = 7.0
    open_delay_hours: float = 5.0  # mean; exponential
    buy_delay_hours: float = 30.0  # mean after the first two hours; exponential
    no_products_fit: float = 0.3  # recommendation fit of a message that shows no product


@dataclass(frozen=True)
class Delivered:
    """One message as it reached the customer, with what the model reads from it."""

    key: str  # the outbox idempotency key
    channel: str
    at: float  # seconds since the epoch
    playbook: str | None  # "win-back" for scenario playbook-win-back; None otherwise
    template: str | None
    campaign_fit: float | None  # a campaign's own segment fit (strategy file)
    discount: float
    categories: tuple[str, ...]  # of the products shown in it


@dataclass(frozen=True)
class Reaction:
    """What the customer does with one e-mail; times are seconds since the epoch."""

    opened_at: float | None = None
    clicked_at: float | None = None
    unsubscribed_at: float | None = None
    buys_at: float | None = None
    category: str | None = None  # what the caused order is for
    relevance: float = 0.0
    fatigue: int = 0


def favourite_fit(person: Person, categories: Sequence[str], model: ResponseModel) -> float:
    """The best product's category weight against the customer's favourite one (0–1)."""
    known = [_CATEGORY_INDEX[c] for c in categories if c in _CATEGORY_INDEX]
    if not known:
        return model.no_products_fit
    weights = person.category_weights
    return float(max(weights[i] for i in known) / weights.max())


def _segment_fit(person: Person, message: Delivered, now: float) -> float:
    """How well the message's audience describes this customer."""
    if message.campaign_fit is not None:
        return message.campaign_fit
    name = message.playbook
    if name is None:
        return 0.4
    base = SEGMENT_FIT.get(name, 0.4)
    since_order = (now - person.last_order) / DAY if person.last_order else None
    usual_gap = 30.0 / max(person.orders_per_month, 0.05)
    if name in ("win-back", "reactivation") and since_order is not None:
        # A lapse is long only against the customer's own rhythm.
        return 0.9 if since_order > 1.5 * usual_gap else base
    if name == "welcome":
        return 0.8 if person.orders <= 2 else 0.3
    if name == "early-access":
        return 0.8 if person.orders_per_month >= 0.5 else base
    return base


def relevance(person: Person, message: Delivered, model: ResponseModel) -> float:
    seg = _segment_fit(person, message, message.at)
    rec = favourite_fit(person, message.categories, model)
    disc = min(message.discount / model.discount_full, 1.0) if model.discount_full > 0 else 0.0
    return (
        model.weight_segment * seg
        + model.weight_recommendation * rec
        + model.weight_discount * disc
    )


def react(
    person: Person,
    message: Delivered,
    fatigue: int,
    model: ResponseModel,
    rng: np.random.Generator,
) -> Reaction:
    """Draw what one customer does with one e-mail (the same draws for every outcome, so a
    customer's luck does not depend on which branch they took)."""
    r = relevance(person, message, model)
    u_open, u_click, u_unsub, u_buy = rng.random(4)
    open_delay = 300.0 + float(rng.exponential(model.open_delay_hours * 3600.0))
    click_delay = float(rng.uniform(20.0, 600.0))
    buy_delay = 2 * 3600.0 + float(rng.exponential(model.buy_delay_hours * 3600.0))
    p_open = (model.open_base + model.open_relevance * r) / (1 + model.open_fatigue * fatigue)
    if u_open >= min(p_open, 1.0):
        return Reaction(relevance=r, fatigue=fatigue)
    opened = message.at + open_delay
    p_click = (model.click_base + model.click_relevance * r) / (1 + model.click_fatigue * fatigue)
    if u_click >= min(p_click, 1.0):
        p_unsub = model.unsubscribe_base + model.unsubscribe_fatigue * fatigue
        if u_unsub < min(p_unsub, 1.0):
            return Reaction(opened, None, opened + click_delay, relevance=r, fatigue=fatigue)
        return Reaction(opened, relevance=r, fatigue=fatigue)
    clicked = opened + click_delay
    p_buy = model.buy_base + model.buy_relevance * r
    if u_buy >= min(p_buy, 1.0):
        return Reaction(opened, clicked, relevance=r, fatigue=fatigue)
    category = None
    if message.categories:
        category = message.categories[int(rng.integers(len(message.categories)))]
    return Reaction(opened, clicked, None, clicked + buy_delay, category, r, fatigue)
