"""One model fitted to a set of transactions, with the holdout check when there is one:
what `rapport clv fit` prints, kept apart from the printing so the API can answer it too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from rapport.analytics.clv.bgnbd import BetaGeoModel
from rapport.analytics.clv.gammagamma import GammaGammaModel, frequency_spend_correlation
from rapport.analytics.clv.holdout import HoldoutCheck, purchases_check, spend_check
from rapport.analytics.clv.paretonbd import ParetoNBDModel
from rapport.analytics.clv.summary import summarize
from rapport.analytics.clv.transactions_csv import Transactions
from rapport.errors import InvalidInput, Problem

MODELS = ("bgnbd", "paretonbd", "gammagamma")
# Above this |correlation| of frequency and spend, Gamma-Gamma's independence assumption
# is doubtful enough to say so.
CORRELATION_WARNING = 0.3


@dataclass
class FitReport:
    model: str
    name: str
    params: dict[str, float]
    log_likelihood: float
    customers: int
    repeat_customers: int
    fitted_customers: int
    time_unit: str
    observation_end: date
    calibration_end: date | None
    holdout: HoldoutCheck | None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return _finite(
            {
                "model": self.model,
                "name": self.name,
                "params": self.params,
                "log_likelihood": self.log_likelihood,
                "customers": self.customers,
                "repeat_customers": self.repeat_customers,
                "fitted_customers": self.fitted_customers,
                "time_unit": self.time_unit,
                "observation_end": self.observation_end.isoformat(),
                "calibration_end": self.calibration_end.isoformat()
                if self.calibration_end
                else None,
                **self.extra,
                "holdout": self.holdout.as_json() if self.holdout else None,
                "notes": self.notes,
            }
        )


def _finite(value: Any) -> Any:
    """NaN and infinities become null, so the JSON stays JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def fit_transactions(
    transactions: Transactions,
    *,
    model: str = "bgnbd",
    time_unit: str = "day",
    calibration_end: date | None = None,
) -> FitReport:
    """Summarise, fit ``model`` and, with a calibration end, check it on the holdout."""
    if model not in MODELS:
        raise InvalidInput([Problem("model", f"use one of {', '.join(MODELS)}")])
    if model == "gammagamma" and transactions.amount is None:
        raise InvalidInput([Problem("amount", "the gammagamma model needs amounts")])
    summary = summarize(
        transactions.customer,
        transactions.day,
        transactions.amount,
        time_unit=time_unit,
        calibration_end=calibration_end,
    )
    notes: list[str] = []
    extra: dict[str, float] = {}
    check: HoldoutCheck | None = None
    fitted: BetaGeoModel | ParetoNBDModel | GammaGammaModel
    if model == "gammagamma":
        assert summary.monetary_value is not None
        spend = GammaGammaModel.fit(summary.frequency, summary.monetary_value)
        fitted, used = spend, spend.customers
        skipped = summary.repeat_customers - spend.customers
        if skipped:
            who = "customer" if skipped == 1 else "customers"
            were = "was" if skipped == 1 else "were"
            notes.append(
                f"{skipped:,} {who} with repeat purchases but no positive average spend "
                f"{were} left out of the fit"
            )
        corr = frequency_spend_correlation(summary.frequency, summary.monetary_value)
        extra["frequency_spend_correlation"] = corr
        if math.isfinite(corr) and abs(corr) > CORRELATION_WARNING:
            notes.append(
                f"frequency and average spend correlate ({corr:.2f}); Gamma-Gamma assumes "
                "they do not, so its expected spend is doubtful here"
            )
        if summary.holdout is not None:
            check = spend_check(spend, summary)
    else:
        kind = BetaGeoModel if model == "bgnbd" else ParetoNBDModel
        purchases = kind.fit(summary.frequency, summary.recency, summary.T)
        fitted, used = purchases, purchases.customers
        if summary.holdout is not None:
            check = purchases_check(purchases, summary)
    return FitReport(
        model=model,
        name=fitted.name,
        params=fitted.params,
        log_likelihood=fitted.log_likelihood,
        customers=len(summary),
        repeat_customers=summary.repeat_customers,
        fitted_customers=used,
        time_unit=time_unit,
        observation_end=summary.observation_end,
        calibration_end=calibration_end,
        holdout=check,
        notes=notes,
        extra=extra,
    )
