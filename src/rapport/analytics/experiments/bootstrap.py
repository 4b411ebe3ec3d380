"""A seeded bootstrap for revenue per recipient, zeros included.

Revenue per recipient is heavy-tailed: most recipients spend nothing, a few spend a lot.
Welch's interval leans on the central limit theorem, which such data reach slowly, so the
report also resamples: each resample draws every group's recipients with replacement and
takes the difference (and the ratio) of the means; the 2.5th and 97.5th percentiles of
those are the interval (the percentile method).

Only the recipients who spent something are stored and drawn. Drawing ``n`` recipients
from ``n − k`` zeros and ``k`` spenders is the same, in distribution, as drawing how many
spenders come up — Binomial(n, k/n) — and then drawing that many from the spenders; the
zeros add nothing to a sum. So a campaign of a million recipients with ten thousand buyers
costs ten thousand draws per resample, not a million.

The seed makes a report repeatable: the same data give the same interval every time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

RESAMPLES = 2000
SEED = 20260301
# Draws per chunk of resamples: bounds memory whatever the size of the groups.
_CHUNK_DRAWS = 4_000_000


@dataclass(frozen=True)
class BootstrapInterval:
    """Percentile intervals of mean 1 − mean 0 and of mean 1 / mean 0 − 1."""

    difference_low: float
    difference_high: float
    relative_low: float | None
    relative_high: float | None
    resamples: int
    seed: int


def resampled_means(
    spenders: ArrayLike, n: int, resamples: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    """``resamples`` bootstrap means of a group of ``n`` recipients whose non-zero values
    are ``spenders`` (every other recipient is a zero)."""
    values = np.asarray(spenders, dtype=np.float64)
    k = len(values)
    if n <= 0:
        return np.full(resamples, np.nan)
    if k == 0:
        return np.zeros(resamples)
    if k > n:
        raise ValueError(f"{k} non-zero values in a group of {n}")
    counts = rng.binomial(n, k / n, size=resamples)
    sums = np.empty(resamples)
    start = 0
    while start < resamples:
        # As many resamples as fit in the chunk budget (at least one).
        cum = np.cumsum(counts[start:])
        stop = start + max(1, int(np.searchsorted(cum, _CHUNK_DRAWS, side="right")))
        chunk = counts[start:stop]
        draws = values[rng.integers(0, k, size=int(chunk.sum()))]
        owner = np.repeat(np.arange(len(chunk)), chunk)
        sums[start:stop] = np.bincount(owner, weights=draws, minlength=len(chunk))
        start = stop
    return sums / n


def bootstrap_means(
    spenders1: ArrayLike,
    n1: int,
    spenders0: ArrayLike,
    n0: int,
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = 0.95,
) -> BootstrapInterval:
    """Percentile intervals for treatment (1) against reference (0)."""
    rng = np.random.default_rng(seed)
    m1 = resampled_means(spenders1, n1, resamples, rng)
    m0 = resampled_means(spenders0, n0, resamples, rng)
    tails = [50 * (1 - level), 50 * (1 + level)]
    low, high = np.percentile(m1 - m0, tails)
    rel_low = rel_high = None
    if np.all(m0 > 0):
        rlow, rhigh = np.percentile(m1 / m0 - 1, tails)
        rel_low, rel_high = float(rlow), float(rhigh)
    return BootstrapInterval(float(low), float(high), rel_low, rel_high, resamples, seed)
