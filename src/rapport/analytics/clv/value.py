"""Discounted customer lifetime value over a horizon, from a purchase model and a spend
model, as lifetimes' ``customer_lifetime_value`` computes it.

The horizon is cut into months; the purchases expected in month i (the conditional
expectation up to the end of month i minus that up to its start) are valued at the
customer's expected spend per purchase and discounted by (1 + d)^i:

    CLV = Σ_{i=1..H} E[M] · (E[Y(i·f)] − E[Y((i−1)·f)]) / (1 + d)^i

with f the length of a month in the model's time unit (30 days, or 4.345 weeks: the
factors lifetimes uses, so the figures agree). The expectation is taken once per horizon
for all customers at once, so the whole computation is a handful of vector operations.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from rapport.analytics.clv.fitting import FloatArray, distinct_rows
from rapport.analytics.clv.gammagamma import GammaGammaModel
from rapport.errors import InvalidInput, Problem

# The length of a month in each time unit.
MONTH: dict[str, float] = {"day": 30.0, "week": 4.345}


class PurchaseModel(Protocol):
    """What BG/NBD and Pareto/NBD both answer."""

    name: str

    @property
    def params(self) -> dict[str, float]: ...

    def conditional_probability_alive(self, frequency: Any, recency: Any, T: Any) -> FloatArray: ...

    def conditional_expected_number_of_purchases_up_to_time(
        self, t: Any, frequency: Any, recency: Any, T: Any
    ) -> FloatArray: ...

    def expected_purchases_while_alive(self, t: Any, frequency: Any, T: Any) -> FloatArray: ...


def check_horizon(months: int, monthly_discount: float, time_unit: str) -> None:
    problems = []
    if not isinstance(months, int) or isinstance(months, bool) or not 1 <= months <= 600:
        problems.append(Problem("horizon_months", "must be a whole number from 1 to 600"))
    if not 0 <= monthly_discount < 1:
        problems.append(Problem("monthly_discount", "must be at least 0 and below 1"))
    if time_unit not in MONTH:
        problems.append(Problem("time_unit", f"use one of {', '.join(MONTH)}"))
    if problems:
        raise InvalidInput(problems)


def discounted_purchases(
    model: PurchaseModel,
    frequency: Any,
    recency: Any,
    T: Any,
    *,
    months: int = 12,
    monthly_discount: float = 0.01,
    time_unit: str = "day",
) -> FloatArray:
    """Σ_i (E[Y(i·f)] − E[Y((i−1)·f)]) / (1+d)^i: the CLV of one unit of spend."""
    check_horizon(months, monthly_discount, time_unit)
    x = np.asarray(frequency, dtype=np.float64)
    age = np.asarray(T, dtype=np.float64)
    alive = model.conditional_probability_alive(x, recency, age)
    # E[Y(t)] = P(alive) · G(t; x, T): the discounted sum of G's monthly increments is
    # computed once per distinct (x, T) and scaled by each customer's P(alive).
    first, inverse = distinct_rows(x.ravel(), np.broadcast_to(age, x.shape).ravel())
    steps = np.arange(months + 1, dtype=np.float64)
    cumulative = model.expected_purchases_while_alive(
        steps * MONTH[time_unit], x.ravel()[first], np.broadcast_to(age, x.shape).ravel()[first]
    )
    cumulative[0] = 0.0  # nothing is bought in no time
    discount = (1.0 + monthly_discount) ** -steps[1:]
    per_history = (discount[:, None] * np.diff(cumulative, axis=0)).sum(axis=0)
    return alive * per_history[inverse].reshape(alive.shape)


def customer_lifetime_value(
    model: PurchaseModel,
    spend: GammaGammaModel,
    frequency: Any,
    recency: Any,
    T: Any,
    monetary_value: Any,
    *,
    months: int = 12,
    monthly_discount: float = 0.01,
    time_unit: str = "day",
) -> FloatArray:
    """Discounted value of each customer's purchases over the next ``months`` months."""
    expected_spend = spend.conditional_expected_average_profit(frequency, monetary_value)
    units = discounted_purchases(
        model,
        frequency,
        recency,
        T,
        months=months,
        monthly_discount=monthly_discount,
        time_unit=time_unit,
    )
    return expected_spend * units
