"""Customers drawn from the models' own stories, for tests, benchmarks and demos.

Each function follows the generative process of its paper step by step (not the
likelihood), vectorised over customers, so a fit that recovers the parameters it was
given checks the likelihood against an independent description of the model:

- BG/NBD: λ ~ Gamma(r, α), p ~ Beta(a, b); purchases arrive as Poisson(λ) and after each
  repeat purchase the customer stops with probability p.
- Pareto/NBD: λ ~ Gamma(r, α), μ ~ Gamma(s, β); purchases arrive as Poisson(λ) during an
  exponential lifetime with rate μ.
- Gamma-Gamma: ν ~ Gamma(q, γ); each transaction is worth Gamma(p, ν).

Given N purchases in (0, h], their times are uniform on it, so the time of the x-th is
h · Beta(x, N − x + 1) and the ones before it are uniform on (0, t_x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rapport.analytics.clv.fitting import FloatArray, IntArray


def _last_of(rng: np.random.Generator, x: IntArray, n: IntArray, h: FloatArray) -> FloatArray:
    """Time of the x-th of n uniform arrivals on (0, h]; 0 when x = 0."""
    safe_x = np.maximum(x, 1)
    return np.where(x > 0, h * rng.beta(safe_x, np.maximum(n - x + 1, 1)), 0.0)


def bgnbd_histories(
    rng: np.random.Generator, T: FloatArray, r: float, alpha: float, a: float, b: float
) -> tuple[IntArray, FloatArray]:
    """(x, t_x) of customers observed for ``T`` under BG/NBD."""
    rate = rng.gamma(r, 1.0 / alpha, len(T))
    dropout = rng.beta(a, b, len(T))
    arrivals = rng.poisson(rate * T)
    stops_after = rng.geometric(dropout)  # repeat purchases until the one after which they stop
    x = np.minimum(arrivals, stops_after).astype(np.int64)
    return x, _last_of(rng, x, arrivals, T)


def paretonbd_histories(
    rng: np.random.Generator, T: FloatArray, r: float, alpha: float, s: float, beta: float
) -> tuple[IntArray, FloatArray]:
    """(x, t_x) of customers observed for ``T`` under Pareto/NBD."""
    rate = rng.gamma(r, 1.0 / alpha, len(T))
    death = rng.gamma(s, 1.0 / beta, len(T))
    lifetime = rng.exponential(1.0 / death)
    active = np.minimum(lifetime, T)
    x = rng.poisson(rate * active).astype(np.int64)
    return x, _last_of(rng, x, x, active)


def spend_rates(rng: np.random.Generator, n: int, q: float, gamma: float) -> FloatArray:
    """Each customer's ν: their transactions are worth Gamma(p, ν), mean p/ν."""
    return rng.gamma(q, 1.0 / gamma, n)


def mean_spend(
    rng: np.random.Generator, x: IntArray, p: float, q: float, gamma: float
) -> FloatArray:
    """m̄ of x transactions per customer under Gamma-Gamma (0 where x = 0)."""
    nu = spend_rates(rng, len(x), q, gamma)
    total = rng.gamma(np.maximum(p * x, 1e-300), 1.0 / nu)
    return np.where(x > 0, total / np.maximum(x, 1), 0.0)


@dataclass(frozen=True)
class SimulatedTransactions:
    customer: IntArray
    day: IntArray  # days since 1970-01-01
    amount: FloatArray
    observation_end: int  # day


def bgnbd_gammagamma_transactions(
    rng: np.random.Generator,
    customers: int,
    *,
    r: float,
    alpha: float,
    a: float,
    b: float,
    p: float,
    q: float,
    gamma: float,
    acquisition_days: int = 365,
    observation_end: int = 20_000,
) -> SimulatedTransactions:
    """Transactions of customers acquired uniformly over ``acquisition_days`` before
    ``observation_end``, buying as BG/NBD (rates per day) and spending as Gamma-Gamma."""
    T = rng.uniform(0.0, acquisition_days, customers)
    x, t_x = bgnbd_histories(rng, T, r, alpha, a, b)
    per_customer = x + 1
    who = np.repeat(np.arange(customers, dtype=np.int64), per_customer)
    starts = np.r_[0, np.cumsum(per_customer)[:-1]]
    # First purchase at 0, the last repeat at t_x, the others uniform before it.
    offset = rng.random(len(who)) * np.repeat(t_x, per_customer)
    offset[starts] = 0.0
    repeaters = x > 0
    offset[(starts + x)[repeaters]] = t_x[repeaters]
    first = observation_end - T
    day = np.floor(np.repeat(first, per_customer) + offset).astype(np.int64)
    nu = spend_rates(rng, customers, q, gamma)
    amount = np.round(rng.gamma(p, 1.0, len(who)) / nu[who], 2)
    return SimulatedTransactions(who, day, amount, observation_end)
