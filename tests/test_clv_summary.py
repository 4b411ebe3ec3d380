"""Transactions → the RFM summary: a hand-worked example, lifetimes' own functions on random
transactions (days and weeks, with and without a holdout), and each kind of bad input."""

from __future__ import annotations

import warnings
from datetime import date

import numpy as np
import pandas as pd
import pytest

from rapport.analytics.clv.errors import NotEnoughData
from rapport.analytics.clv.summary import summarize
from rapport.errors import InvalidInput

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from lifetimes.utils import calibration_and_holdout_data, summary_data_from_transaction_data

D = np.datetime64


def _example() -> tuple[list[str], list[np.datetime64], list[float]]:
    rows = [
        ("ann", "2024-01-01", 10.0),
        ("ann", "2024-01-01", 5.0),  # same day: one purchase of 15
        ("ann", "2024-01-08", 20.0),
        ("ann", "2024-01-15", 30.0),
        ("bob", "2024-01-22", 7.0),
        ("ann", "2024-01-29", 1.0),
    ]
    return [r[0] for r in rows], [D(r[1]) for r in rows], [r[2] for r in rows]


def test_a_worked_example_in_days_and_weeks() -> None:
    ids, when, amount = _example()
    s = summarize(ids, when, amount, observation_end=date(2024, 1, 29))
    assert list(s.customer) == ["ann", "bob"]
    # Ann: first day Jan 1 (15), repeats Jan 8, 15, 29 → x = 3, t_x = 28, T = 28.
    assert s.frequency.tolist() == [3, 0]
    assert s.recency.tolist() == [28.0, 0.0]
    assert s.T.tolist() == [28.0, 7.0]
    assert s.monetary_value is not None
    assert s.monetary_value.tolist() == [pytest.approx((20 + 30 + 1) / 3), 0.0]
    weeks = summarize(ids, when, amount, time_unit="week", observation_end=date(2024, 1, 29))
    assert weeks.recency.tolist() == [4.0, 0.0]
    assert weeks.T.tolist() == [4.0, 1.0]
    assert weeks.frequency.tolist() == s.frequency.tolist()


def test_observation_end_drops_later_transactions() -> None:
    ids, when, amount = _example()
    s = summarize(ids, when, amount, observation_end=date(2024, 1, 20))
    assert list(s.customer) == ["ann"]  # Bob's first purchase is later
    assert (s.frequency[0], s.recency[0], s.T[0]) == (2, 14.0, 19.0)


def test_calibration_and_holdout_by_hand() -> None:
    ids, when, amount = _example()
    s = summarize(ids, when, amount, calibration_end=date(2024, 1, 10))
    # Calibration to Jan 10: Ann repeats once (Jan 8, 20), aged 9 days; Bob is not in the
    # cohort (his first purchase is in the holdout).
    assert list(s.customer) == ["ann"]
    assert (s.frequency[0], s.recency[0], s.T[0]) == (1, 7.0, 9.0)
    assert s.monetary_value is not None and s.monetary_value[0] == 20.0
    assert s.holdout is not None
    assert s.holdout.frequency.tolist() == [2]  # Jan 15 and Jan 29
    assert s.holdout.monetary_value is not None
    assert s.holdout.monetary_value.tolist() == [15.5]
    assert s.holdout.duration == 19.0
    assert s.observation_end == date(2024, 1, 10)


