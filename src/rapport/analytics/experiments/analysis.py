"""Groups compared with a reference: the figures an experiment report shows.

The store hands over, per group, its recipients, its conversions and the revenue of each
recipient who spent something; everything else — rates, means, intervals, tests, the
Holm correction across variants, the sample-ratio check and the planned sample size — is
computed here, from those alone, so the same code serves campaigns, scenario splits and
the global control.

The reference is the control group when there is one, else the first variant. Each other
group is compared with it; with several such comparisons the p-values are Holm-adjusted
within each metric, and a comparison is significant when its adjusted p-value is below
alpha. Intervals are the plain 95 % ones, each for its own comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rapport.analytics.experiments import stats
from rapport.analytics.experiments.bootstrap import bootstrap_means
from rapport.analytics.experiments.options import Options
from rapport.analytics.experiments.sample_size import (
    SampleSize,
    mean_sample_size,
    rate_sample_size,
)
from rapport.analytics.experiments.stats import finite
from rapport.errors import InvalidInput

SRM_ALPHA = 0.001  # the usual threshold: a mismatch this unlikely is a bug, not chance


@dataclass
class Group:
    """One arm as measured: ``spenders`` holds the revenue of each recipient who spent
    something (net of refunds); every other recipient spent zero."""

    name: str
    recipients: int
    conversions: int
    spenders: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    expected_share: float | None = None

    @property
    def revenue(self) -> float:
        return float(self.spenders.sum())

    def moments(self) -> tuple[float, float]:
        mean, var = stats.moments(self.recipients, self.revenue, float((self.spenders**2).sum()))
        return float(mean), float(var)


def _pair(low: Any, high: Any) -> list[float | None]:
    return [finite(low), finite(high)]


def group_figures(g: Group, total: int) -> dict[str, Any]:
    mean, var = g.moments()
    rate_low, rate_high = stats.wilson_interval(g.conversions, g.recipients)
    mean_low, mean_high = stats.mean_interval(g.recipients, mean, var)
    return {
        "name": g.name,
        "recipients": g.recipients,
        "share": g.recipients / total if total else None,
        "expected_share": g.expected_share,
        "conversions": g.conversions,
        "conversion_rate": finite(g.conversions / g.recipients) if g.recipients else None,
        "conversion_ci": _pair(rate_low, rate_high),
        "buyers": len(g.spenders),
        "revenue": g.revenue,
        "revenue_per_recipient": finite(mean),
        "revenue_per_recipient_ci": _pair(mean_low, mean_high),
        "revenue_sd": finite(np.sqrt(var)) if g.recipients > 1 else None,
    }


def _compare(treated: list[Group], ref: Group, options: Options) -> list[dict[str, Any]]:
    x1 = [g.conversions for g in treated]
    n1 = [g.recipients for g in treated]
    rates = stats.compare_rates(x1, n1, ref.conversions, ref.recipients)
    rate_adj = stats.holm(rates.p_value)
    m = [g.moments() for g in treated]
    ref_mean, ref_var = ref.moments()
    means = stats.welch(n1, [a for a, _ in m], [b for _, b in m], ref.recipients, ref_mean, ref_var)
    mean_adj = stats.holm(means.p_value)
    out = []
    for i, g in enumerate(treated):
        boot = bootstrap_means(
            g.spenders,
            g.recipients,
            ref.spenders,
            ref.recipients,
            resamples=options.resamples,
            seed=options.seed,
        )
        out.append(
            {
                "group": g.name,
                "reference": ref.name,
                "conversion": {
                    "difference": finite(rates.difference[i]),
                    "difference_ci": _pair(rates.difference_low[i], rates.difference_high[i]),
                    "relative": finite(rates.relative[i]),
                    "relative_ci": _pair(rates.relative_low[i], rates.relative_high[i]),
                    "z": finite(rates.z[i]),
                    "p_value": finite(rates.p_value[i]),
                    "p_adjusted": finite(rate_adj[i]),
                    "significant": bool(rate_adj[i] < options.alpha),
                },
                "revenue_per_recipient": {
                    "difference": finite(means.difference[i]),
                    "difference_ci": _pair(means.difference_low[i], means.difference_high[i]),
                    "relative": finite(means.relative[i]),
                    "relative_ci": _pair(means.relative_low[i], means.relative_high[i]),
                    "t": finite(means.t[i]),
                    "df": finite(means.df[i]),
                    "p_value": finite(means.p_value[i]),
                    "p_adjusted": finite(mean_adj[i]),
                    "significant": bool(mean_adj[i] < options.alpha),
                    "bootstrap": {
                        "difference_ci": [boot.difference_low, boot.difference_high],
                        "relative_ci": [boot.relative_low, boot.relative_high],
                        "resamples": boot.resamples,
                        "seed": boot.seed,
                    },
                },
            }
        )
    return out


def _plan(treated: list[Group], ref: Group, options: Options) -> dict[str, Any]:
    """The sample each comparison needs to detect ``options.mde`` (relative) in the
    verdict's metric from the reference's observed level, at ``options.power``; with
    several comparisons alpha is split among them (Holm's first step is that strict)."""
    alpha = options.alpha / max(1, len(treated))
    plan: dict[str, Any] = {
        "metric": options.metric,
        "mde_relative": options.mde,
        "power": options.power,
        "alpha": options.alpha,
        "alpha_per_comparison": alpha,
        "baseline": None,
        "sd": None,
        "needed": None,
        "enough": False,
        "reason": None,
    }
    mean, var = ref.moments()
    if options.metric == "conversion":
        level = ref.conversions / ref.recipients if ref.recipients else 0.0
        plan["baseline"] = level if ref.recipients else None
        usable = level > 0
    else:
        level = mean
        plan["baseline"] = finite(mean) if ref.recipients else None
        plan["sd"] = finite(np.sqrt(var)) if ref.recipients > 1 else None
        usable = ref.recipients > 1 and mean > 0 and var > 0
    if not usable:
        plan["reason"] = "no_baseline"
        return plan
    needed: dict[str, int] = {ref.name: 0}
    for g in treated:
        ratio = (
            g.recipients / ref.recipients
            if g.recipients
            else (g.expected_share or 1.0) / (ref.expected_share or 1.0)
        )
        ratio = min(max(ratio, 0.01), 100.0)
        size = _size(options, level, var, alpha, ratio)
        if size is None:
            plan["reason"] = "mde_too_large"
            return plan
        needed[ref.name] = max(needed[ref.name], size.reference)
        needed[g.name] = size.treatment
    plan["needed"] = needed
    counts = {g.name: g.recipients for g in [ref, *treated]}
    plan["enough"] = all(counts[name] >= n for name, n in needed.items())
    return plan


def _size(
    options: Options, level: float, var: float, alpha: float, ratio: float
) -> SampleSize | None:
    try:
        if options.metric == "conversion":
            return rate_sample_size(
                level,
                options.mde,
                relative=True,
                power=options.power,
                alpha=alpha,
                ratio=ratio,
            )
        return mean_sample_size(
            float(np.sqrt(var)),
            options.mde,
            mean=level,
            relative=True,
            power=options.power,
            alpha=alpha,
            ratio=ratio,
        )
    except InvalidInput:  # a baseline the MDE pushes past 100 %: nothing to plan for
        return None


def _sample_ratio(groups: list[Group]) -> dict[str, Any] | None:
    if any(g.expected_share is None for g in groups) or len(groups) < 2:
        return None
    observed = [g.recipients for g in groups]
    shares = [float(g.expected_share or 0.0) for g in groups]
    total = sum(observed)
    if total == 0:
        return None
    if any(s <= 0 for s in shares):  # a group that should be empty is not: plainly wrong
        mismatch = any(o > 0 for o, s in zip(observed, shares, strict=True) if s <= 0)
        return {
            "expected": {g.name: s for g, s in zip(groups, shares, strict=True)},
            "observed": {g.name: o / total for g, o in zip(groups, observed, strict=True)},
            "chi_squared": None,
            "p_value": 0.0 if mismatch else None,
            "mismatch": mismatch,
        }
    statistic, p = stats.sample_ratio_mismatch(observed, shares)
    return {
        "expected": {g.name: s / sum(shares) for g, s in zip(groups, shares, strict=True)},
        "observed": {g.name: o / total for g, o in zip(groups, observed, strict=True)},
        "chi_squared": statistic,
        "p_value": p,
        "mismatch": bool(p < SRM_ALPHA),
    }


def analyse(groups: list[Group], reference: str, options: Options) -> dict[str, Any]:
    """Every figure of a split between ``groups``, compared with ``reference``."""
    ref = next(g for g in groups if g.name == reference)
    treated = [g for g in groups if g is not ref]
    total = sum(g.recipients for g in groups)
    statistic, dof, p = stats.chi_squared(
        [[g.conversions, g.recipients - g.conversions] for g in groups]
    )
    return {
        "reference": ref.name,
        "recipients": total,
        "groups": [group_figures(g, total) for g in groups],
        "comparisons": _compare(treated, ref, options) if treated else [],
        "chi_squared": {"statistic": statistic, "df": dof, "p_value": p},
        "sample_ratio": _sample_ratio(groups),
        "plan": _plan(treated, ref, options),
    }
