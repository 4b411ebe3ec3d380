"""Transactions → the RFM summary the CLV models are written in: x, t_x, T and m̄.

The models of Fader and Hardie do not read transactions; they read, per customer, the
number of *repeat* purchases ``x`` (frequency), the time of the last one since the first
``t_x`` (recency), the time since the first purchase ``T`` (age), and for the spend model
the mean value of the repeat purchases ``m̄``. Building that summary the way the papers
(and lifetimes' ``summary_data_from_transaction_data`` / ``calibration_and_holdout_data``)
do is what makes a fitted model comparable with the published ones:

- time is counted in whole days; several purchases on one day are one purchase whose
  value is their sum (a basket split into two orders is still one visit);
- the first purchase day is not a repeat: it starts the customer's clock and is left out
  of both ``x`` and ``m̄`` (customers without a repeat get ``m̄ = 0``);
- weeks are days / 7, fractional, so nothing is lost to rounding;
- with a calibration end, the model's inputs stop there, and the purchase days after it up
  to the observation end are the holdout that tests the model's forecast. Customers whose
  first purchase falls in the holdout are not in the calibration cohort and are left out.

Everything is vectorised NumPy: a million customers are summarised in about a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt

from rapport.analytics.clv.errors import NotEnoughData
from rapport.errors import InvalidInput, Problem

# Length of each time unit in days.
TIME_UNITS: dict[str, float] = {"day": 1.0, "week": 7.0}

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Holdout:
    """What customers of the calibration cohort did after the calibration end."""

    frequency: IntArray  # purchase days in (calibration end, observation end]
    monetary_value: FloatArray | None  # mean value of those transactions (each one, as lifetimes)
    duration: float  # observation end - calibration end, in the summary's time unit


@dataclass(frozen=True)
class Summary:
    """One row per customer, sorted by customer id; the arrays are aligned."""

    customer: npt.NDArray[Any]
    frequency: IntArray  # x: repeat purchase days
    recency: FloatArray  # t_x: last purchase day - first purchase day
    T: FloatArray  # age: observation end - first purchase day
    monetary_value: FloatArray | None  # m̄: mean value of the repeat purchase days, 0 without
    time_unit: str
    observation_end: date  # the calibration end when there is a holdout
    holdout: Holdout | None = None

    def __len__(self) -> int:
        return len(self.frequency)

    @property
    def repeat_customers(self) -> int:
        return int(np.count_nonzero(self.frequency))


def day_numbers(values: Any, where: str = "date") -> IntArray:
    """Days since 1970-01-01 of dates, ``datetime64`` values or day numbers."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    try:
        if arr.dtype.kind != "M":
            arr = np.asarray(values, dtype="datetime64[D]")
        return arr.astype("datetime64[D]").astype(np.int64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput([Problem(where, f"not dates: {exc}")]) from None


def _day(value: date | None, where: str) -> int | None:
    if value is None:
        return None
    return int(day_numbers(np.array([value], dtype="datetime64[D]"), where)[0])


def _as_date(day: int) -> date:
    return np.datetime64(int(day), "D").astype(date)


def summarize(
    customer: Sequence[Any] | npt.NDArray[Any],
    when: Any,
    amount: Any = None,
    *,
    time_unit: str = "day",
    observation_end: date | None = None,
    calibration_end: date | None = None,
) -> Summary:
    """The RFM summary of transactions ``(customer, when[, amount])``.

    ``observation_end`` defaults to the last transaction's day; transactions after it are
    ignored. With ``calibration_end`` the summary describes the calibration period and
    carries the holdout (see the module docstring).
    """
    problems: list[Problem] = []
    if time_unit not in TIME_UNITS:
        problems.append(Problem("time_unit", f"use one of {', '.join(TIME_UNITS)}"))
    ids = np.asarray(customer)
    days = day_numbers(when, "when")
    values = None if amount is None else np.asarray(amount, dtype=np.float64)
    if (
        ids.ndim != 1
        or days.shape != ids.shape
        or (values is not None and values.shape != ids.shape)
    ):
        problems.append(Problem("transactions", "customer, when and amount differ in length"))
    elif values is not None and not np.all(np.isfinite(values)):
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        problems.append(Problem(f"amount[{bad}]", "not a finite number"))
    if problems:
        raise InvalidInput(problems)
    if len(days) == 0:
        raise NotEnoughData("there are no transactions")

    end = _day(observation_end, "observation_end")
    end = int(days.max()) if end is None else end
    cal_end = _day(calibration_end, "calibration_end")
    if cal_end is not None and cal_end >= end:
        raise InvalidInput(
            [
                Problem(
                    "calibration_end",
                    f"must be before the observation end ({_as_date(end).isoformat()})",
                )
            ]
        )
    unit = TIME_UNITS[time_unit]
    cutoff = end if cal_end is None else cal_end
    inside = days <= cutoff
    if not inside.any():
        raise NotEnoughData(f"there are no transactions up to {_as_date(cutoff).isoformat()}")
    uniq, counts, first, last, monetary = _per_customer(
        ids[inside], days[inside], None if values is None else values[inside]
    )
    holdout = None
    if cal_end is not None:
        holdout = _holdout(uniq, ids, days, values, cal_end, end, unit)
    return Summary(
        customer=uniq,
        frequency=counts - 1,
        recency=(last - first) / unit,
        T=(cutoff - first) / unit,
        monetary_value=monetary,
        time_unit=time_unit,
        observation_end=_as_date(cutoff),
        holdout=holdout,
    )


def _sorted_by_customer_and_day(
    ids: npt.NDArray[Any], days: IntArray
) -> tuple[npt.NDArray[Any], IntArray, IntArray, npt.NDArray[Any] | None]:
    """One sort on a combined (customer, day) integer key: the permutation, the sorted
    keys, the sorted customer numbers, and the distinct ids when they had to be numbered.

    Integer ids are used as they are (one sort instead of two); other ids (strings) are
    numbered by ``np.unique`` first.
    """
    low = int(days.min())
    span = int(days.max()) - low + 1
    uniq = None
    if ids.dtype.kind in "iu" and (int(ids.max()) - int(ids.min()) + 1) * span < 2**62:
        codes = ids.astype(np.int64) - int(ids.min())
    else:
        uniq, inverse = np.unique(ids, return_inverse=True)
        codes = inverse.reshape(-1).astype(np.int64)
    key = codes * span + (days - low)
    order = np.argsort(key)
    return order, key[order], codes[order], uniq


def _per_customer(
    ids: npt.NDArray[Any], days: IntArray, values: FloatArray | None
) -> tuple[npt.NDArray[Any], IntArray, IntArray, IntArray, FloatArray | None]:
    """Distinct customers (sorted), their purchase days, first and last day, and the mean
    value of the repeat days."""
    order, key, codes, uniq = _sorted_by_customer_and_day(ids, days)
    sorted_days = days[order]
    n = len(key)
    new_day = np.ones(n, dtype=bool)
    new_day[1:] = key[1:] != key[:-1]
    day_starts = np.flatnonzero(new_day)
    day_codes, day_days = codes[day_starts], sorted_days[day_starts]
    cust_starts = np.flatnonzero(np.r_[True, day_codes[1:] != day_codes[:-1]])
    counts = np.diff(np.r_[cust_starts, len(day_codes)]).astype(np.int64)
    first = day_days[cust_starts]
    last = day_days[cust_starts + counts - 1]
    customer = ids[order[day_starts[cust_starts]]] if uniq is None else uniq
    monetary = None
    if values is not None:
        day_values = np.add.reduceat(values[order], day_starts)
        day_values[cust_starts] = 0.0  # the first day starts the clock: not a repeat
        repeat_sum = np.add.reduceat(day_values, cust_starts)
        repeats = counts - 1
        monetary = np.divide(
            repeat_sum, repeats, out=np.zeros(len(counts)), where=repeats > 0
        ).astype(np.float64)
    return customer, counts, first, last, monetary


def _holdout(
    cohort: npt.NDArray[Any],
    ids: npt.NDArray[Any],
    days: IntArray,
    values: FloatArray | None,
    cal_end: int,
    end: int,
    unit: float,
) -> Holdout:
    later = (days > cal_end) & (days <= end)
    if not later.any():
        raise NotEnoughData(
            f"there are no transactions after the calibration end ({_as_date(cal_end)})"
        )
    later_ids, later_days = ids[later], days[later]
    position = np.searchsorted(cohort, later_ids)
    position = np.minimum(position, len(cohort) - 1)
    known = cohort[position] == later_ids  # first purchase in the calibration period
    position, later_days = position[known], later_days[known]
    frequency = np.zeros(len(cohort), dtype=np.int64)
    monetary = None
    if len(position):
        order = np.lexsort((later_days, position))
        pos, dd = position[order], later_days[order]
        new_day = np.r_[True, (pos[1:] != pos[:-1]) | (dd[1:] != dd[:-1])]
        frequency = np.bincount(pos[new_day], minlength=len(cohort)).astype(np.int64)
    if values is not None:
        spent = np.bincount(position, weights=values[later][known], minlength=len(cohort))
        n = np.bincount(position, minlength=len(cohort))
        monetary = np.divide(spent, n, out=np.zeros(len(cohort)), where=n > 0)
    return Holdout(frequency=frequency, monetary_value=monetary, duration=(end - cal_end) / unit)
