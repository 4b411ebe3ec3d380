"""The tests and intervals an experiment report rests on, vectorized over comparisons.

Every function takes NumPy arrays (or scalars) and broadcasts, so a report with several
variants computes all its comparisons in one call. The order is always
(treatment, reference): a difference is treatment − reference, a relative lift is
treatment / reference − 1.

Rates (conversion):

* the **two-proportion z-test** with the pooled variance under the null hypothesis (the
  textbook test, statsmodels' ``proportions_ztest``);
* the **difference** with a Wald interval (unpooled variance — the null is not assumed
  when estimating);
* the **relative lift** with an interval from the delta method on the log of the ratio,
  ``Var(log p₁/p₀) ≈ (1−p₁)/(n₁p₁) + (1−p₀)/(n₀p₀)``, exponentiated back, so it is
  asymmetric like the ratio itself and never below −100 %;
* the **chi-squared test** of independence over all groups at once (no continuity
  correction: for two groups its statistic is the z statistic squared).

Means (revenue per recipient, zeros included):

* **Welch's t-test**, which does not assume equal variances — revenue of a group that got
  a discount offer is not spread like the control's — with the Welch–Satterthwaite
  degrees of freedom, and the difference's t interval;
* the relative lift by the delta method on the log of the ratio of the means.

When a standard error is zero (both groups all zeros, or all converted) nothing can be
told apart: the p-value is 1 when the estimates are equal, 0 when they differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

Array = NDArray[np.float64]
LEVEL = 0.95


def _f(x: ArrayLike) -> Array:
    return np.asarray(x, dtype=np.float64)


def z_of(level: float) -> float:
    """The two-sided normal quantile for a confidence level (1.96 for 95 %)."""
    return float(sps.norm.ppf(0.5 + level / 2))


def _ratio(num: Array, den: Array) -> Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _p_from_se(diff: Array, se: Array, p: Array) -> Array:
    """The degenerate zero-standard-error cases, decided as the module docstring says."""
    degenerate = np.where(diff == 0, 1.0, 0.0)
    return np.where(se > 0, p, np.where(np.isnan(diff), np.nan, degenerate))


# -- rates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateComparison:
    """Treatment against reference on a rate; every field is an array over comparisons."""

    rate: Array
    reference_rate: Array
    difference: Array
    difference_low: Array
    difference_high: Array
    relative: Array
    relative_low: Array
    relative_high: Array
    z: Array
    p_value: Array


def two_proportion_ztest(
    x1: ArrayLike, n1: ArrayLike, x0: ArrayLike, n0: ArrayLike
) -> tuple[Array, Array]:
    """z statistic and two-sided p-value for rate 1 − rate 0, pooled under the null."""
    x1, n1, x0, n0 = _f(x1), _f(n1), _f(x0), _f(n0)
    p1, p0 = _ratio(x1, n1), _ratio(x0, n0)
    pooled = _ratio(x1 + x0, n1 + n0)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
        z = np.where(se > 0, (p1 - p0) / np.where(se > 0, se, 1.0), np.nan)
    p = 2 * sps.norm.sf(np.abs(z))
    return z, _p_from_se(p1 - p0, se, p)


def rate_difference_ci(
    x1: ArrayLike, n1: ArrayLike, x0: ArrayLike, n0: ArrayLike, level: float = LEVEL
) -> tuple[Array, Array, Array]:
    """Rate 1 − rate 0 and its Wald interval (unpooled variance)."""
    x1, n1, x0, n0 = _f(x1), _f(n1), _f(x0), _f(n0)
    p1, p0 = _ratio(x1, n1), _ratio(x0, n0)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    diff = p1 - p0
    z = z_of(level)
    return diff, diff - z * se, diff + z * se


def rate_ratio_ci(
    x1: ArrayLike, n1: ArrayLike, x0: ArrayLike, n0: ArrayLike, level: float = LEVEL
) -> tuple[Array, Array, Array]:
    """Relative lift rate 1 / rate 0 − 1, with the delta-method interval on the log ratio.

    Undefined (NaN) when either group has no conversions: a ratio to zero has no log.
    """
    x1, n1, x0, n0 = _f(x1), _f(n1), _f(x0), _f(n0)
    p1, p0 = _ratio(x1, n1), _ratio(x0, n0)
    ok = (x1 > 0) & (x0 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.where(ok, np.log(np.where(ok, p1 / p0, 1.0)), np.nan)
        se = np.where(ok, np.sqrt((1 - p1) / (n1 * p1) + (1 - p0) / (n0 * p0)), np.nan)
    z = z_of(level)
    return (
        np.exp(log_ratio) - 1,
        np.exp(log_ratio - z * se) - 1,
        np.exp(log_ratio + z * se) - 1,
    )


def compare_rates(
    x1: ArrayLike, n1: ArrayLike, x0: ArrayLike, n0: ArrayLike, level: float = LEVEL
) -> RateComparison:
    """Everything about treatment vs reference on a rate, for each comparison."""
    z, p = two_proportion_ztest(x1, n1, x0, n0)
    diff, dlo, dhi = rate_difference_ci(x1, n1, x0, n0, level)
    rel, rlo, rhi = rate_ratio_ci(x1, n1, x0, n0, level)
    return RateComparison(
        rate=_ratio(_f(x1), _f(n1)),
        reference_rate=_ratio(_f(x0), _f(n0)),
        difference=diff,
        difference_low=dlo,
        difference_high=dhi,
        relative=rel,
        relative_low=rlo,
        relative_high=rhi,
        z=z,
        p_value=p,
    )


def chi_squared(table: ArrayLike) -> tuple[float, int, float]:
    """Pearson's chi-squared test of independence on a groups × (converted, not) table.

    Used for "does any group differ?" across all groups at once; columns or rows that are
    all zero carry no information and are dropped (with fewer than two of either left
    there is nothing to test: statistic 0, p-value 1).
    """
    t = _f(table)
    t = t[t.sum(axis=1) > 0]
    t = t[:, t.sum(axis=0) > 0]
    if t.shape[0] < 2 or t.shape[1] < 2:
        return 0.0, 0, 1.0
    expected = np.outer(t.sum(axis=1), t.sum(axis=0)) / t.sum()
    statistic = float(((t - expected) ** 2 / expected).sum())
    dof = (t.shape[0] - 1) * (t.shape[1] - 1)
    return statistic, dof, float(sps.chi2.sf(statistic, dof))


def sample_ratio_mismatch(observed: ArrayLike, shares: ArrayLike) -> tuple[float, float]:
    """Chi-squared goodness of fit of assignment counts against the configured shares.

    A small p-value means the split is not what was configured — a bug in the assignment
    or the data (a lost group, a filter that acts on one group) — and the comparison is
    not to be trusted however significant it looks.
    """
    obs, share = _f(observed), _f(shares)
    total = obs.sum()
    if total <= 0 or len(obs) < 2:
        return 0.0, 1.0
    expected = share / share.sum() * total
    statistic = float(((obs - expected) ** 2 / expected).sum())
    return statistic, float(sps.chi2.sf(statistic, len(obs) - 1))


def wilson_interval(x: ArrayLike, n: ArrayLike, level: float = LEVEL) -> tuple[Array, Array]:
    """Wilson's score interval for one group's rate: sensible at 0 % and with small n,
    where the Wald interval collapses (used for each group's own error bar)."""
    x, n = _f(x), _f(n)
    z = z_of(level)
    p = _ratio(x, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


# -- means -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeanComparison:
    """Treatment against reference on a mean; every field is an array over comparisons."""

    mean: Array
    reference_mean: Array
    difference: Array
    difference_low: Array
    difference_high: Array
    relative: Array
    relative_low: Array
    relative_high: Array
    t: Array
    df: Array
    p_value: Array


def welch(
    n1: ArrayLike,
    mean1: ArrayLike,
    var1: ArrayLike,
    n0: ArrayLike,
    mean0: ArrayLike,
    var0: ArrayLike,
    level: float = LEVEL,
) -> MeanComparison:
    """Welch's t-test of mean 1 − mean 0 from each group's size, mean and sample variance
    (ddof = 1), with the t interval of the difference and the delta-method interval of
    the relative lift (undefined when either mean is not positive)."""
    n1, m1, v1, n0, m0, v0 = _f(n1), _f(mean1), _f(var1), _f(n0), _f(mean0), _f(var0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = v1 / n1, v0 / n0
        se = np.sqrt(a + b)
        df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n0 - 1))
        diff = m1 - m0
        t = np.where(se > 0, diff / np.where(se > 0, se, 1.0), np.nan)
        p = 2 * sps.t.sf(np.abs(t), np.where(se > 0, df, 1.0))
        q = sps.t.ppf(0.5 + level / 2, np.where(se > 0, df, 1.0))
        half = np.where(se > 0, q * se, 0.0)
        ok = (m1 > 0) & (m0 > 0)
        log_ratio = np.where(ok, np.log(np.where(ok, m1 / m0, 1.0)), np.nan)
        rse = np.sqrt(a / np.where(ok, m1, 1.0) ** 2 + b / np.where(ok, m0, 1.0) ** 2)
    z = z_of(level)
    return MeanComparison(
        mean=m1,
        reference_mean=m0,
        difference=diff,
        difference_low=diff - half,
        difference_high=diff + half,
        relative=np.exp(log_ratio) - 1,
        relative_low=np.exp(log_ratio - z * rse) - 1,
        relative_high=np.exp(log_ratio + z * rse) - 1,
        t=t,
        df=np.where(se > 0, df, np.nan),
        p_value=_p_from_se(diff, se, p),
    )


def mean_interval(
    n: ArrayLike, mean: ArrayLike, var: ArrayLike, level: float = LEVEL
) -> tuple[Array, Array]:
    """The t interval of one group's mean (each group's own error bar)."""
    n, m, v = _f(n), _f(mean), _f(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        half = sps.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1)) * np.sqrt(v / n)
    half = np.where(n > 1, half, np.nan)
    return m - half, m + half


