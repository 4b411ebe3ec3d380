"""When things happen: every visit, purchase and call of the history, planned up front.

Planning all visits first and acting them out in time order keeps the generator simple and
deterministic: each visit is expanded into messages only when the simulated time reaches
it, so what a customer does can depend on what already happened (registered or not, what
is in the cart).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rapport.demo.people import Person

DAY = 86400.0
MONTH = 30 * DAY
# Visits start early enough that they end before "now"; later consequences past it are cut.
LAST_VISIT_BEFORE_END = 2 * 3600.0

# Share of sessions that start in each local hour: quiet nights, lunch and evening peaks.
_HOURLY = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 4, 4.5, 5, 6, 6, 5, 4.5, 4.5, 5, 6, 7, 8, 7.5, 5, 2.5]
)
_HOURLY = _HOURLY / _HOURLY.sum()

BROWSE = "browse"
PURCHASE = "purchase"
OFFLINE = "offline"
CALL = "call"
VISITOR = "visitor"
STRANGER_CALL = "stranger_call"
# The back office syncs customers it already had when the history starts.
SYNC = "sync"
# A purchase a message caused (demo/response.py), injected while the simulation runs.
RESPONSE = "response"


@dataclass(frozen=True, order=True)
class Visit:
    at: float
    seq: int
    kind: str
    who: int


@dataclass(frozen=True)
class Rates:
    """The knobs of behaviour, documented in docs/demo.md."""

    browse_base_per_month: float = 0.8
    browse_per_order: float = 3.5
    offline_share: float = 0.2
    calls_per_month: float = 0.12
    visitors_per_customer: float = 0.8
    stranger_calls_per_customer_month: float = 0.01
    quick_first_order: float = 0.35


def local_daytime(rng: np.random.Generator, moment: float, offset_hours: int) -> float:
    """The same local calendar day as ``moment``, at a typical shopping hour."""
    offset = offset_hours * 3600.0
    day = np.floor((moment + offset) / DAY) * DAY
    hour = int(rng.choice(24, p=_HOURLY))
    return float(day + hour * 3600.0 + rng.uniform(0, 3600.0) - offset)


def plan_person(
    rng: np.random.Generator, person: Person, end: float, rates: Rates
) -> tuple[list[tuple[float, str]], int]:
    """Purchases (BG/NBD: Poisson while alive, dropout after each), browsing, calls.

    Returns the plan in time order and the position of the visit where a new customer
    registers.
    """
    offset = person.city.utc_offset_hours
    start = person.arrives
    gap = MONTH / max(person.orders_per_month, 1e-3)
    purchases: list[float] = []
    t = start + (
        rng.uniform(0, 3 * DAY) if rng.random() < rates.quick_first_order else rng.exponential(gap)
    )
    alive_until = end
    if t >= end:
        alive_until = min(end, start + rng.exponential(75 * DAY))
    while t < end:
        purchases.append(t)
        if rng.random() < person.dropout:
            alive_until = t
            break
        t += rng.exponential(gap)

    def within(moment: float) -> float:
        """Moved to a shopping hour, after the person arrives and before the end."""
        at = local_daytime(rng, moment, offset)
        return min(max(at, start + 600.0), end - LAST_VISIT_BEFORE_END)

    plan: list[tuple[float, str]] = []
    for moment in purchases:
        offline = bool(person.city.store_ids) and rng.random() < rates.offline_share
        plan.append((within(moment), OFFLINE if offline else PURCHASE))

    browse_until = min(end, alive_until + 10 * DAY)
    months = max(browse_until - start, 0.0) / MONTH
    rate = rates.browse_base_per_month + rates.browse_per_order * person.orders_per_month
    for moment in rng.uniform(start, browse_until, size=rng.poisson(rate * months)):
        plan.append((within(moment), BROWSE))
    if person.known_before:
        plan.append((start, SYNC))
    else:
        plan.append((start, BROWSE))  # the first, anonymous visit
    if person.phone is not None:
        calls = rng.poisson(rates.calls_per_month * (end - start) / MONTH)
        for moment in rng.uniform(start, end, size=calls):
            plan.append((within(moment), CALL))
    plan.sort()
    # New customers register on their first purchase or, often, on an earlier visit.
    visits = [i for i, (_, kind) in enumerate(plan) if kind in (BROWSE, PURCHASE, OFFLINE)]
    first_purchase = next(
        (i for i, (_, kind) in enumerate(plan) if kind in (PURCHASE, OFFLINE)), None
    )
    early = visits[min(int(rng.geometric(0.4)), len(visits) - 1)] if visits else 0
    return plan, early if first_purchase is None else min(early, first_purchase)


def plan_all(
    rng: np.random.Generator,
    people: list[Person],
    start: float,
    end: float,
    rates: Rates,
) -> list[Visit]:
    """Every visit of the history in time order, customers, visitors and strangers alike."""
    visits: list[Visit] = []
    seq = 0
    for person in people:
        plan, signup = plan_person(rng, person, end, rates)
        person.signup_visit = seq + signup
        for at, kind in plan:
            visits.append(Visit(at, seq, kind, person.index))
            seq += 1
    visitors = round(rates.visitors_per_customer * len(people))
    for v in range(visitors):
        first = rng.uniform(start, end - 3600.0)
        for k in range(1 + int(rng.poisson(0.6))):
            at = first if k == 0 else first + rng.uniform(0, 21 * DAY)
            if at < end - LAST_VISIT_BEFORE_END:
                visits.append(Visit(at, seq, VISITOR, v))
                seq += 1
    months = (end - start) / MONTH
    for _ in range(
        int(rng.poisson(rates.stranger_calls_per_customer_month * len(people) * months))
    ):
        visits.append(
            Visit(float(rng.uniform(start, end - LAST_VISIT_BEFORE_END)), seq, STRANGER_CALL, -1)
        )
        seq += 1
    visits.sort()
    return visits
