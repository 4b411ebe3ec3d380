"""How many recipients a test needs before it can conclude.

Both calculators solve the power equation of a two-sided z-test for two independent
groups, the reference of size ``n₀`` and the treatment of size ``n₁ = ratio · n₀``:

    power = Φ(d·√ñ − z₁₋α/₂) + Φ(−d·√ñ − z₁₋α/₂),     ñ = 1 / (1/n₀ + 1/n₁)

where ``d`` is the standardized effect:

* for a **rate**, Cohen's ``h = |2·asin√p₁ − 2·asin√p₀|`` (the arcsine transform makes
  the variance of a proportion independent of its level);
* for a **mean** (revenue per recipient), ``d = |δ| / σ`` with σ the standard deviation
  of the metric per recipient.

The equation is started from the closed form ``ñ = ((z₁₋α/₂ + z_power)/d)²`` and refined
by Newton's method, so the figures match statsmodels' ``NormalIndPower``, then rounded up
to whole recipients. The minimum detectable effect (MDE) is absolute (``0.01`` = one
percentage point, or one unit of money) or relative to the baseline (``0.1`` = 10 %).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from scipy import stats as sps

from rapport.errors import InvalidInput, Problem

POWER = 0.8
ALPHA = 0.05
MDE = 0.1  # relative: what the verdict plans for unless told otherwise


@dataclass(frozen=True)
class SampleSize:
    """Recipients needed per group, and the inputs that gave them."""

    metric: str  # rate | mean
    reference: int  # n₀, the control (or the first variant)
    treatment: int  # n₁ per variant
    total: int
    effect_size: float  # Cohen's h or d
    baseline: float
    target: float
    mde_absolute: float
    mde_relative: float | None
    power: float
    alpha: float
    ratio: float
    sd: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def solve_nobs(effect: float, power: float, alpha: float) -> float:
    """ñ = 1/(1/n₀ + 1/n₁) at which a two-sided z-test reaches ``power``."""
    crit = float(sps.norm.isf(alpha / 2))
    n = ((crit + float(sps.norm.ppf(power))) / effect) ** 2
    for _ in range(50):  # Newton on the exact two-tailed power; converges in a few steps
        root = math.sqrt(n)
        f = sps.norm.cdf(effect * root - crit) + sps.norm.cdf(-effect * root - crit) - power
        slope = (
            (sps.norm.pdf(effect * root - crit) - sps.norm.pdf(-effect * root - crit))
            * effect
            / (2 * root)
        )
        step = float(f / slope)
        n -= step
        if abs(step) < 1e-10 * n:
            break
    return n


def _sizes(effect: float, power: float, alpha: float, ratio: float) -> tuple[int, int]:
    nobs = solve_nobs(effect, power, alpha)
    n0 = nobs * (1 + ratio) / ratio
    reference = math.ceil(n0 - 1e-9)
    treatment = math.ceil(n0 * ratio - 1e-9)
    return reference, treatment


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _common(power: float, alpha: float, ratio: float, problems: list[Problem]) -> None:
    if not (_number(power) and 0.5 <= power < 1):
        problems.append(Problem("power", f"must be at least 0.5 and below 1, not {power!r}"))
    if not (_number(alpha) and 0 < alpha <= 0.5):
        problems.append(Problem("alpha", f"must be above 0 and at most 0.5, not {alpha!r}"))
    if not (_number(ratio) and 0.01 <= ratio <= 100):
        problems.append(Problem("ratio", f"must be from 0.01 to 100, not {ratio!r}"))


def rate_sample_size(
    baseline: float,
    mde: float,
    *,
    relative: bool = False,
    power: float = POWER,
    alpha: float = ALPHA,
    ratio: float = 1.0,
) -> SampleSize:
    """Recipients per group to detect a change of ``mde`` in a rate of ``baseline``.

    ``ratio`` is treatment / reference size (9 for a 10 % control beside one variant).
    """
    problems: list[Problem] = []
    if not (_number(baseline) and 0 < baseline < 1):
        problems.append(
            Problem("baseline", f"must be a rate above 0 and below 1, not {baseline!r}")
        )
    if not _number(mde) or mde == 0:
        problems.append(Problem("mde", f"must be a non-zero number, not {mde!r}"))
    _common(power, alpha, ratio, problems)
    if not problems:
        target = baseline * (1 + mde) if relative else baseline + mde
        if not 0 < target < 1:
            kind = "relative" if relative else "absolute"
            problems.append(
                Problem(
                    "mde", f"a {kind} change of {mde} takes {baseline} to {target:.4g}, outside 0–1"
                )
            )
    if problems:
        raise InvalidInput(problems)
    h = abs(2 * math.asin(math.sqrt(target)) - 2 * math.asin(math.sqrt(baseline)))
    reference, treatment = _sizes(h, power, alpha, ratio)
    return SampleSize(
        metric="rate",
        reference=reference,
        treatment=treatment,
        total=reference + treatment,
        effect_size=h,
        baseline=float(baseline),
        target=float(target),
        mde_absolute=float(target - baseline),
        mde_relative=float(target / baseline - 1),
        power=float(power),
        alpha=float(alpha),
        ratio=float(ratio),
    )


def mean_sample_size(
    sd: float,
    mde: float,
    *,
    mean: float | None = None,
    relative: bool = False,
    power: float = POWER,
    alpha: float = ALPHA,
    ratio: float = 1.0,
) -> SampleSize:
    """Recipients per group to detect a change of ``mde`` in a mean whose per-recipient
    standard deviation is ``sd`` (a relative ``mde`` needs the baseline ``mean``)."""
    problems: list[Problem] = []
    if not (_number(sd) and sd > 0):
        problems.append(Problem("sd", f"must be a positive number, not {sd!r}"))
    if not _number(mde) or mde == 0:
        problems.append(Problem("mde", f"must be a non-zero number, not {mde!r}"))
    if mean is not None and not _number(mean):
        problems.append(Problem("mean", f"must be a number, not {mean!r}"))
    elif relative and not (mean is not None and mean > 0):
        problems.append(Problem("mean", "a relative mde needs the baseline mean, above 0"))
    _common(power, alpha, ratio, problems)
    if problems:
        raise InvalidInput(problems)
    delta = float(mde) * float(mean) if relative and mean is not None else float(mde)
    d = abs(delta) / sd
    reference, treatment = _sizes(d, power, alpha, ratio)
    base = float(mean) if mean is not None else 0.0
    return SampleSize(
        metric="mean",
        reference=reference,
        treatment=treatment,
        total=reference + treatment,
        effect_size=d,
        baseline=base,
        target=base + delta,
        mde_absolute=delta,
        mde_relative=delta / base if base > 0 else None,
        power=float(power),
        alpha=float(alpha),
        ratio=float(ratio),
        sd=float(sd),
    )
