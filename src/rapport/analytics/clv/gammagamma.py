"""The Gamma-Gamma model of spend per transaction.

Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005), "RFM and CLV: Using Iso-Value Curves
for Customer Base Analysis", Journal of Marketing Research 42 (4), 415–430; written out in
Fader, P. S. and Hardie, B. G. S. (2013), "The Gamma-Gamma Model of Monetary Value"
(brucehardie.com/notes/025), equations 1a and 5.

A customer's transaction values are Gamma(p, ν) around their own mean p/ν, and ν varies
across customers as Gamma(q, γ). Given x repeat transactions with mean value m̄ (the first
purchase is not used, as in the summary), the likelihood is

    f(m̄ | p, q, γ, x) = Γ(px+q) / (Γ(px) Γ(q)) · γ^q m̄^(px−1) x^(px) / (γ + m̄x)^(px+q)

and the expected spend per transaction of that customer is a weighted mean of the
population's mean pγ/(q−1) and their own m̄:

    E[M | p, q, γ, m̄, x] = (pγ + p x m̄) / (px + q − 1)

The model assumes spend does not depend on how often a customer buys; check the
correlation of x and m̄ (``frequency_spend_correlation``) before trusting it. Only
customers with a repeat purchase and a positive m̄ inform the fit. Money is rescaled by
its mean during the search so that γ starts near 1; the gradient is analytic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import digamma, gammaln

from rapport.analytics.clv.errors import UnusableModel
from rapport.analytics.clv.fitting import (
    MIN_REPEAT_CUSTOMERS,
    FloatArray,
    dot,
    maximize,
    require_repeaters,
)
from rapport.errors import InvalidInput, Problem

NAME = "Gamma-Gamma"
PARAMS = ("p", "q", "gamma")


def spend_rows(frequency: Any, monetary_value: Any) -> tuple[FloatArray, FloatArray]:
    """The customers that inform the fit: a repeat purchase and a positive mean value."""
    x = np.asarray(frequency, dtype=np.float64)
    m = np.asarray(monetary_value, dtype=np.float64)
    if x.shape != m.shape or x.ndim != 1:
        raise InvalidInput([Problem("monetary_value", "frequency and monetary_value differ")])
    bad = ~np.isfinite(m) | ~np.isfinite(x) | (x < 0) | (x != np.round(x))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidInput(
            [
                Problem(
                    f"row[{i}]",
                    "frequency must be a whole number >= 0 and monetary_value a finite number",
                )
            ]
        )
    keep = (x > 0) & (m > 0)
    return x[keep], m[keep]


class _Data:
    """The spending customers, with the sums the likelihood needs computed once; the terms
    that depend on x alone are taken once per distinct x."""

    def __init__(self, x: FloatArray, m: FloatArray, money_scale: float) -> None:
        m = m * money_scale
        self.x, self.m = x, m
        self.W = float(len(x))
        log_m = np.log(m)
        self.sum_x_log_m = dot(x, log_m)
        self.sum_log_m = float(log_m.sum())
        self.sum_x_log_x = dot(x, np.log(x))
        per_x = np.bincount(x.astype(np.int64))
        self.distinct_x = np.flatnonzero(per_x).astype(np.float64)
        self.distinct_w = per_x[per_x > 0].astype(np.float64)


def _mean_ll_and_gradient(log_params: FloatArray, d: _Data) -> tuple[float, FloatArray]:
    p, q, g = np.exp(log_params)
    ux, uw, W = d.distinct_x, d.distinct_w, d.W
    px = p * d.x
    log_gmx = np.log(g + d.m * d.x)
    ll = (
        dot(uw, gammaln(p * ux + q) - gammaln(p * ux))
        - W * gammaln(q)
        + W * q * np.log(g)
        + p * (d.sum_x_log_m + d.sum_x_log_x)
        - d.sum_log_m
        - dot(px + q, log_gmx)
    )
    psi_pxq = digamma(p * ux + q)
    grad_p = (
        dot(uw * ux, psi_pxq - digamma(p * ux)) + d.sum_x_log_m + d.sum_x_log_x - dot(d.x, log_gmx)
    )
    grad_q = dot(uw, psi_pxq) - W * digamma(q) + W * np.log(g) - log_gmx.sum()
    grad_g = W * q / g - ((px + q) / (g + d.m * d.x)).sum()
    grad = np.array([grad_p * p, grad_q * q, grad_g * g])
    return -float(ll) / W, -grad / W


def log_likelihood(
    params: tuple[float, float, float], frequency: Any, monetary_value: Any
) -> float:
    """The log-likelihood of the spending customers at ``(p, q, γ)``."""
    x, m = spend_rows(frequency, monetary_value)
    d = _Data(x, m, 1.0)
    value, _ = _mean_ll_and_gradient(np.log(np.asarray(params, dtype=np.float64)), d)
    return -value * d.W


@dataclass(frozen=True)
class GammaGammaModel:
    p: float
    q: float
    gamma: float  # γ in the papers, ``v`` in lifetimes
    log_likelihood: float = float("nan")
    customers: int = 0  # the customers the fit used (repeat purchase, positive spend)
    iterations: int = 0
    standard_errors: dict[str, float] = field(default_factory=dict)

    name = NAME

    @property
    def params(self) -> dict[str, float]:
        return {"p": self.p, "q": self.q, "gamma": self.gamma}

    @classmethod
    def fit(
        cls,
        frequency: Any,
        monetary_value: Any,
        *,
        min_repeat_customers: int = MIN_REPEAT_CUSTOMERS,
    ) -> GammaGammaModel:
        """Fit to one row per customer; rows without a repeat or a positive m̄ are skipped."""
        all_x = np.asarray(frequency)
        x, m = spend_rows(frequency, monetary_value)
        require_repeaters(len(all_x), len(x), min_repeat_customers, NAME)
        money_scale = 1.0 / float(m.mean())
        d = _Data(x, m, money_scale)
        best = maximize(
            NAME,
            PARAMS,
            lambda lp: _mean_ll_and_gradient(lp, d),
            np.zeros(3),
            customers=d.W,
            gradient=True,
            units=np.array([1, 1, 1 / money_scale]),
            hint="common when average spends hardly differ between customers",
        )
        p, q, g = best.params
        g /= money_scale
        unscaled = _Data(x, m, 1.0)
        value, _ = _mean_ll_and_gradient(np.log([p, q, g]), unscaled)
        return cls(
            float(p),
            float(q),
            float(g),
            log_likelihood=-value * unscaled.W,
            customers=len(x),
            iterations=best.iterations,
            standard_errors=best.standard_errors(PARAMS, np.array([p, q, g])),
        )

    @property
    def population_mean_spend(self) -> float:
        """pγ/(q−1): the mean spend per transaction across customers."""
        self._require_finite_mean()
        return self.p * self.gamma / (self.q - 1)

    def _require_finite_mean(self) -> None:
        if self.q <= 1:
            raise UnusableModel(
                f"the fitted spend model has q = {self.q:.3g} <= 1: its customers have no "
                "finite mean spend, so expected values would be meaningless (a few very "
                "large average spends usually cause this)"
            )

    def conditional_expected_average_profit(
        self, frequency: Any, monetary_value: Any
    ) -> FloatArray:
        """E[M | x, m̄], equation 5: the expected value of a future transaction."""
        self._require_finite_mean()
        x = np.asarray(frequency, dtype=np.float64)
        m = np.asarray(monetary_value, dtype=np.float64)
        px = self.p * x
        return (self.p * self.gamma + px * m) / (px + self.q - 1)


def frequency_spend_correlation(frequency: Any, monetary_value: Any) -> float:
    """Pearson correlation of x and m̄ over the spending customers (near 0 is what the
    model assumes; NaN when it cannot be computed)."""
    x, m = spend_rows(frequency, monetary_value)
    if len(x) < 2 or np.all(x == x[0]) or np.all(m == m[0]):
        return float("nan")
    return float(np.corrcoef(x, m)[0, 1])
