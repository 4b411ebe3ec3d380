"""Scoring the store: fit the models to every customer's orders and write the predictions
onto the cards (``customers.predicted_clv``, ``expected_purchases_90d``, ``churn_risk``,
``clv_scored_at``), usable in segment rules.

The orders are those counted on the card (``completed``, net of refunds), of live profiles
(a merged profile's orders moved to the survivor), up to ``now``'s day; a day is a UTC
day. They are read as three columns straight into NumPy (``store_orders``), summarised
exactly as a CSV of transactions would be (``summary.summarize``), and the models are
fitted once for the whole store:

- a purchase model (BG/NBD by default, or Pareto/NBD) gives P(alive), whose complement is
  ``churn_risk``, and the purchases expected in the next 90 days;
- Gamma-Gamma gives each customer's expected spend per purchase, and with the purchase
  model the discounted value of the next ``horizon_months`` months (``predicted_clv``).

Customers without a counted order are not part of the models (their clock starts at the
first purchase) and keep NULL in all four columns; a customer whose orders were all
cancelled or refunded since the last run goes back to NULL.

Nothing is written when the data cannot support the models (fewer than
``MIN_REPEAT_CUSTOMERS`` customers with a repeat purchase), when a fit does not converge,
or when the spend model has no finite mean: the previous scores stay as they were. The
writes are one transaction: a temporary table filled in chunks, then ``UPDATE … FROM`` in
chunks of ids, then one statement clearing the customers no longer scored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa

from rapport.analytics.clv.bgnbd import BetaGeoModel
from rapport.analytics.clv.errors import NotEnoughData
from rapport.analytics.clv.fitting import MIN_REPEAT_CUSTOMERS, FloatArray, Patterns
from rapport.analytics.clv.gammagamma import GammaGammaModel
from rapport.analytics.clv.paretonbd import ParetoNBDModel
from rapport.analytics.clv.store_orders import read_counted_orders
from rapport.analytics.clv.summary import Summary, summarize
from rapport.analytics.clv.value import check_horizon, discounted_purchases
from rapport.store.engine import writing
from rapport.store.tables import customers

PURCHASE_MODELS: dict[str, type[BetaGeoModel] | type[ParetoNBDModel]] = {
    "bgnbd": BetaGeoModel,
    "paretonbd": ParetoNBDModel,
}
DEFAULT_HORIZON_MONTHS = 12
DEFAULT_MONTHLY_DISCOUNT = 0.01
EXPECTED_PURCHASES_DAYS = 90
WRITE_CHUNK = 50_000

# (stage, done, total): "reading" (orders), "fitting" (models), "writing" (customers).
Progress = Callable[[str, int, int], None]

# The card fields scoring writes: segments whose rules read them are re-checked after it.
SCORED_FIELDS = frozenset({"predicted_clv", "expected_purchases_90d", "churn_risk"})


def _quiet(stage: str, done: int, total: int) -> None:
    pass


@dataclass
class ScoreResult:
    scored_at: datetime
    model: str
    params: dict[str, float]
    log_likelihood: float
    spend_params: dict[str, float]
    spend_log_likelihood: float
    customers: int  # customers scored (with a counted order)
    repeat_customers: int
    spend_customers: int  # customers the spend model was fitted to
    cleared: int  # customers set back to NULL
    horizon_months: int
    monthly_discount: float
    total_predicted_clv: float
    mean_churn_risk: float
    expected_purchases_90d: float  # over all scored customers
    seconds: dict[str, float] = field(default_factory=dict)


def store_summary(conn: sa.Connection, now: datetime, progress: Progress = _quiet) -> Summary:
    """The RFM summary (in days) of every live customer with a counted order; orders
    after ``now``'s UTC day are left out."""
    ids, days, amounts = read_counted_orders(
        conn, lambda done, total: progress("reading", done, total)
    )
    if len(ids) == 0:
        raise NotEnoughData("the store has no completed orders to learn from")
    today = now.date()
    return summarize(ids, days, amounts, time_unit="day", observation_end=today)


@dataclass(frozen=True)
class Scores:
    customer: np.ndarray
    predicted_clv: FloatArray
    expected_purchases_90d: FloatArray
    churn_risk: FloatArray


def predict(
    summary: Summary,
    model: str = "bgnbd",
    *,
    horizon_months: int = DEFAULT_HORIZON_MONTHS,
    monthly_discount: float = DEFAULT_MONTHLY_DISCOUNT,
    min_repeat_customers: int = MIN_REPEAT_CUSTOMERS,
) -> tuple[Scores, BetaGeoModel | ParetoNBDModel, GammaGammaModel]:
    """Fit both models to ``summary`` and predict every customer in it.

    Per-customer quantities that depend only on (x, t_x, T) are computed once per distinct
    history and spread back; only the expected spend is per customer.
    """
    check_horizon(horizon_months, monthly_discount, summary.time_unit)
    if model not in PURCHASE_MODELS:
        raise ValueError(
            f"unknown purchase model {model!r}; use one of {', '.join(PURCHASE_MODELS)}"
        )
    assert summary.monetary_value is not None
    patterns = Patterns.of(summary.frequency, summary.recency, summary.T)
    purchases = PURCHASE_MODELS[model].fit_patterns(
        patterns, min_repeat_customers=min_repeat_customers
    )
    spend = GammaGammaModel.fit(
        summary.frequency, summary.monetary_value, min_repeat_customers=min_repeat_customers
    )
    x, t_x, age = patterns.frequency, patterns.recency, patterns.T
    days_90 = EXPECTED_PURCHASES_DAYS / (7.0 if summary.time_unit == "week" else 1.0)
    alive = purchases.conditional_probability_alive(x, t_x, age)
    expected_90 = alive * purchases.expected_purchases_while_alive(days_90, x, age)
    units = discounted_purchases(
        purchases,
        x,
        t_x,
        age,
        months=horizon_months,
        monthly_discount=monthly_discount,
        time_unit=summary.time_unit,
    )
    spend_each = spend.conditional_expected_average_profit(
        summary.frequency, summary.monetary_value
    )
    back = patterns.inverse
    scores = Scores(
        customer=summary.customer,
        predicted_clv=spend_each * units[back],
        expected_purchases_90d=expected_90[back],
        churn_risk=np.clip(1.0 - alive[back], 0.0, 1.0),
    )
    return scores, purchases, spend


