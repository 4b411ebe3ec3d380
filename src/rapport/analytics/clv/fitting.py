"""What the three models share: checked inputs, customers grouped into patterns, and the
maximum-likelihood search.

Fader and Hardie fit their models to the *distinct* histories with a count of customers
for each (their spreadsheets list the 2,357 CDNOW customers as a few hundred rows). The
likelihood of a customer depends only on ``(x, t_x, T)``, so grouping is exact and it is
most of the speed: a million customers observed in whole days share far fewer patterns.

The search runs on the logarithms of the parameters (they are all positive, and a log
scale keeps the steps sensible across orders of magnitude) with time rescaled so that the
oldest customer has ``T = 1``, which keeps the rate parameters near 1 whatever the unit.
It stops with :class:`DidNotConverge` rather than returning a point that is not a maximum:
when the optimiser reports failure with a gradient that is not small, when parameters run
off towards zero or infinity, or when the likelihood is flat in some direction at the end
(in the last two cases the data do not identify the model). The curvature at an accepted
optimum gives the standard errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from rapport.analytics.clv.errors import DidNotConverge, NotEnoughData
from rapport.errors import InvalidInput, Problem

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Refuse to fit with fewer customers who came back: below this the parameters that
# describe dropout and heterogeneity are noise (and often run off to a bound).
MIN_REPEAT_CUSTOMERS = 20
# Log-parameters are kept within ±LOG_BOUND (e^30 ≈ 1e13) during the search. With time
# scaled to the oldest customer and money to the mean spend, real populations have every
# parameter within a factor 1e5 of 1; a fit that ends beyond (DRIFT) is heading for a
# limit (no heterogeneity, no dropout) that the data point to but the model cannot reach,
# and is reported as not converged.
LOG_BOUND = 30.0
DRIFT = float(np.log(1e5))
# The mean gradient (per customer, log scale) under which a stalled search is accepted.
GRADIENT_TOLERANCE = 1e-5


def dot(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
    """Σ a·b without BLAS. NumPy hands ``a @ b`` to a multi-threaded BLAS whose threads
    spin for work: on a busy two-core machine that made each likelihood evaluation ten
    times slower than this single-threaded sum (see docs/clv.md, profiling)."""
    return float(np.multiply(a, b).sum())


def as_rfm(frequency: Any, recency: Any, T: Any) -> tuple[IntArray, FloatArray, FloatArray]:
    """The three arrays as NumPy, checked as the models need them; InvalidInput if not."""
    x = np.asarray(frequency, dtype=np.float64)
    t_x = np.asarray(recency, dtype=np.float64)
    age = np.asarray(T, dtype=np.float64)
    problems: list[Problem] = []
    if not (x.ndim == t_x.ndim == age.ndim == 1) or not (len(x) == len(t_x) == len(age)):
        raise InvalidInput([Problem("frequency", "frequency, recency and T differ in length")])
    checks = (
        ("frequency", ~np.isfinite(x) | (x < 0) | (x != np.round(x)), "a whole number >= 0"),
        ("recency", ~np.isfinite(t_x) | (t_x < 0), "a finite number >= 0"),
        ("T", ~np.isfinite(age) | (age < t_x), "a finite number >= recency"),
        ("recency", (x == 0) & (t_x != 0), "0 for a customer without repeat purchases"),
    )
    for name, bad, reason in checks:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            problems.append(Problem(f"{name}[{i}]", f"must be {reason}"))
    if problems:
        raise InvalidInput(problems)
    return x.astype(np.int64), t_x, age


def distinct_rows(*columns: npt.NDArray[Any]) -> tuple[IntArray, IntArray]:
    """The first row of each distinct combination of the columns' values (in sorted
    order), and for every row the number of its combination."""
    n = len(columns[0])
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = np.lexsort(columns[::-1])
    new = np.zeros(n, dtype=bool)
    new[0] = True
    for column in columns:
        ordered = column[order]
        new[1:] |= ordered[1:] != ordered[:-1]
    group = np.cumsum(new) - 1
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = group
    return order[new], inverse


def per_distinct_history(
    function: Callable[[FloatArray, FloatArray, FloatArray], FloatArray],
    t: Any,
    frequency: Any,
    T: Any,
) -> FloatArray:
    """``function(t, x, T)`` evaluated once per distinct ``(x, T)`` and spread back.

    The expensive part of both purchase models' forecasts (a hypergeometric function, or
    powers) depends on the history only through x and T, which a million customers share
    in a few thousand combinations. ``t`` is a number (the result is shaped like
    ``frequency``) or a 1-D array of horizons (a row per horizon).
    """
    x = np.asarray(frequency, dtype=np.float64)
    age = np.asarray(T, dtype=np.float64)
    shape = np.broadcast_shapes(x.shape, age.shape)
    x, age = np.broadcast_to(x, shape).ravel(), np.broadcast_to(age, shape).ravel()
    times = np.asarray(t, dtype=np.float64)
    first, inverse = distinct_rows(x, age)
    horizons = np.atleast_1d(times).reshape(-1, 1)
    with np.errstate(all="ignore"):
        values = function(horizons, x[first][None, :], age[first][None, :])
    out = values[:, inverse].reshape((len(horizons), *shape))
    return out if times.ndim else out[0]


@dataclass(frozen=True)
class Patterns:
    """Distinct ``(x, t_x, T)`` histories with the number of customers sharing each."""

    frequency: IntArray
    recency: FloatArray
    T: FloatArray
    weights: FloatArray
    inverse: IntArray  # customer i has pattern inverse[i]

    @classmethod
    def of(cls, frequency: IntArray, recency: FloatArray, T: FloatArray) -> Patterns:
        first, inverse = distinct_rows(frequency, recency, T)
        weights = np.bincount(inverse, minlength=len(first)).astype(np.float64)
        return cls(frequency[first], recency[first], T[first], weights, inverse)

    @property
    def customers(self) -> int:
        return int(self.weights.sum())

    @property
    def repeat_customers(self) -> int:
        return int(self.weights[self.frequency > 0].sum())


def require_repeaters(
    customers: int, repeaters: int, minimum: int = MIN_REPEAT_CUSTOMERS, model: str = ""
) -> None:
    if customers == 0:
        raise NotEnoughData("there are no customers to fit the model to")
    if repeaters < minimum:
        raise NotEnoughData(
            f"{repeaters} of {customers} customers made a repeat purchase; the {model} model "
            f"needs at least {minimum} to estimate how often customers buy and when they "
            "stop (wait for more history, or use a longer observation period)"
        )


@dataclass(frozen=True)
class Optimum:
    log_params: FloatArray
    iterations: int
    evaluations: int
    log_standard_errors: FloatArray  # of the log-parameters, from the observed information

    @property
    def params(self) -> FloatArray:
        return np.exp(self.log_params)

    def standard_errors(self, names: tuple[str, ...], values: FloatArray) -> dict[str, float]:
        """Standard errors of the parameters ``values`` (delta method: se(θ) = θ·se(log θ))."""
        return {
            n: float(v * e) for n, v, e in zip(names, values, self.log_standard_errors, strict=True)
        }


NegativeMeanLL = Callable[[FloatArray], Any]


def maximize(
    model: str,
    names: tuple[str, ...],
    negative_mean_ll: NegativeMeanLL,
    start: FloatArray,
    *,
    customers: float,
    gradient: bool,
    units: FloatArray | None = None,
    hint: str = "common with few repeat customers, or when nobody seems to stop buying",
) -> Optimum:
    """Minimise the mean negative log-likelihood over log-parameters.

    ``negative_mean_ll`` returns (value, gradient) when ``gradient`` is true, else the
    value alone and the gradient is taken by central differences. After the search the
    curvature at the optimum is measured: a likelihood that is flat in some direction
    (the parameters drift off together towards a limit the data cannot tell apart) is
    reported as :class:`DidNotConverge`, otherwise it gives the standard errors.
    ``units`` turns the searched (rescaled) parameters into the caller's units for the
    messages; ``hint`` says when such a failure is usual for this model.
    """

    # BFGS: on four parameters its matrix algebra is a few tiny NumPy operations, while
    # L-BFGS-B's compiled code calls into a multi-threaded BLAS whose idle threads cost
    # more than the likelihood itself on a busy machine (docs/clv.md, profiling). The
    # search is unbounded, so the objective answers +inf beyond ±LOG_BOUND.
    def bounded(log_params: FloatArray) -> Any:
        if np.all(np.abs(log_params) <= LOG_BOUND):
            return negative_mean_ll(log_params)
        return (np.inf, np.zeros(len(log_params))) if gradient else np.inf

    with np.errstate(all="ignore"):
        result = minimize(
            bounded,
            start,
            jac=True if gradient else "3-point",
            method="BFGS",
            options={"maxiter": 2000, "gtol": 1e-9, "xrtol": 1e-12},
        )
    point = np.asarray(result.x, dtype=np.float64)
    shown = np.exp(point) * (np.ones(len(point)) if units is None else units)
    named = dict(zip(names, shown.tolist(), strict=True))
    if not np.isfinite(result.fun) or not np.all(np.isfinite(point)):
        raise DidNotConverge(model, "the likelihood could not be evaluated", named)
    drifted = [n for n, v in zip(names, point, strict=True) if abs(v) > DRIFT]
    if drifted:
        direction = ", ".join(
            f"{n} {'→ ∞' if point[names.index(n)] > 0 else '→ 0'}" for n in drifted
        )
        raise DidNotConverge(
            model,
            f"the likelihood keeps growing as {direction}, a limit the model cannot "
            f"describe ({hint})",
            named,
        )
    grad = np.asarray(result.jac, dtype=np.float64) if result.jac is not None else None
    small = grad is not None and float(np.max(np.abs(grad))) < GRADIENT_TOLERANCE
    if not result.success and not small:
        raise DidNotConverge(
            model, f"the search stopped short of a maximum ({result.message}; {hint})", named
        )
    with np.errstate(all="ignore"):
        hessian = _hessian(negative_mean_ll, point, gradient)
    errors = _identified(model, names, hessian, named, customers, hint)
    return Optimum(point, int(result.nit), int(result.nfev), errors)


# Curvature below this share of the largest means the likelihood is flat in that direction.
FLAT = 1e-7


def _hessian(function: NegativeMeanLL, point: FloatArray, gradient: bool) -> FloatArray:
    """Second derivatives of the mean negative log-likelihood, by central differences
    (of the analytic gradient when there is one, else of the values)."""
    k = len(point)
    hessian = np.empty((k, k))
    if gradient:
        h = 1e-5
        for i in range(k):
            step = np.zeros(k)
            step[i] = h
            hessian[i] = (function(point + step)[1] - function(point - step)[1]) / (2 * h)
    else:
        h = 1e-3
        for i in range(k):
            for j in range(i, k):
                ei, ej = np.zeros(k), np.zeros(k)
                ei[i], ej[j] = h, h
                value = (
                    function(point + ei + ej)
                    - function(point + ei - ej)
                    - function(point - ei + ej)
                    + function(point - ei - ej)
                ) / (4 * h * h)
                hessian[i, j] = hessian[j, i] = value
    return (hessian + hessian.T) / 2


def _identified(
    model: str,
    names: tuple[str, ...],
    hessian: FloatArray,
    named: dict[str, float],
    customers: float,
    hint: str,
) -> FloatArray:
    """The standard errors of the log-parameters; DidNotConverge where the curvature
    shows the data do not pin the parameters down."""
    if not np.all(np.isfinite(hessian)):
        raise DidNotConverge(model, "the likelihood's curvature could not be evaluated", named)
    values, vectors = np.linalg.eigh(hessian)
    if values[-1] <= 0 or values[0] < FLAT * values[-1]:
        flat = vectors[:, 0]
        involved = [n for n, c in zip(names, flat, strict=True) if abs(c) > 0.3]
        raise DidNotConverge(
            model,
            f"the likelihood is flat along a combination of {', '.join(involved)}, so the "
            f"data do not identify them ({hint})",
            named,
        )
    covariance = np.linalg.inv(hessian) / customers
    return np.sqrt(np.diag(covariance))


def time_scale(T: FloatArray) -> float:
    """The factor that makes the oldest customer's age 1 (1 when every age is 0)."""
    oldest = float(T.max()) if len(T) else 0.0
    return 1.0 / oldest if oldest > 0 else 1.0
