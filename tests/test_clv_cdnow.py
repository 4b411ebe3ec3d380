"""The CLV models on the real CDNOW data that ships inside lifetimes, against lifetimes
fitted in the same test to the same data.

"Agree to 3 significant digits" is checked as a relative difference below 5·10⁻⁴, which is
at least as strict for every value. Our maximum must also be at least as high as the
likelihood at lifetimes' parameters: agreeing with a peer is not enough if the peer
stopped early.
"""

from __future__ import annotations

import warnings
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from rapport.analytics.clv import bgnbd, gammagamma, paretonbd
from rapport.analytics.clv.bgnbd import BetaGeoModel
from rapport.analytics.clv.gammagamma import GammaGammaModel
from rapport.analytics.clv.holdout import purchases_check, spend_check
from rapport.analytics.clv.paretonbd import ParetoNBDModel
from rapport.analytics.clv.summary import summarize
from rapport.analytics.clv.value import customer_lifetime_value

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import lifetimes
    from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter
    from lifetimes.utils import calibration_and_holdout_data, summary_data_from_transaction_data

DATASETS = Path(lifetimes.__file__).parent / "datasets"
SAME_3_DIGITS = 5e-4


def same_to_3_digits(ours: dict[str, float], theirs: dict[str, float]) -> None:
    for name, value in theirs.items():
        assert abs(ours[name] - value) <= SAME_3_DIGITS * abs(value), (name, ours[name], value)


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    """The 2,357-customer CDNOW cohort of the papers, in weeks, with m̄ (columns x, t_x, T, zbar)."""
    df = pd.read_csv(DATASETS / "cdnow_customers_summary_with_transactions.csv")
    df.columns = ["id", "frequency", "recency", "T", "monetary_value"]
    return df


@pytest.fixture(scope="module")
def master() -> pd.DataFrame:
    """All 69,659 CDNOW transactions of the 23,570 customers."""
    df = pd.read_csv(
        DATASETS / "CDNOW_master.txt", sep=r"\s+", dtype={"customer_id": str, "date": str}
    )
    df["date"] = pd.to_datetime(df["date"], format="%Y%m%d")
    return df


@pytest.fixture(scope="module")
def their_paretonbd(sample: pd.DataFrame) -> Any:
    # lifetimes' Nelder-Mead starts at a random point and stops at tol 1e-4 by default;
    # a fixed seed and a tighter tolerance make its answer repeatable.
    np.random.seed(2357)
    return ParetoNBDFitter().fit(*_rfm(sample), tol=1e-8, maxiter=10_000)


def _rfm(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return df["frequency"].to_numpy(), df["recency"].to_numpy(), df["T"].to_numpy()


def test_bgnbd_matches_lifetimes(sample: pd.DataFrame) -> None:
    x, t_x, T = _rfm(sample)
    theirs = BetaGeoFitter().fit(x, t_x, T)
    ours = BetaGeoModel.fit(x, t_x, T)
    same_to_3_digits(ours.params, theirs.params_.to_dict())
    at_theirs = bgnbd.log_likelihood(tuple(theirs.params_), x, t_x, T)
    assert ours.log_likelihood >= at_theirs - 1e-6
    assert (ours.customers, ours.repeat_customers) == (len(x), int((x > 0).sum()))


def test_paretonbd_matches_lifetimes(sample: pd.DataFrame, their_paretonbd: Any) -> None:
    x, t_x, T = _rfm(sample)
    theirs = their_paretonbd
    ours = ParetoNBDModel.fit(x, t_x, T)
    same_to_3_digits(ours.params, theirs.params_.to_dict())
    at_theirs = paretonbd.log_likelihood(tuple(theirs.params_), x, t_x, T)
    assert ours.log_likelihood >= at_theirs - 1e-6


def test_gammagamma_matches_lifetimes(sample: pd.DataFrame) -> None:
    x, m = sample["frequency"].to_numpy(), sample["monetary_value"].to_numpy()
    repeat = x > 0
    theirs = GammaGammaFitter().fit(x[repeat], m[repeat])
    ours = GammaGammaModel.fit(x, m)  # customers without a repeat are left out inside
    same_to_3_digits(ours.params, {"p": theirs.params_["p"], "q": theirs.params_["q"],
                                   "gamma": theirs.params_["v"]})  # fmt: skip
    at_theirs = gammagamma.log_likelihood(tuple(theirs.params_), x, m)
    assert ours.log_likelihood >= at_theirs - 1e-6
    assert ours.customers == int(repeat.sum())


def _close(ours: Any, theirs: Any, rtol: float) -> None:
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    assert ours.shape == theirs.shape
    assert np.allclose(ours, theirs, rtol=rtol, atol=1e-12), np.max(
        np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-12)
    )


