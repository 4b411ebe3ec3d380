"""The Pareto/NBD model of repeat buying.

Schmittlein, D. C., Morrison, D. G. and Colombo, R. (1987), "Counting Your Customers: Who
Are They and What Will They Do Next?", Management Science 33 (1), 1–24; the likelihood,
P(alive) and conditional expectation as written in Fader, P. S. and Hardie, B. G. S.
(2005), "A Note on Deriving the Pareto/NBD Model and Related Expressions"
(brucehardie.com/notes/009), equations 18–20, 36–37 and 41.

While alive, a customer buys at the times of a Poisson process with rate λ, and stays
alive for an exponential time with rate μ, which may end at any moment (not only right
after a purchase, as in BG/NBD). Across customers λ ~ Gamma(r, α) and μ ~ Gamma(s, β).

    L = Γ(r+x) αʳ βˢ / Γ(r) · [ 1 / ((α+T)^(r+x) (β+T)ˢ) + s/(r+s+x) · A₀ ]

where A₀ is a difference of two Gauss hypergeometric terms, one at t_x and one at T. The
terms are evaluated once per distinct (x, t_x) and (x, T) and combined in log space; the
gradient is taken by central differences (the hypergeometric function has no cheap
derivative in its parameters), which the grouping keeps affordable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import gammaln, hyp2f1

from rapport.analytics.clv.fitting import (
    MIN_REPEAT_CUSTOMERS,
    FloatArray,
    IntArray,
    Patterns,
    as_rfm,
    distinct_rows,
    dot,
    maximize,
    per_distinct_history,
    require_repeaters,
    time_scale,
)

NAME = "Pareto/NBD"
PARAMS = ("r", "alpha", "s", "beta")


def _pairs(x: FloatArray, t: FloatArray) -> tuple[FloatArray, FloatArray, IntArray]:
    """Distinct (x, t) pairs and the index of each row's pair."""
    first, inverse = distinct_rows(x, t)
    return x[first], t[first], inverse


class _Data:
    def __init__(self, x: Any, t_x: Any, T: Any, w: Any, scale: float) -> None:
        self.x = np.asarray(x, dtype=np.float64)
        self.t_x = np.asarray(t_x, dtype=np.float64) * scale
        self.T = np.asarray(T, dtype=np.float64) * scale
        self.w = np.asarray(w, dtype=np.float64)
        self.total = float(self.w.sum())
        self.rec = _pairs(self.x, self.t_x)
        self.age = _pairs(self.x, self.T)


def _log_hyp_term(
    r: float, alpha: float, s: float, beta: float, x: FloatArray, t: FloatArray
) -> FloatArray:
    """log[ ₂F₁(r+s+x, ·; r+s+x+1; |α−β|/(max(α,β)+t)) / (max(α,β)+t)^(r+s+x) ]."""
    big, small = (alpha, beta) if alpha >= beta else (beta, alpha)
    second = s + 1 if alpha >= beta else r + x
    rsx = r + s + x
    q = big + t
    return np.log(hyp2f1(rsx, second, rsx + 1, (big - small) / q)) - rsx * np.log(q)


def _log_a0(params: FloatArray, d: _Data) -> FloatArray:
    """log A₀ (equations 19–20): the term at t_x minus the term at T, never negative."""
    r, alpha, s, beta = params
    rx, rt, ri = d.rec
    ax, at, ai = d.age
    at_recency = _log_hyp_term(r, alpha, s, beta, rx, rt)[ri]
    at_age = _log_hyp_term(r, alpha, s, beta, ax, at)[ai]
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.minimum(at_age - at_recency, 0.0)
        return at_recency + np.log(-np.expm1(gap))


def _log_alive_part(params: FloatArray, x: FloatArray, T: FloatArray) -> FloatArray:
    """log of Γ(r+x) αʳ βˢ / (Γ(r) (α+T)^(r+x) (β+T)ˢ): the 'still alive at T' term."""
    r, alpha, s, beta = params
    return (
        gammaln(r + x)
        - gammaln(r)
        + r * np.log(alpha)
        + s * np.log(beta)
        - (r + x) * np.log(alpha + T)
        - s * np.log(beta + T)
    )


def _conditional_ll(params: FloatArray, d: _Data) -> FloatArray:
    """Equation 18, per row."""
    r, alpha, s, beta = params
    x = d.x
    head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    alive = -(r + x) * np.log(alpha + d.T) - s * np.log(beta + d.T)
    gone = np.log(s) - np.log(r + s + x) + _log_a0(params, d)
    return head + np.logaddexp(alive, gone)


def _negative_mean_ll(log_params: FloatArray, d: _Data) -> float:
    with np.errstate(all="ignore"):
        ll = dot(d.w, _conditional_ll(np.exp(log_params), d))
    return -float(ll) / d.total if np.isfinite(ll) else np.inf