def moments(n: ArrayLike, total: ArrayLike, squares: ArrayLike) -> tuple[Array, Array]:
    """Mean and sample variance (ddof = 1) from a group's size, sum and sum of squares —
    what the store hands back, so the values need not travel."""
    n, s, ss = _f(n), _f(total), _f(squares)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(n > 0, s / np.where(n > 0, n, 1.0), np.nan)
        var = np.where(n > 1, (ss - n * mean * mean) / np.where(n > 1, n - 1, 1.0), np.nan)
    return mean, np.maximum(var, 0.0)


# -- several comparisons -------------------------------------------------------------------


def holm(p_values: ArrayLike) -> Array:
    """Holm's step-down adjustment: controls the chance of any false winner among several
    variants, and is uniformly more powerful than Bonferroni. NaNs stay NaN."""
    p = _f(p_values)
    out = np.full(p.shape, np.nan)
    known = ~np.isnan(p)
    m = int(known.sum())
    if m == 0:
        return out
    values = p[known]
    order = np.argsort(values, kind="stable")
    scaled = values[order] * (m - np.arange(m))
    adjusted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    result = np.empty(m)
    result[order] = adjusted
    out[known] = result
    return out


def finite(value: Any) -> float | None:
    """A float for JSON: NaN and infinities become None."""
    if value is None:
        return None
    f = float(value)
    return f if np.isfinite(f) else None