def test_predictions_agree_with_lifetimes(sample: pd.DataFrame, their_paretonbd: Any) -> None:
    """Same parameters → the same numbers (to rounding); each its own fit → close."""
    x, t_x, T = _rfm(sample)
    m = sample["monetary_value"].to_numpy()
    bg = BetaGeoFitter().fit(x, t_x, T)
    pn = their_paretonbd
    gg = GammaGammaFitter().fit(x[x > 0], m[x > 0])
    given_bg = BetaGeoModel(**bg.params_.to_dict())
    given_pn = ParetoNBDModel(**pn.params_.to_dict())
    given_gg = GammaGammaModel(gg.params_["p"], gg.params_["q"], gg.params_["v"])
    for ours, theirs in ((given_bg, bg), (given_pn, pn)):
        for t in (1.0, 39.0, 52.0):
            _close(
                ours.conditional_expected_number_of_purchases_up_to_time(t, x, t_x, T),
                theirs.conditional_expected_number_of_purchases_up_to_time(t, x, t_x, T),
                1e-9,
            )
        _close(
            ours.conditional_probability_alive(x, t_x, T),
            theirs.conditional_probability_alive(x, t_x, T),
            1e-9,
        )
        index = sample.index
        their_clv = gg.customer_lifetime_value(
            theirs,
            pd.Series(x, index=index),
            pd.Series(t_x, index=index),
            pd.Series(T, index=index),
            pd.Series(m, index=index),
            time=12,
            discount_rate=0.01,
            freq="W",
        )
        our_clv = customer_lifetime_value(ours, given_gg, x, t_x, T, m, time_unit="week")
        _close(our_clv, their_clv.to_numpy(), 1e-9)
    _close(
        given_gg.conditional_expected_average_profit(x, m),
        gg.conditional_expected_average_profit(pd.Series(x), pd.Series(m)).to_numpy(),
        1e-12,
    )
    # Each with its own fit: the parameters differ in the 6th digit, the values barely.
    fitted_bg = BetaGeoModel.fit(x, t_x, T)
    fitted_gg = GammaGammaModel.fit(x, m)
    _close(
        fitted_bg.conditional_expected_number_of_purchases_up_to_time(39.0, x, t_x, T),
        bg.conditional_expected_number_of_purchases_up_to_time(39.0, x, t_x, T),
        1e-4,
    )
    _close(
        customer_lifetime_value(fitted_bg, fitted_gg, x, t_x, T, m, time_unit="week"),
        gg.customer_lifetime_value(
            bg, pd.Series(x), pd.Series(t_x), pd.Series(T), pd.Series(m), freq="W"
        ).to_numpy(),
        1e-4,
    )


def test_summary_of_the_master_file_equals_lifetimes(master: pd.DataFrame) -> None:
    theirs = summary_data_from_transaction_data(
        master, "customer_id", "date", monetary_value_col="dollar_value", freq="D",
        freq_multiplier=7,
    )  # fmt: skip
    ours = summarize(
        master["customer_id"].to_numpy(),
        master["date"].to_numpy(),
        master["dollar_value"].to_numpy(),
        time_unit="week",
    )
    theirs = theirs.loc[ours.customer]
    assert len(ours) == len(theirs) == master["customer_id"].nunique()
    assert np.array_equal(ours.frequency, theirs["frequency"].to_numpy())
    assert np.allclose(ours.recency, theirs["recency"].to_numpy(), rtol=1e-13, atol=0)
    assert np.allclose(ours.T, theirs["T"].to_numpy(), rtol=1e-13, atol=0)
    assert ours.monetary_value is not None
    assert np.allclose(ours.monetary_value, theirs["monetary_value"].to_numpy(), rtol=1e-12)


def test_calibration_holdout_check_on_cdnow(master: pd.DataFrame) -> None:
    """39 weeks of calibration, 39 of holdout, as in the papers (here all 23,570 customers)."""
    end = date(1997, 9, 30)
    theirs = calibration_and_holdout_data(
        master, "customer_id", "date", calibration_period_end=pd.Timestamp(end), freq="D",
        freq_multiplier=7, monetary_value_col="dollar_value",
    )  # fmt: skip
    summary = summarize(
        master["customer_id"].to_numpy(),
        master["date"].to_numpy(),
        master["dollar_value"].to_numpy(),
        time_unit="week",
        calibration_end=end,
    )
    assert summary.holdout is not None
    theirs = theirs.loc[summary.customer]
    assert np.array_equal(summary.holdout.frequency, theirs["frequency_holdout"].to_numpy())
    model = BetaGeoModel.fit(summary.frequency, summary.recency, summary.T)
    reference = BetaGeoFitter().fit(
        theirs["frequency_cal"].to_numpy(), theirs["recency_cal"].to_numpy(),
        theirs["T_cal"].to_numpy(),
    )  # fmt: skip
    same_to_3_digits(model.params, reference.params_.to_dict())
    check = purchases_check(model, summary)
    print(f"\nBG/NBD on CDNOW, calibration to {end}, holdout {check.duration:g} weeks")
    print(f"{'x (cal)':>8} {'customers':>10} {'actual':>9} {'predicted':>9}")
    for row in [*check.by_frequency, check.total]:
        print(f"{row.frequency:>8} {row.customers:>10,} {row.actual:>9.0f} {row.predicted:>9.0f}")
    assert check.total.customers == len(summary) == sum(r.customers for r in check.by_frequency)
    assert check.total.actual == summary.holdout.frequency.sum()
    # The forecast follows the actual purchases: the total within 20 %, the means per group
    # rising with calibration frequency as the actual ones do, and far closer to what
    # happened than the naive forecast "each buys on at their calibration rate".
    assert 0.8 < check.total.predicted / check.total.actual < 1.2
    predicted_means = [r.predicted_mean for r in check.by_frequency]
    actual_means = [r.actual_mean for r in check.by_frequency]
    assert predicted_means == sorted(predicted_means)
    assert np.corrcoef(predicted_means, actual_means)[0, 1] > 0.98
    naive = summary.frequency / np.where(summary.T > 0, summary.T, 1.0) * check.duration
    group = np.minimum(summary.frequency, 7)
    naive_by_group = np.bincount(group, weights=naive)
    actual_by_group = np.array([r.actual for r in check.by_frequency])
    model_error = np.abs(np.array([r.predicted for r in check.by_frequency]) - actual_by_group)
    assert model_error.sum() < 0.5 * np.abs(naive_by_group - actual_by_group).sum()
    # The spend model forecasts the mean value of the holdout transactions.
    spend = spend_check(GammaGammaModel.fit(summary.frequency, summary.monetary_value), summary)
    assert 0.9 < spend.total.predicted / spend.total.actual < 1.1