def score_store(
    engine: sa.Engine,
    now: datetime,
    *,
    model: str = "bgnbd",
    horizon_months: int = DEFAULT_HORIZON_MONTHS,
    monthly_discount: float = DEFAULT_MONTHLY_DISCOUNT,
    min_repeat_customers: int = MIN_REPEAT_CUSTOMERS,
    progress: Progress = _quiet,
) -> ScoreResult:
    """Fit, predict and write every customer's scores; see the module docstring."""
    check_horizon(horizon_months, monthly_discount, "day")
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with engine.connect() as conn:
        summary = store_summary(conn, now, progress)
    seconds["read"] = time.perf_counter() - started
    progress("fitting", 0, 1)
    mark = time.perf_counter()
    scores, purchases, spend = predict(
        summary,
        model,
        horizon_months=horizon_months,
        monthly_discount=monthly_discount,
        min_repeat_customers=min_repeat_customers,
    )
    seconds["fit_and_predict"] = time.perf_counter() - mark
    progress("fitting", 1, 1)
    mark = time.perf_counter()
    with writing(engine) as conn:
        cleared = write_scores(conn, scores, now, progress)
    seconds["write"] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - started
    return ScoreResult(
        scored_at=now,
        model=model,
        params=purchases.params,
        log_likelihood=purchases.log_likelihood,
        spend_params=spend.params,
        spend_log_likelihood=spend.log_likelihood,
        customers=len(summary),
        repeat_customers=summary.repeat_customers,
        spend_customers=spend.customers,
        cleared=cleared,
        horizon_months=horizon_months,
        monthly_discount=monthly_discount,
        total_predicted_clv=float(scores.predicted_clv.sum()),
        mean_churn_risk=float(scores.churn_risk.mean()),
        expected_purchases_90d=float(scores.expected_purchases_90d.sum()),
        seconds=seconds,
    )


_scores = sa.Table(
    "clv_scores",
    sa.MetaData(),
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("predicted_clv", sa.Float),
    sa.Column("expected_purchases_90d", sa.Float),
    sa.Column("churn_risk", sa.Float),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)


def _fill(conn: sa.Connection, rows: list[list[Any]]) -> None:
    """One chunk into the temporary table: ``COPY`` on PostgreSQL (a tenth of the time of
    an ``INSERT … unnest``), one ``executemany`` on SQLite."""
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy("COPY clv_scores FROM STDIN") as copy:
            for row in zip(*rows, strict=True):
                copy.write_row(row)
    else:
        conn.exec_driver_sql(
            "INSERT INTO clv_scores VALUES (?, ?, ?, ?)", list(zip(*rows, strict=True))
        )


def write_scores(
    conn: sa.Connection, scores: Scores, now: datetime, progress: Progress = _quiet
) -> int:
    """Write the scores of ``scores.customer`` and clear everyone else's; returns the
    number cleared. Runs inside the caller's transaction."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("DROP TABLE IF EXISTS temp.clv_scores")
    _scores.create(conn)
    ids = np.asarray(scores.customer, dtype=np.int64)
    n = len(ids)
    columns = (scores.predicted_clv, scores.expected_purchases_90d, scores.churn_risk)
    progress("writing", 0, 2 * n)
    for start in range(0, n, WRITE_CHUNK):
        end = min(n, start + WRITE_CHUNK)
        _fill(conn, [ids[start:end].tolist(), *(col[start:end].tolist() for col in columns)])
        progress("writing", end, 2 * n)
    c, s = customers.c, _scores.c
    update = customers.update().values(
        predicted_clv=s.predicted_clv,
        expected_purchases_90d=s.expected_purchases_90d,
        churn_risk=s.churn_risk,
        clv_scored_at=now,
    )
    order = np.sort(ids)
    for start in range(0, n, WRITE_CHUNK):
        end = min(n, start + WRITE_CHUNK)
        low, high = int(order[start]), int(order[end - 1])
        # The range on both sides: bounded on the temporary table alone, PostgreSQL
        # hash-joins it against a full scan of customers for every chunk.
        conn.execute(update.where(c.id == s.id, s.id.between(low, high), c.id.between(low, high)))
        progress("writing", n + end, 2 * n)
    cleared = conn.execute(
        customers.update()
        .values(
            predicted_clv=None, expected_purchases_90d=None, churn_risk=None, clv_scored_at=None
        )
        .where(
            c.clv_scored_at.is_not(None),
            ~sa.exists().where(s.id == c.id),
        )
    ).rowcount
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("DROP TABLE temp.clv_scores")
    return int(cleared)
