"""When things happen at the demo bank: every login, application, purchase and call of the
bank's time, planned up front, as the shop's visits are (``schedule.py``).

A customer's story is a chain: an application, the decision hours later, a card delivered
and activated days later (or never: the case the application playbook is for), a first
purchase (or none: the activation playbook's case), then purchases at the customer's own
rate until they move their spending elsewhere (churn) while often still logging in (the
usage playbook's case). Cross-sell applications, re-scoring, support calls (in bursts,
for the repeat callers the support playbook looks for) run alongside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rapport.demo.bank_catalog import CARD, BankProduct
from rapport.demo.bank_people import BankCustomer
from rapport.demo.schedule import DAY, LAST_VISIT_BEFORE_END, MONTH, Visit, local_daytime

HOUR = 3600.0
SYNC, BROWSE, LOGIN, APPLY, DECIDE, ACTIVATE = (
    "sync",
    "browse",
    "login",
    "apply",
    "decide",
    "activate",
)
PURCHASE, BIG_PURCHASE, CALL, RESCORE = "purchase", "big_purchase", "call", "rescore"
STRANGER_CALL = "stranger_call"


@dataclass(frozen=True)
class BankRates:
    """The knobs of the bank's behaviour, documented in docs/demo.md."""

    apply_share: float = 0.8  # new customers who apply; the rest only look
    credit_first_share: float = 0.25  # a credit card as the first product
    activation: float = 0.8  # approved cards that get activated
    activation_days: float = 3.0  # mean, after delivery
    never_use: float = 0.12  # activated cards never used
    first_purchase_days: float = 4.0  # mean, after activation
    browse_per_month: float = 0.6
    cross_apply_per_month: float = 0.04
    lapsed_logins: float = 0.4  # share of the login rate kept after churn
    call_bursts_per_month: float = 0.03  # 2–4 calls within ten days: a problem unsolved
    declined_call: float = 0.3
    stranger_calls_per_customer_month: float = 0.01


@dataclass
class Application:
    id: str
    who: int
    product: BankProduct
    amount: float | None
    submitted: float
    decided: float
    approved: bool
    activated: float | None  # None: never (or after the end)
    card_id: str | None = None
    held_before: bool = False  # a product from before the history (synced, not applied for)


def application_amount(rng: np.random.Generator, product: BankProduct) -> float | None:
    """What an application asks for: log-uniform in the product's range, in thousands."""
    low, high = product.amount_range
    if not high:
        return None
    return round(float(np.exp(rng.uniform(np.log(low), np.log(high)))), -3)


# Where cross-sell goes by score band: (category, weight).
_CROSS = {
    "high": (("credit-cards", 0.35), ("loans", 0.25), ("savings", 0.2), ("insurance", 0.1), ("investments", 0.1)),
    "mid": (("savings", 0.4), ("insurance", 0.25), ("credit-cards", 0.15), ("investments", 0.2)),
    "low": (("savings", 0.5), ("insurance", 0.5)),
}  # fmt: skip


