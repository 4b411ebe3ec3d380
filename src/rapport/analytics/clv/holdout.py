"""The calibration/holdout check: does the model forecast what customers did next?

The model is fitted to the calibration period only; for each customer it then forecasts
the purchases of the holdout period (E[Y(t) | x, t_x, T] with t the holdout's length),
which are compared with the purchases actually made. Fader, Hardie and Lee show it as the
mean per customer grouped by calibration frequency (their figure 4 for CDNOW): a good
model follows the actual means across the groups, including the customers with no repeat
purchase in calibration, where regression to the mean is strongest.

For the spend model the same grouping compares the expected spend per transaction with the
mean value of the holdout transactions of the customers who bought in the holdout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rapport.analytics.clv.fitting import FloatArray, IntArray
from rapport.analytics.clv.gammagamma import GammaGammaModel
from rapport.analytics.clv.summary import Summary
from rapport.analytics.clv.value import PurchaseModel
from rapport.errors import InvalidInput, Problem

# Groups 0, 1, …, TOP−1 and "TOP+", as in the paper's figure.
TOP = 7


@dataclass(frozen=True)
class HoldoutRow:
    frequency: str  # calibration frequency: "0".."6", "7+" or "all"
    customers: int
    actual: float  # total over the group's customers
    predicted: float

    @property
    def actual_mean(self) -> float:
        return self.actual / self.customers if self.customers else 0.0

    @property
    def predicted_mean(self) -> float:
        return self.predicted / self.customers if self.customers else 0.0

    def as_json(self) -> dict[str, float | int | str]:
        data: dict[str, float | int | str] = asdict(self)
        data["actual_mean"] = self.actual_mean
        data["predicted_mean"] = self.predicted_mean
        return data


@dataclass(frozen=True)
class HoldoutCheck:
    measure: str  # "purchases" or "spend per transaction"
    duration: float
    time_unit: str
    total: HoldoutRow
    by_frequency: list[HoldoutRow]

    def as_json(self) -> dict[str, object]:
        return {
            "measure": self.measure,
            "duration": self.duration,
            "time_unit": self.time_unit,
            "total": self.total.as_json(),
            "by_frequency": [row.as_json() for row in self.by_frequency],
        }


def _holdout_of(summary: Summary) -> tuple[IntArray, float]:
    if summary.holdout is None:
        raise InvalidInput([Problem("calibration_end", "the summary has no holdout period")])
    return summary.holdout.frequency, summary.holdout.duration


def _grouped(
    frequency: IntArray, actual: FloatArray, predicted: FloatArray, top: int
) -> list[HoldoutRow]:
    group = np.minimum(frequency, top)
    customers = np.bincount(group, minlength=top + 1)
    actual_sum = np.bincount(group, weights=actual, minlength=top + 1)
    predicted_sum = np.bincount(group, weights=predicted, minlength=top + 1)
    return [
        HoldoutRow(
            f"{k}+" if k == top else str(k),
            int(customers[k]),
            float(actual_sum[k]),
            float(predicted_sum[k]),
        )
        for k in range(top + 1)
    ]


def purchases_check(model: PurchaseModel, summary: Summary, top: int = TOP) -> HoldoutCheck:
    """Forecast vs actual holdout purchases, in total and by calibration frequency."""
    actual, duration = _holdout_of(summary)
    predicted = model.conditional_expected_number_of_purchases_up_to_time(
        duration, summary.frequency, summary.recency, summary.T
    )
    rows = _grouped(summary.frequency, actual.astype(np.float64), predicted, top)
    total = HoldoutRow("all", len(summary), float(actual.sum()), float(np.asarray(predicted).sum()))
    return HoldoutCheck("purchases", duration, summary.time_unit, total, rows)


def spend_check(spend: GammaGammaModel, summary: Summary, top: int = TOP) -> HoldoutCheck:
    """Expected vs actual spend per transaction of the customers who bought in the holdout
    (``actual`` and ``predicted`` are sums of per-customer means; see the ``*_mean``)."""
    holdout_frequency, duration = _holdout_of(summary)
    assert summary.holdout is not None
    if summary.monetary_value is None or summary.holdout.monetary_value is None:
        raise InvalidInput([Problem("amount", "the spend check needs transaction amounts")])
    bought = holdout_frequency > 0
    x = summary.frequency[bought]
    expected = spend.conditional_expected_average_profit(x, summary.monetary_value[bought])
    actual = summary.holdout.monetary_value[bought]
    rows = _grouped(x, actual, expected, top)
    total = HoldoutRow("all", int(bought.sum()), float(actual.sum()), float(expected.sum()))
    return HoldoutCheck("spend per transaction", duration, summary.time_unit, total, rows)