def _random_transactions(seed: int, numbered: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 3000
    customers = rng.integers(0, 400, n)
    days = rng.integers(0, 200, n)
    # Many same-day repeats: some customers buy several things on one day.
    dup = rng.random(n) < 0.15
    days[dup] = days[np.maximum(np.flatnonzero(dup) - 1, 0)]
    customers[dup] = customers[np.maximum(np.flatnonzero(dup) - 1, 0)]
    return pd.DataFrame(
        {
            "customer": customers * 1000 - 7 if numbered else [f"c{c:03d}" for c in customers],
            "date": pd.to_datetime("2023-01-01") + pd.to_timedelta(days, unit="D"),
            "amount": np.round(rng.gamma(2.0, 20.0, n), 2),
        }
    )


def _ours(df: pd.DataFrame, **kwargs: object):  # type: ignore[no-untyped-def]
    return summarize(
        df["customer"].to_numpy(),
        df["date"].to_numpy(),
        df["amount"].to_numpy(),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("unit, multiplier", [("day", 1), ("week", 7)])
@pytest.mark.parametrize("numbered", [False, True], ids=["text ids", "integer ids"])
def test_summary_equals_lifetimes(unit: str, multiplier: int, numbered: bool) -> None:
    df = _random_transactions(11, numbered)
    theirs = summary_data_from_transaction_data(
        df, "customer", "date", monetary_value_col="amount", freq="D", freq_multiplier=multiplier
    )
    ours = _ours(df, time_unit=unit)
    theirs = theirs.loc[ours.customer]
    assert np.array_equal(ours.frequency, theirs["frequency"].to_numpy())
    assert np.allclose(ours.recency, theirs["recency"].to_numpy(), rtol=1e-13, atol=0)
    assert np.allclose(ours.T, theirs["T"].to_numpy(), rtol=1e-13, atol=0)
    assert ours.monetary_value is not None
    assert np.allclose(ours.monetary_value, theirs["monetary_value"].to_numpy(), rtol=1e-12)


@pytest.mark.parametrize("unit, multiplier", [("day", 1), ("week", 7)])
@pytest.mark.parametrize("numbered", [False, True], ids=["text ids", "integer ids"])
def test_calibration_and_holdout_equal_lifetimes(
    unit: str, multiplier: int, numbered: bool
) -> None:
    df = _random_transactions(12, numbered)
    end = pd.Timestamp("2023-05-15")
    theirs = calibration_and_holdout_data(
        df,
        "customer",
        "date",
        calibration_period_end=end,
        freq="D",
        freq_multiplier=multiplier,
        monetary_value_col="amount",
    )
    ours = _ours(df, time_unit=unit, calibration_end=end.date())
    assert ours.holdout is not None and ours.holdout.monetary_value is not None
    assert ours.monetary_value is not None
    assert sorted(theirs.index) == list(ours.customer)
    theirs = theirs.loc[ours.customer]
    assert np.array_equal(ours.frequency, theirs["frequency_cal"].to_numpy())
    assert np.allclose(ours.recency, theirs["recency_cal"].to_numpy(), rtol=1e-13, atol=0)
    assert np.allclose(ours.T, theirs["T_cal"].to_numpy(), rtol=1e-13, atol=0)
    assert np.allclose(ours.monetary_value, theirs["monetary_value_cal"].to_numpy(), rtol=1e-12)
    assert np.array_equal(ours.holdout.frequency, theirs["frequency_holdout"].to_numpy())
    assert np.allclose(
        ours.holdout.monetary_value, theirs["monetary_value_holdout"].to_numpy(), rtol=1e-12
    )
    assert ours.holdout.duration == theirs["duration_holdout"].iloc[0]


def test_bad_input_names_what_and_where() -> None:
    ids, when, amount = _example()
    with pytest.raises(InvalidInput) as exc:
        summarize(ids, when[:-1], amount)
    assert exc.value.problems[0].where == "transactions"
    with pytest.raises(InvalidInput) as exc:
        summarize(ids, when, [*amount[:-1], float("nan")])
    assert exc.value.problems[0].where == "amount[5]"
    with pytest.raises(InvalidInput) as exc:
        summarize(ids, when, amount, time_unit="month")
    assert exc.value.problems[0].where == "time_unit"
    with pytest.raises(InvalidInput) as exc:
        summarize(ids, when, amount, calibration_end=date(2024, 1, 29))
    assert exc.value.problems[0].where == "calibration_end"
    assert "before the observation end (2024-01-29)" in exc.value.problems[0].reason
    with pytest.raises(InvalidInput) as exc:
        summarize(ids, ["2024-01-01", "yesterday", *when[2:]], amount)
    assert exc.value.problems[0].where == "when"


def test_too_little_data_is_said_plainly() -> None:
    ids, when, amount = _example()
    with pytest.raises(NotEnoughData, match="no transactions"):
        summarize([], np.array([], dtype="datetime64[D]"), [])
    with pytest.raises(NotEnoughData, match="no transactions up to 2023-12-31"):
        summarize(ids, when, amount, observation_end=date(2023, 12, 31))
    with pytest.raises(NotEnoughData, match="after the calibration end"):
        summarize(
            ids, when, amount, calibration_end=date(2024, 1, 2), observation_end=date(2024, 1, 5)
        )