def log_likelihood(
    params: tuple[float, float, float, float], frequency: Any, recency: Any, T: Any
) -> float:
    """The log-likelihood of the customers at ``(r, α, s, β)``, in their time unit."""
    x, t_x, age = as_rfm(frequency, recency, T)
    p = Patterns.of(x, t_x, age)
    d = _Data(p.frequency, p.recency, p.T, p.weights, 1.0)
    return -_negative_mean_ll(np.log(np.asarray(params, dtype=np.float64)), d) * d.total


@dataclass(frozen=True)
class ParetoNBDModel:
    """A fitted (or given) Pareto/NBD model; time in the unit of the data it was fitted to."""

    r: float
    alpha: float
    s: float
    beta: float
    log_likelihood: float = float("nan")
    customers: int = 0
    repeat_customers: int = 0
    iterations: int = 0
    standard_errors: dict[str, float] = field(default_factory=dict)

    name = NAME

    @property
    def params(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "s": self.s, "beta": self.beta}

    @property
    def _vector(self) -> FloatArray:
        return np.array([self.r, self.alpha, self.s, self.beta])

    @classmethod
    def fit(
        cls,
        frequency: Any,
        recency: Any,
        T: Any,
        *,
        min_repeat_customers: int = MIN_REPEAT_CUSTOMERS,
    ) -> ParetoNBDModel:
        x, t_x, age = as_rfm(frequency, recency, T)
        return cls.fit_patterns(Patterns.of(x, t_x, age), min_repeat_customers=min_repeat_customers)

    @classmethod
    def fit_patterns(
        cls, patterns: Patterns, *, min_repeat_customers: int = MIN_REPEAT_CUSTOMERS
    ) -> ParetoNBDModel:
        require_repeaters(patterns.customers, patterns.repeat_customers, min_repeat_customers, NAME)
        p = patterns
        scale = time_scale(p.T)
        d = _Data(p.frequency, p.recency, p.T, p.weights, scale)
        best = maximize(
            NAME,
            PARAMS,
            lambda lp: _negative_mean_ll(lp, d),
            np.zeros(4),
            customers=d.total,
            gradient=False,
            units=np.array([1, 1 / scale, 1, 1 / scale]),
        )
        r, alpha, s, beta = best.params
        alpha, beta = alpha / scale, beta / scale
        unscaled = _Data(p.frequency, p.recency, p.T, p.weights, 1.0)
        ll = -_negative_mean_ll(np.log([r, alpha, s, beta]), unscaled) * unscaled.total
        return cls(
            float(r),
            float(alpha),
            float(s),
            float(beta),
            log_likelihood=ll,
            customers=p.customers,
            repeat_customers=p.repeat_customers,
            iterations=best.iterations,
            standard_errors=best.standard_errors(PARAMS, np.array([r, alpha, s, beta])),
        )

    def _log_alive(self, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
        d = _Data(x, t_x, T, np.ones_like(x), 1.0)
        with np.errstate(all="ignore"):
            return _log_alive_part(self._vector, x, T) - _conditional_ll(self._vector, d)

    def conditional_probability_alive(self, frequency: Any, recency: Any, T: Any) -> FloatArray:
        """P(alive | x, t_x, T), equation 36: the 'alive at T' share of the likelihood."""
        x, t_x, age = _arrays(frequency, recency, T)
        return np.exp(self._log_alive(x.ravel(), t_x.ravel(), age.ravel())).reshape(x.shape)

    def conditional_expected_number_of_purchases_up_to_time(
        self, t: Any, frequency: Any, recency: Any, T: Any
    ) -> FloatArray:
        """E[Y(t) | x, t_x, T], equation 41: P(alive) times the purchases expected while
        alive. ``t`` may be a number or a 1-D array of horizons (then a row per horizon)."""
        alive = self.conditional_probability_alive(frequency, recency, T)
        return alive * self.expected_purchases_while_alive(t, frequency, T)

    def expected_purchases_while_alive(self, t: Any, frequency: Any, T: Any) -> FloatArray:
        """(r+x)(β+T) / ((α+T)(s−1)) · [1 − ((β+T)/(β+T+t))^(s−1)], per distinct (x, T)."""
        return per_distinct_history(self._while_alive, t, frequency, T)

    def _while_alive(self, t: FloatArray, x: FloatArray, T: FloatArray) -> FloatArray:
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        log_y = np.log((beta + T) / (beta + T + t))
        # [1 − y^(s−1)] / (s−1), whose limit as s → 1 is −log y.
        lasting = -log_y if abs(s - 1) < 1e-12 else -np.expm1((s - 1) * log_y) / (s - 1)
        return (r + x) * (beta + T) / (alpha + T) * lasting

    def expected_number_of_purchases_up_to_time(self, t: Any) -> FloatArray:
        """E[X(t)] for a customer just acquired (equation 27 of the note)."""
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        t = np.asarray(t, dtype=np.float64)
        return r * beta / (alpha * (s - 1)) * (1 - (beta / (beta + t)) ** (s - 1))


def _arrays(frequency: Any, recency: Any, T: Any) -> tuple[FloatArray, FloatArray, FloatArray]:
    return (
        np.asarray(frequency, dtype=np.float64),
        np.asarray(recency, dtype=np.float64),
        np.asarray(T, dtype=np.float64),
    )