class Planner:
    """Plans one customer at a time: (moment, kind, the application it is about)."""

    def __init__(
        self,
        rng: np.random.Generator,
        catalog: list[BankProduct],
        t0: float,
        end: float,
        rates: BankRates,
    ) -> None:
        self.rng, self.t0, self.end, self.rates = rng, t0, end, rates
        self.catalog = catalog
        self.by_category: dict[str, list[BankProduct]] = {}
        for p in catalog:
            self.by_category.setdefault(p.category, []).append(p)
        self._plan: list[tuple[float, str, Application | None]] = []
        self._count = 0  # applications of the customer being planned

    def _product(self, category: str, at: float, score: int | None = None) -> BankProduct:
        """One on sale by then (and, given a score, one the bank gave to such a score)."""
        day = (at - self.t0) // DAY
        options = [p for p in self.by_category[category] if p.arrives_day <= day]
        if score is not None:
            options = [p for p in options if p.min_score <= score] or options
        return options[int(self.rng.integers(len(options)))]

    def _add(self, at: float, kind: str, app: Application | None = None) -> None:
        if self.t0 <= at < self.end - LAST_VISIT_BEFORE_END:
            self._plan.append((at, kind, app))

    def _daytime(self, c: BankCustomer, at: float) -> float:
        return max(local_daytime(self.rng, at, c.city.utc_offset_hours), c.arrives + 600.0)

    def _apply(self, c: BankCustomer, product: BankProduct, at: float) -> Application:
        rng, r = self.rng, self.rates
        amount = application_amount(rng, product)
        decided = at + float(rng.uniform(0.2, 26.0)) * HOUR
        approved = bool(c.score + rng.normal(0, 25) >= product.min_score and rng.random() < 0.97)
        activated: float | None = None
        if approved and product.kind == CARD:
            if rng.random() < r.activation:
                delivered = decided + float(rng.uniform(2.0, 7.0)) * DAY
                wait = float(rng.exponential(r.activation_days * DAY))
                activated = self._daytime(c, delivered + wait)
        elif approved and rng.random() < 0.85:  # the contract signed in the app
            activated = decided + float(rng.uniform(0.1, 48.0)) * HOUR
        if activated is not None and activated >= self.end - LAST_VISIT_BEFORE_END:
            activated = None
        self._count += 1
        app = Application(f"A-{c.user_id}-{self._count}", c.index, product, amount, at,
                          decided, approved, activated)  # fmt: skip
        if product.kind == CARD:
            app.card_id = f"card-{c.user_id}-{self._count}"
        self._add(self._daytime(c, at - float(rng.uniform(0.05, 2.0)) * HOUR), BROWSE, app)
        self._add(at, APPLY, app)
        self._add(decided, DECIDE, app)
        if activated is not None:
            self._add(activated, ACTIVATE, app)
        elif not approved and c.phone and rng.random() < r.declined_call:
            self._add(self._daytime(c, decided + float(rng.uniform(0.1, 2.0)) * DAY), CALL)
        return app

    def plan(self, c: BankCustomer) -> list[tuple[float, str, Application | None]]:
        """One customer's whole time, in time order."""
        rng, r, end = self.rng, self.rates, self.end
        self._plan = []
        self._count = 0
        card_since: float | None = None
        if c.known_before:
            main = self._product("debit-cards", self.t0, c.score)
            held = Application(f"A-{c.user_id}-0", c.index, main, None, self.t0, self.t0, True,
                               self.t0, f"card-{c.user_id}-0", held_before=True)  # fmt: skip
            self._add(self.t0, SYNC, held)
            card_since, since = self.t0, self.t0
        else:
            self._add(c.arrives, BROWSE)  # a first, anonymous look at the cards
            since = end
            if rng.random() < r.apply_share:
                at = self._daytime(c, c.arrives + float(rng.exponential(2 * DAY)))
                category = "credit-cards" if rng.random() < r.credit_first_share else "debit-cards"
                first = self._apply(c, self._product(category, at), at)
                since = at
                card_since = first.activated if first.product.kind == CARD else None
        if since >= end:
            return sorted(self._plan, key=lambda x: x[0])
        span = (end - since) / MONTH
        leave = end
        if card_since is not None:
            leave = card_since + float(rng.exponential(MONTH / max(c.churn_per_month, 1e-3)))
            self._purchases(c, card_since, min(leave, end), c.known_before)
        for at in rng.uniform(since, end, size=rng.poisson(c.logins_per_month * span)):
            if at < leave or rng.random() < r.lapsed_logins:
                self._add(self._daytime(c, float(at)), LOGIN)
        for at in rng.uniform(since, end, size=rng.poisson(r.browse_per_month * span)):
            self._add(self._daytime(c, float(at)), BROWSE)
        for month in range(1, int(span) + 1):
            self._add(since + month * MONTH + float(rng.uniform(0, DAY)), RESCORE)
        if card_since is not None:
            active = max(min(leave, end) - card_since, 0.0) / MONTH
            for at in rng.uniform(card_since, min(leave, end), size=rng.poisson(r.cross_apply_per_month * active)):  # fmt: skip
                at = self._daytime(c, float(at))
                self._apply(c, self._product(self._cross_category(c), at), at)
        if c.phone is not None:
            self._calls(c, since, span)
        return sorted(self._plan, key=lambda x: x[0])

    def _purchases(self, c: BankCustomer, active: float, until: float, used: bool) -> None:
        rng, r = self.rng, self.rates
        if not used:
            if rng.random() < r.never_use:
                return
            active += float(rng.exponential(r.first_purchase_days * DAY))
            if active >= until:
                return
            self._add(self._daytime(c, active), PURCHASE)
        months = (until - active) / MONTH
        for at in rng.uniform(active, until, size=rng.poisson(c.tx_per_month * months)):
            self._add(self._daytime(c, float(at)), PURCHASE)
        for at in rng.uniform(active, until, size=rng.poisson(c.big_per_month * months)):
            self._add(self._daytime(c, float(at)), BIG_PURCHASE)

    def _cross_category(self, c: BankCustomer) -> str:
        band = "high" if c.score >= 720 else "mid" if c.score >= 600 else "low"
        names = [name for name, _ in _CROSS[band]]
        weights = np.array([w for _, w in _CROSS[band]])
        return names[int(self.rng.choice(len(names), p=weights / weights.sum()))]

    def _calls(self, c: BankCustomer, since: float, span: float) -> None:
        rng = self.rng
        for at in rng.uniform(since, self.end, size=rng.poisson(c.calls_per_month * span)):
            self._add(self._daytime(c, float(at)), CALL)
        bursts = rng.poisson(self.rates.call_bursts_per_month * span)
        for first in rng.uniform(since, self.end, size=bursts):
            for _ in range(int(rng.integers(2, 5))):
                self._add(self._daytime(c, float(first + rng.uniform(0, 10 * DAY))), CALL)


def plan_bank(
    rng: np.random.Generator,
    clients: list[BankCustomer],
    catalog: list[BankProduct],
    t0: float,
    end: float,
    rates: BankRates,
) -> tuple[list[Visit], dict[int, Application]]:
    """Every visit of the bank's time in time order, and the application each one is about."""
    planner = Planner(rng, catalog, t0, end, rates)
    visits: list[Visit] = []
    applications: dict[int, Application] = {}
    seq = 0
    for client in clients:
        for at, kind, app in planner.plan(client):
            visits.append(Visit(at, seq, kind, client.index))
            if app is not None:
                applications[seq] = app
            seq += 1
    months = (end - t0) / MONTH
    for _ in range(int(rng.poisson(rates.stranger_calls_per_customer_month * len(clients) * months))):  # fmt: skip
        at = float(rng.uniform(t0, end - LAST_VISIT_BEFORE_END))
        visits.append(Visit(at, seq, STRANGER_CALL, -1))
        seq += 1
    visits.sort()
    return visits, applications
