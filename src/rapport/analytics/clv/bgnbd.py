"""The BG/NBD model of repeat buying.

Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005), "'Counting Your Customers' the Easy
Way: An Alternative to the Pareto/NBD Model", Marketing Science 24 (2), 275–284; the
probability alive from Fader, Hardie and Lee (2008), "Computing P(alive) Using the BG/NBD
Model" (brucehardie.com/notes/021).

While alive, a customer buys at the times of a Poisson process with rate λ; after each
purchase they drop out for good with probability p. Across customers λ ~ Gamma(r, α) and
p ~ Beta(a, b). For a customer with x repeat purchases, the last at t_x, observed for T:

    L = Γ(r+x) αʳ / (Γ(r) (α+T)^(r+x)) · B(a, b+x) / B(a, b)
        + δ(x>0) Γ(r+x) αʳ / (Γ(r) (α+t_x)^(r+x)) · B(a+1, b+x−1) / B(a, b)

(equation 6 of the paper). The log-likelihood is written as in its section 7 so it is
stable for large x, and its gradient is analytic, so the search needs no finite
differences. Customers are grouped into distinct histories (``fitting.Patterns``), and the
terms that depend on x alone are summed once per distinct x.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import digamma, expit, gammaln, hyp2f1

from rapport.analytics.clv.fitting import (
    MIN_REPEAT_CUSTOMERS,
    FloatArray,
    Patterns,
    as_rfm,
    dot,
    maximize,
    per_distinct_history,
    require_repeaters,
    time_scale,
)

NAME = "BG/NBD"
PARAMS = ("r", "alpha", "a", "b")


class _Data:
    """The patterns with what each likelihood evaluation would otherwise recompute."""

    def __init__(self, p: Patterns, scale: float) -> None:
        self.x = p.frequency.astype(np.float64)
        self.t_x = p.recency * scale
        self.T = p.T * scale
        self.w = p.weights
        self.total = float(p.weights.sum())
        self.repeat = p.frequency > 0
        self.x_minus_1 = np.maximum(self.x, 1.0) - 1.0  # b + x − 1 is only read when x > 0
        per_x = np.bincount(p.frequency, weights=p.weights)
        self.ux_f = np.flatnonzero(per_x).astype(np.float64)  # the distinct x
        self.ux_w = per_x[per_x > 0]  # customers with each


def _mean_ll_and_gradient(log_params: FloatArray, d: _Data) -> tuple[float, FloatArray]:
    r, alpha, a, b = np.exp(log_params)
    ux, uw, W = d.ux_f, d.ux_w, d.total
    # Terms that depend on x alone (A₁ and A₂ of section 7), once per distinct x.
    a1 = dot(uw, gammaln(r + ux)) - W * gammaln(r) + W * r * np.log(alpha)
    a2 = dot(uw, gammaln(b + ux) - gammaln(a + b + ux)) + W * (gammaln(a + b) - gammaln(b))
    log_at = np.log(alpha + d.T)
    log_atx = np.log(alpha + d.t_x)
    rx = r + d.x
    d1 = -rx * log_at  # A₃: alive at T
    with np.errstate(divide="ignore"):
        d2 = np.where(
            d.repeat, np.log(a) - np.log(b + d.x_minus_1) - rx * log_atx, -np.inf
        )  # A₄: dropped out after the last purchase
    mix = np.logaddexp(d1, d2)
    ll = a1 + a2 + dot(d.w, mix)
    omega = np.exp(d2 - mix)  # share of the likelihood from "dropped out"; 0 when x = 0
    w_omega = d.w * omega
    grad_r = (
        dot(uw, digamma(r + ux))
        - W * digamma(r)
        + W * np.log(alpha)
        - dot(d.w, log_at)
        + dot(w_omega, log_at - log_atx)
    )
    inv_at = 1.0 / (alpha + d.T)
    inv_atx = 1.0 / (alpha + d.t_x)
    grad_alpha = W * r / alpha - dot(d.w * rx, inv_at + omega * (inv_atx - inv_at))
    psi_abx = dot(uw, digamma(a + b + ux))
    grad_a = W * digamma(a + b) - psi_abx + w_omega.sum() / a
    grad_b = (
        dot(uw, digamma(b + ux))
        + W * (digamma(a + b) - digamma(b))
        - psi_abx
        - dot(w_omega, 1.0 / (b + d.x_minus_1))
    )
    grad = np.array([grad_r * r, grad_alpha * alpha, grad_a * a, grad_b * b])
    return -float(ll) / W, -grad / W


def log_likelihood(
    params: tuple[float, float, float, float], frequency: Any, recency: Any, T: Any
) -> float:
    """The log-likelihood of the customers at ``(r, α, a, b)``, in their time unit."""
    x, t_x, age = as_rfm(frequency, recency, T)
    d = _Data(Patterns.of(x, t_x, age), 1.0)
    value, _ = _mean_ll_and_gradient(np.log(np.asarray(params, dtype=np.float64)), d)
    return -value * d.total


@dataclass(frozen=True)
class BetaGeoModel:
    """A fitted (or given) BG/NBD model; time in the unit of the data it was fitted to."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float = float("nan")
    customers: int = 0
    repeat_customers: int = 0
    iterations: int = 0
    standard_errors: dict[str, float] = field(default_factory=dict)

    name = NAME

    @property
    def params(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}

    @classmethod
    def fit(
        cls,
        frequency: Any,
        recency: Any,
        T: Any,
        *,
        min_repeat_customers: int = MIN_REPEAT_CUSTOMERS,
    ) -> BetaGeoModel:
        """Maximum-likelihood estimates from one row per customer (grouped inside)."""
        x, t_x, age = as_rfm(frequency, recency, T)
        return cls.fit_patterns(Patterns.of(x, t_x, age), min_repeat_customers=min_repeat_customers)

    @classmethod
    def fit_patterns(
        cls, patterns: Patterns, *, min_repeat_customers: int = MIN_REPEAT_CUSTOMERS
    ) -> BetaGeoModel:
        require_repeaters(patterns.customers, patterns.repeat_customers, min_repeat_customers, NAME)
        scale = time_scale(patterns.T)
        d = _Data(patterns, scale)
        best = maximize(
            NAME,
            PARAMS,
            lambda p: _mean_ll_and_gradient(p, d),
            np.zeros(4),
            customers=d.total,
            gradient=True,
            units=np.array([1, 1 / scale, 1, 1]),
        )
        r, alpha, a, b = best.params
        alpha /= scale
        unscaled = _Data(patterns, 1.0)
        value, _ = _mean_ll_and_gradient(np.log([r, alpha, a, b]), unscaled)
        return cls(
            float(r),
            float(alpha),
            float(a),
            float(b),
            log_likelihood=-value * unscaled.total,
            customers=patterns.customers,
            repeat_customers=patterns.repeat_customers,
            iterations=best.iterations,
            standard_errors=best.standard_errors(PARAMS, np.array([r, alpha, a, b])),
        )

    def conditional_probability_alive(self, frequency: Any, recency: Any, T: Any) -> FloatArray:
        """P(alive | x, t_x, T); 1 for customers without a repeat purchase (the model's
        customers can only drop out right after a purchase)."""
        x, t_x, age = _arrays(frequency, recency, T)
        log_ratio = (self.r + x) * np.log((self.alpha + age) / (self.alpha + t_x)) + np.log(
            self.a / (self.b + np.maximum(x, 1) - 1)
        )
        return np.where(x == 0, 1.0, expit(-log_ratio))

    def conditional_expected_number_of_purchases_up_to_time(
        self, t: Any, frequency: Any, recency: Any, T: Any
    ) -> FloatArray:
        """E[Y(t) | x, t_x, T], equation 10 of the paper: P(alive) times the purchases
        expected while alive. ``t`` may be a number or a 1-D array of horizons (then a row
        per horizon comes back)."""
        alive = self.conditional_probability_alive(frequency, recency, T)
        return alive * self.expected_purchases_while_alive(t, frequency, T)

    def expected_purchases_while_alive(self, t: Any, frequency: Any, T: Any) -> FloatArray:
        """The numerator of equation 10, once per distinct (x, T):

        (a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) ₂F₁(r+x, b+x; a+b+x−1; t/(α+T+t))]
        """
        return per_distinct_history(self._while_alive, t, frequency, T)

    def _while_alive(self, t: FloatArray, x: FloatArray, T: FloatArray) -> FloatArray:
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        t, x, T = np.broadcast_arrays(t, x, T)
        c = a + b + x - 1
        z = t / (alpha + T + t)
        log_hyp = np.log(hyp2f1(r + x, b + x, c, z))
        overflow = ~np.isfinite(log_hyp)
        if overflow.any():  # Euler's transformation gives the same value where the series overflows
            cc, zz, xx = c[overflow], z[overflow], x[overflow]
            log_hyp[overflow] = np.log(hyp2f1(cc - r - xx, cc - b - xx, cc, zz)) + (
                cc - r - xx - b - xx
            ) * np.log1p(-zz)
        shrink = (r + x) * np.log((alpha + T) / (alpha + T + t))
        return (c / (a - 1)) * -np.expm1(log_hyp + shrink)

    def expected_number_of_purchases_up_to_time(self, t: Any) -> FloatArray:
        """E[X(t)] for a customer just acquired (equation 9)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        t = np.asarray(t, dtype=np.float64)
        hyp = hyp2f1(r, b, a + b - 1, t / (alpha + t))
        return (a + b - 1) / (a - 1) * (1 - hyp * (alpha / (alpha + t)) ** r)


def _arrays(frequency: Any, recency: Any, T: Any) -> tuple[FloatArray, FloatArray, FloatArray]:
    return (
        np.asarray(frequency, dtype=np.float64),
        np.asarray(recency, dtype=np.float64),
        np.asarray(T, dtype=np.float64),
    )
