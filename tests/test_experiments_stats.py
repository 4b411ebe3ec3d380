"""The experiment statistics against statsmodels and SciPy, on several inputs each:
z-test, chi-squared, Wald and log-ratio intervals, Welch, Holm, Wilson, the sample-size
calculators, the sample-ratio check, and the bootstrap (its shortcut over the zeros
against a plain resampling of every recipient)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower, zt_ind_solve_power
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportion_effectsize,
    proportions_ztest,
)
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from rapport.analytics.experiments import stats
from rapport.analytics.experiments.bootstrap import bootstrap_means, resampled_means
from rapport.analytics.experiments.sample_size import mean_sample_size, rate_sample_size
from rapport.errors import InvalidInput

# (conversions, recipients) of treatment, then of reference
RATES = [
    (60, 1000, 45, 1000),
    (130, 2400, 51, 1100),
    (7, 90, 3, 110),
    (520, 10_000, 480, 10_000),
    (1, 50, 12, 60),
]


def test_two_proportion_ztest_matches_statsmodels() -> None:
    x1, n1, x0, n0 = (np.array(c) for c in zip(*RATES, strict=True))
    z, p = stats.two_proportion_ztest(x1, n1, x0, n0)
    for i, (a, na, b, nb) in enumerate(RATES):
        ref_z, ref_p = proportions_ztest([a, b], [na, nb])
        assert z[i] == pytest.approx(ref_z, rel=1e-10)
        assert p[i] == pytest.approx(ref_p, rel=1e-10)


def test_rate_intervals_match_statsmodels() -> None:
    for a, na, b, nb in RATES:
        diff, low, high = stats.rate_difference_ci(a, na, b, nb)
        ref = confint_proportions_2indep(a, na, b, nb, method="wald", compare="diff")
        assert diff == pytest.approx(a / na - b / nb)
        assert (low, high) == pytest.approx(ref, rel=1e-10)
        rel, rlow, rhigh = stats.rate_ratio_ci(a, na, b, nb)
        rref = confint_proportions_2indep(a, na, b, nb, method="log", compare="ratio")
        assert rel == pytest.approx((a / na) / (b / nb) - 1)
        assert (rlow + 1, rhigh + 1) == pytest.approx(rref, rel=1e-10)


def test_relative_lift_is_undefined_without_conversions() -> None:
    rel, low, high = stats.rate_ratio_ci(5, 100, 0, 100)
    assert np.isnan(rel) and np.isnan(low) and np.isnan(high)
    z, p = stats.two_proportion_ztest(0, 100, 0, 100)  # nothing to tell apart
    assert np.isnan(z) and p == 1.0


def test_chi_squared_matches_scipy_and_is_z_squared_for_two_groups() -> None:
    tables = [
        [[60, 940], [45, 955]],
        [[130, 2270], [51, 1049], [77, 1500]],
        [[7, 83], [3, 107], [9, 91], [1, 99]],
    ]
    for table in tables:
        statistic, dof, p = stats.chi_squared(table)
        ref = sps.chi2_contingency(np.array(table), correction=False)
        assert statistic == pytest.approx(ref.statistic, rel=1e-10)
        assert dof == ref.dof
        assert p == pytest.approx(ref.pvalue, rel=1e-10)
    z, _ = stats.two_proportion_ztest(60, 1000, 45, 1000)
    assert stats.chi_squared(tables[0])[0] == pytest.approx(float(z[()]) ** 2)
    assert stats.chi_squared([[0, 10], [0, 12]]) == (0.0, 0, 1.0)


def _revenue(rng: np.random.Generator, n: int, buyers: float, scale: float) -> np.ndarray:
    """Per-recipient revenue: mostly zeros, a lognormal tail."""
    values = np.zeros(n)
    bought = rng.random(n) < buyers
    values[bought] = rng.lognormal(mean=np.log(scale), sigma=1.1, size=int(bought.sum()))
    return values


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_welch_matches_scipy_and_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = _revenue(rng, int(rng.integers(200, 3000)), 0.08, 40)
    b = _revenue(rng, int(rng.integers(200, 3000)), 0.05, 35)
    result = stats.welch(len(a), a.mean(), a.var(ddof=1), len(b), b.mean(), b.var(ddof=1))
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert result.t[()] == pytest.approx(ref.statistic, rel=1e-9)
    assert result.p_value[()] == pytest.approx(ref.pvalue, rel=1e-9)
    assert result.df[()] == pytest.approx(ref.df, rel=1e-9)
    ci = ref.confidence_interval(0.95)
    assert (result.difference_low[()], result.difference_high[()]) == pytest.approx(
        (ci.low, ci.high), rel=1e-9
    )
    cm = CompareMeans(DescrStatsW(a), DescrStatsW(b))
    assert (result.difference_low[()], result.difference_high[()]) == pytest.approx(
        cm.tconfint_diff(usevar="unequal"), rel=1e-9
    )
    # moments() from (n, sum, sum of squares) is what the store hands over
    mean, var = stats.moments(len(a), a.sum(), (a**2).sum())
    assert (mean, var) == pytest.approx((a.mean(), a.var(ddof=1)), rel=1e-9)


def test_welch_relative_lift_by_the_delta_method() -> None:
    rng = np.random.default_rng(7)
    a, b = _revenue(rng, 4000, 0.1, 50), _revenue(rng, 4000, 0.1, 45)
    r = stats.welch(len(a), a.mean(), a.var(ddof=1), len(b), b.mean(), b.var(ddof=1))
    se = math.sqrt(a.var(ddof=1) / len(a) / a.mean() ** 2 + b.var(ddof=1) / len(b) / b.mean() ** 2)
    ratio = a.mean() / b.mean()
    assert r.relative[()] == pytest.approx(ratio - 1)
    assert r.relative_low[()] == pytest.approx(ratio * math.exp(-1.959963984540054 * se) - 1)
    assert r.relative_high[()] == pytest.approx(ratio * math.exp(1.959963984540054 * se) - 1)


def test_welch_with_nothing_to_tell_apart() -> None:
    r = stats.welch(100, 0.0, 0.0, 80, 0.0, 0.0)
    assert r.p_value[()] == 1.0 and r.difference[()] == 0.0


def test_holm_matches_statsmodels() -> None:
    for p in ([0.01, 0.04, 0.03], [0.2, 0.001, 0.5, 0.049], [0.04], [0.03, 0.03, 0.5]):
        expected = multipletests(p, method="holm")[1]
        assert stats.holm(p) == pytest.approx(expected)
    adjusted = stats.holm([0.01, np.nan, 0.04])
    assert np.isnan(adjusted[1])
    assert adjusted[[0, 2]] == pytest.approx(multipletests([0.01, 0.04], method="holm")[1])


def test_wilson_and_mean_intervals() -> None:
    for x, n in ((0, 40), (3, 90), (500, 1000)):
        low, high = stats.wilson_interval(x, n)
        assert (low, high) == pytest.approx(proportion_confint(x, n, method="wilson"))
    rng = np.random.default_rng(5)
    v = _revenue(rng, 500, 0.2, 30)
    low, high = stats.mean_interval(len(v), v.mean(), v.var(ddof=1))
    assert (low, high) == pytest.approx(DescrStatsW(v).tconfint_mean(), rel=1e-9)


def test_sample_ratio_mismatch_matches_scipy() -> None:
    for observed, shares in (
        ([4100, 4020, 1880], [0.45, 0.45, 0.1]),
        ([5000, 5400], [0.5, 0.5]),
        ([900, 100], [9, 1]),
    ):
        statistic, p = stats.sample_ratio_mismatch(observed, shares)
        expected = np.array(shares) / sum(shares) * sum(observed)
        ref = sps.chisquare(observed, expected)
        assert statistic == pytest.approx(ref.statistic)
        assert p == pytest.approx(ref.pvalue)


@pytest.mark.parametrize(
    ("baseline", "mde", "relative", "power", "alpha", "ratio"),
    [
        (0.05, 0.1, True, 0.8, 0.05, 1.0),
        (0.2, 0.02, False, 0.9, 0.01, 9.0),
        (0.5, -0.1, True, 0.8, 0.05, 0.25),
        (0.01, 0.5, True, 0.95, 0.1, 2.0),
    ],
)
def test_rate_sample_size_matches_statsmodels(
    baseline: float, mde: float, relative: bool, power: float, alpha: float, ratio: float
) -> None:
    size = rate_sample_size(baseline, mde, relative=relative, power=power, alpha=alpha, ratio=ratio)
    target = baseline * (1 + mde) if relative else baseline + mde
    h = abs(proportion_effectsize(target, baseline))
    n0 = NormalIndPower().solve_power(
        effect_size=h, power=power, alpha=alpha, ratio=ratio, alternative="two-sided"
    )
    assert size.effect_size == pytest.approx(h)
    assert size.reference == math.ceil(n0)
    assert size.treatment == math.ceil(n0 * ratio - 1e-6)
    assert size.total == size.reference + size.treatment
    # the size reached gives at least the power asked for, one recipient fewer does not
    achieved = NormalIndPower().power(h, size.reference, alpha, ratio=ratio)
    assert achieved >= power
    assert NormalIndPower().power(h, size.reference - 1, alpha, ratio=ratio) < power


@pytest.mark.parametrize(
    ("sd", "mde", "mean", "relative", "ratio"),
    [(40.0, 2.0, None, False, 1.0), (40.0, 0.1, 20.0, True, 3.0), (5.5, 0.3, None, False, 0.5)],
)
def test_mean_sample_size_matches_statsmodels(
    sd: float, mde: float, mean: float | None, relative: bool, ratio: float
) -> None:
    size = mean_sample_size(sd, mde, mean=mean, relative=relative, ratio=ratio)
    delta = mde * mean if relative and mean else mde
    n0 = zt_ind_solve_power(effect_size=delta / sd, power=0.8, alpha=0.05, ratio=ratio)
    assert size.reference == math.ceil(n0)
    assert size.mde_absolute == pytest.approx(delta)


def test_sample_size_bad_input_names_each_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        rate_sample_size(1.5, 0, power=1.2, alpha=0, ratio=-1)
    assert {p.where for p in caught.value.problems} == {
        "baseline",
        "mde",
        "power",
        "alpha",
        "ratio",
    }
    with pytest.raises(InvalidInput) as caught:
        rate_sample_size(0.6, 0.5)  # 0.6 + 0.5 is over 100 %
    assert [p.where for p in caught.value.problems] == ["mde"]
    assert "outside 0–1" in caught.value.problems[0].reason
    with pytest.raises(InvalidInput) as caught:
        mean_sample_size(0, 0.1, relative=True)
    assert {p.where for p in caught.value.problems} == {"sd", "mean"}
    with pytest.raises(InvalidInput) as caught:
        rate_sample_size(True, 0.1)  # type: ignore[arg-type]
    assert [p.where for p in caught.value.problems] == ["baseline"]


def test_bootstrap_shortcut_has_the_distribution_of_a_plain_resampling() -> None:
    """Drawing the buyers only (with a binomial count) against drawing every recipient."""
    rng = np.random.default_rng(11)
    values = _revenue(rng, 600, 0.1, 40)
    spenders = values[values > 0]
    shortcut = resampled_means(spenders, len(values), 20_000, np.random.default_rng(1))
    plain_rng = np.random.default_rng(2)
    plain = values[plain_rng.integers(0, len(values), size=(20_000, len(values)))].mean(axis=1)
    assert shortcut.mean() == pytest.approx(values.mean(), rel=0.01)
    assert shortcut.std() == pytest.approx(plain.std(), rel=0.03)
    assert np.percentile(shortcut, [2.5, 97.5]) == pytest.approx(
        np.percentile(plain, [2.5, 97.5]), rel=0.04
    )


def test_bootstrap_interval_agrees_with_scipy_and_is_seeded() -> None:
    rng = np.random.default_rng(3)
    a, b = _revenue(rng, 1500, 0.12, 40), _revenue(rng, 1400, 0.08, 40)
    ours = bootstrap_means(a[a > 0], len(a), b[b > 0], len(b), resamples=8000, seed=5)
    ref = sps.bootstrap(
        (a, b),
        lambda x, y, axis=-1: x.mean(axis=axis) - y.mean(axis=axis),
        n_resamples=8000,
        method="percentile",
        random_state=np.random.default_rng(9),
    ).confidence_interval
    spread = ref.high - ref.low
    assert abs(ours.difference_low - ref.low) < 0.05 * spread
    assert abs(ours.difference_high - ref.high) < 0.05 * spread
    again = bootstrap_means(a[a > 0], len(a), b[b > 0], len(b), resamples=8000, seed=5)
    assert again == ours
    other = bootstrap_means(a[a > 0], len(a), b[b > 0], len(b), resamples=8000, seed=6)
    assert other != ours
    assert ours.relative_low is not None and ours.relative_high is not None
    assert ours.relative_low < a.mean() / b.mean() - 1 < ours.relative_high


def test_bootstrap_chunks_large_groups_the_same_way() -> None:
    """Chunking bounds memory; the resampled means are what one big draw would give."""
    import rapport.analytics.experiments.bootstrap as boot

    rng = np.random.default_rng(4)
    values = _revenue(rng, 5000, 0.3, 20)
    spenders = values[values > 0]
    whole = resampled_means(spenders, len(values), 300, np.random.default_rng(8))
    budget = boot._CHUNK_DRAWS
    try:
        boot._CHUNK_DRAWS = 3 * len(spenders)  # a few resamples per chunk
        chunked = resampled_means(spenders, len(values), 300, np.random.default_rng(8))
    finally:
        boot._CHUNK_DRAWS = budget
    assert chunked.mean() == pytest.approx(whole.mean(), rel=0.02)
    assert chunked.std() == pytest.approx(whole.std(), rel=0.2)
    assert resampled_means([], 10, 5, rng).tolist() == [0.0] * 5
