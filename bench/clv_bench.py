"""Predictive CLV benchmark: Rapport's BG/NBD and Gamma-Gamma against lifetimes, and scoring
a store of the same customers.

(a) **Models.** N customers (default 1,000,000; ``--quick``: 100,000) are drawn from a
seeded BG/NBD + Gamma-Gamma process (``rapport.analytics.clv.simulate``: rates per day,
acquired over a year, a few million transactions). Both libraries then do the same work on
the same data, timed stage by stage: the RFM summary from the transactions, the BG/NBD fit,
the Gamma-Gamma fit, the expected purchases in the next 30 days, P(alive), and the
12-month discounted CLV (monthly discount 1 %). lifetimes is used as its documentation
shows: one row per customer (the baseline); it is also timed once fitting the grouped
histories Rapport fits (``weights=``), to show how much of the gap is the grouping. The
fitted parameters must agree to 3 significant digits and the predictions closely; the
target is Rapport ≥ 5× faster overall. Rapport's stages are the median of several repeats;
lifetimes' of fewer where a run takes long.

(b) **Store.** The same customers and transactions are written to SQLite and PostgreSQL as
customers and completed orders, and ``score_store`` reads the orders, fits both models,
and writes predicted CLV, expected purchases and churn risk onto every customer. The
baseline, same run: reading the three order columns into Python (the raw read any scoring
must do).

Prints tables and writes bench/results/clv.json.

    python bench/clv_bench.py                    # 1,000,000 customers (~10 minutes)
    python bench/clv_bench.py --quick            # 100,000 customers
    python bench/clv_bench.py --customers 300000 --stores sqlite
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rapport.analytics.clv.bgnbd import BetaGeoModel  # noqa: E402
from rapport.analytics.clv.fitting import Patterns  # noqa: E402
from rapport.analytics.clv.gammagamma import GammaGammaModel  # noqa: E402
from rapport.analytics.clv.scoring import score_store  # noqa: E402
from rapport.analytics.clv.simulate import (  # noqa: E402
    SimulatedTransactions,
    bgnbd_gammagamma_transactions,
)
from rapport.analytics.clv.summary import Summary, summarize  # noqa: E402
from rapport.analytics.clv.value import customer_lifetime_value  # noqa: E402
from rapport.store.engine import create_engine, writing  # noqa: E402
from rapport.store.migrate import upgrade  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.utils import summary_data_from_transaction_data

console = Console(width=max(140, Console().width))

SEED = 20260301
# Rates per day: a customer buys about every 3 weeks while alive, stops after a few repeats.
TRUE = {"r": 0.8, "alpha": 18.0, "a": 0.8, "b": 3.0, "p": 6.0, "q": 4.0, "gamma": 15.0}
HORIZON_DAYS = 30.0
TARGET_RATIO = 5.0
SAME_3_DIGITS = 5e-4


def timed(fn: Callable[[], Any], repeats: int = 1) -> tuple[float, Any]:
    """Median seconds over ``repeats`` runs, and the last result."""
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def synthesize(customers: int) -> SimulatedTransactions:
    rng = np.random.default_rng(SEED)
    return bgnbd_gammagamma_transactions(
        rng,
        customers,
        r=TRUE["r"],
        alpha=TRUE["alpha"],
        a=TRUE["a"],
        b=TRUE["b"],
        p=TRUE["p"],
        q=TRUE["q"],
        gamma=TRUE["gamma"],
    )


def _max_rel(ours: Any, theirs: Any) -> float:
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    return float(np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-9)))


def compare_models(tx: SimulatedTransactions, quick: bool) -> dict[str, Any]:
    """Part (a): the same stages in both libraries on the same data."""
    ours_reps, their_reps = 5, (3 if quick else 1)
    stages: list[dict[str, Any]] = []

    def stage(name: str, ours: Callable[[], Any], theirs: Callable[[], Any]) -> tuple[Any, Any]:
        our_s, our_out = timed(ours, ours_reps)
        their_s, their_out = timed(theirs, their_reps)
        stages.append(
            {
                "stage": name,
                "rapport_s": round(our_s, 4),
                "lifetimes_s": round(their_s, 4),
                "ratio": round(their_s / our_s, 1),
            }
        )
        console.print(
            f"  {name}: Rapport {our_s:.3f} s, lifetimes {their_s:.3f} s", highlight=False
        )
        return our_out, their_out

    frame = pd.DataFrame(
        {
            "customer": tx.customer,
            "date": pd.to_datetime(tx.day, unit="D"),
            "amount": tx.amount,
        }
    )
    end = pd.Timestamp(tx.observation_end, unit="D")
    summary, their_summary = stage(
        "summary from transactions",
        lambda: summarize(tx.customer, tx.day, tx.amount, observation_end=end.date()),
        lambda: summary_data_from_transaction_data(
            frame, "customer", "date", monetary_value_col="amount", observation_period_end=end
        ),
    )
    assert isinstance(summary, Summary) and summary.monetary_value is not None
    their_summary = their_summary.loc[summary.customer]
    summary_equal = bool(
        np.array_equal(summary.frequency, their_summary["frequency"].to_numpy())
        and np.array_equal(summary.T, their_summary["T"].to_numpy())
        and np.array_equal(summary.recency, their_summary["recency"].to_numpy())
        and np.allclose(summary.monetary_value, their_summary["monetary_value"].to_numpy())
    )
    x, t_x, T, m = summary.frequency, summary.recency, summary.T, summary.monetary_value
    repeat = (x > 0) & (m > 0)
    bg, their_bg = stage(
        "BG/NBD fit",
        lambda: BetaGeoModel.fit(x, t_x, T),
        lambda: BetaGeoFitter().fit(x, t_x, T),
    )
    gg, their_gg = stage(
        "Gamma-Gamma fit",
        lambda: GammaGammaModel.fit(x, m),
        lambda: GammaGammaFitter().fit(x[repeat], m[repeat]),
    )
    expected, their_expected = stage(
        f"expected purchases, {HORIZON_DAYS:g} days",
        lambda: bg.conditional_expected_number_of_purchases_up_to_time(HORIZON_DAYS, x, t_x, T),
        lambda: their_bg.conditional_expected_number_of_purchases_up_to_time(
            HORIZON_DAYS, x, t_x, T
        ),
    )
    alive, their_alive = stage(
        "P(alive)",
        lambda: bg.conditional_probability_alive(x, t_x, T),
        lambda: their_bg.conditional_probability_alive(x, t_x, T),
    )
    series = [pd.Series(v) for v in (x, t_x, T, m)]
    clv, their_clv = stage(
        "CLV, 12 months",
        lambda: customer_lifetime_value(bg, gg, x, t_x, T, m, time_unit="day"),
        lambda: their_gg.customer_lifetime_value(
            their_bg, *series, time=12, discount_rate=0.01, freq="D"
        ),
    )
    total_ours = sum(s["rapport_s"] for s in stages)
    total_theirs = sum(s["lifetimes_s"] for s in stages)
    stages.append(
        {
            "stage": "total",
            "rapport_s": round(total_ours, 3),
            "lifetimes_s": round(total_theirs, 3),
            "ratio": round(total_theirs / total_ours, 1),
        }
    )
    patterns = Patterns.of(x, t_x, T)
    grouped_s, _ = timed(
        lambda: BetaGeoFitter().fit(
            patterns.frequency, patterns.recency, patterns.T, weights=patterns.weights
        )
    )
    theirs_params = {
        **their_bg.params_.to_dict(),
        "p": their_gg.params_["p"],
        "q": their_gg.params_["q"],
        "gamma": their_gg.params_["v"],
    }
    ours_params = {**bg.params, **gg.params}
    agree = all(abs(ours_params[k] - v) <= SAME_3_DIGITS * abs(v) for k, v in theirs_params.items())
    return {
        "customers": len(summary),
        "transactions": len(tx.customer),
        "repeat_customers": summary.repeat_customers,
        "patterns": len(patterns.weights),
        "true_params": TRUE,
        "rapport_params": ours_params,
        "lifetimes_params": theirs_params,
        "params_agree_3_digits": agree,
        "summary_equal": summary_equal,
        "max_rel_diff": {
            "expected_purchases": _max_rel(expected, their_expected),
            "p_alive": _max_rel(alive, their_alive),
            "clv": _max_rel(clv, their_clv.to_numpy()),
        },
        "stages": stages,
        "lifetimes_bgnbd_fit_grouped_s": round(grouped_s, 3),
        "repeats": {"rapport": ours_reps, "lifetimes": their_reps},
    }


def _day_text(days: np.ndarray, sqlite: bool) -> np.ndarray:
    moments = days.astype("datetime64[D]") + np.timedelta64(12, "h")
    text = np.datetime_as_string(moments.astype("datetime64[us]"), unit="us")
    return np.char.replace(text, "T", " ") if sqlite else np.char.add(text, "+00")


def build_store(engine: sa.Engine, tx: SimulatedTransactions, now: datetime) -> None:
    """Customers 1..N and one completed order per transaction, written in bulk."""
    n = int(tx.customer.max()) + 1
    sqlite = engine.dialect.name == "sqlite"
    stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else now.isoformat()
    ids = (tx.customer + 1).tolist()
    when = _day_text(tx.day, sqlite).tolist()
    totals = tx.amount.tolist()
    with writing(engine) as conn:
        if sqlite:
            conn.exec_driver_sql(
                "INSERT INTO customers (id, created_at, updated_at, traits) VALUES (?, ?, ?, '{}')",
                [(i, stamp, stamp) for i in range(1, n + 1)],
            )
            conn.exec_driver_sql(
                "INSERT INTO orders (order_id, customer_id, status, total, channel, occurred_at,"
                " updated_at) VALUES (?, ?, 'completed', ?, 'online', ?, ?)",
                [
                    (f"o{k}", c, t, w, w)
                    for k, (c, t, w) in enumerate(zip(ids, totals, when, strict=True))
                ],
            )
        else:
            _copy_into_postgres(conn, n, now, ids, totals, when)
    if sqlite:
        # Fold the bulk write into the database file, as SQLite's automatic checkpoints
        # do in a running store; reads through a WAL of millions of pages are half as fast.
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def _copy_into_postgres(
    conn: sa.Connection, n: int, now: datetime, ids: list[int], totals: list[float], when: list[str]
) -> None:
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur:
        with cur.copy("COPY customers (id, created_at, updated_at, traits) FROM STDIN") as copy:
            for i in range(1, n + 1):
                copy.write_row((i, now, now, "{}"))
        with cur.copy(
            "COPY orders (order_id, customer_id, status, total, channel, occurred_at,"
            " updated_at) FROM STDIN"
        ) as copy:
            for k, (c, t, w) in enumerate(zip(ids, totals, when, strict=True)):
                copy.write_row((f"o{k}", c, "completed", t, "online", w, w))
        cur.execute("SELECT setval('customers_id_seq', %s)", (n,))
    conn.exec_driver_sql("ANALYZE customers")
    conn.exec_driver_sql("ANALYZE orders")


def score_one_store(name: str, url: str, tx: SimulatedTransactions) -> dict[str, Any]:
    """Part (b) on one store."""
    engine = create_engine(url)
    upgrade(engine)
    now = datetime(1970, 1, 1, 23, tzinfo=UTC) + timedelta(days=tx.observation_end)
    build_s, _ = timed(lambda: build_store(engine, tx, now))

    def raw_read() -> int:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT customer_id, occurred_at, total - refunded FROM orders"
            ).fetchall()
        return len(rows)

    raw_s, rows = timed(raw_read)
    score_s, result = timed(lambda: score_store(engine, now))
    with engine.connect() as conn:
        written = int(
            conn.execute(
                sa.text("SELECT count(*) FROM customers WHERE predicted_clv IS NOT NULL")
            ).scalar_one()
        )
    engine.dispose()
    return {
        "store": name,
        "customers": result.customers,
        "orders": rows,
        "build_s": round(build_s, 1),
        "baseline_raw_read_s": round(raw_s, 3),
        "score_s": round(score_s, 3),
        "stages_s": {k: round(v, 3) for k, v in result.seconds.items()},
        "written": written,
        "params": {**result.params, **result.spend_params},
    }


def score_stores(tx: SimulatedTransactions, stores: list[str]) -> list[dict[str, Any]]:
    results = []
    if "sqlite" in stores:
        with tempfile.TemporaryDirectory() as tmp:
            results.append(score_one_store("sqlite", f"sqlite:///{tmp}/clv.db", tx))
    if "postgres" in stores:
        from tests.postgres_server import create_database, server_url

        url, drop = create_database(server_url(), prefix="rapport_bench")
        try:
            results.append(score_one_store("postgres", url, tx))
        finally:
            drop()  # type: ignore[operator]
    return results


def run(customers: int, quick: bool, stores: list[str] | None = None) -> dict[str, Any]:
    """Both parts; returns what is written to bench/results/clv.json."""
    started = time.perf_counter()
    tx = synthesize(customers)
    synth_s = time.perf_counter() - started
    console.print(
        f"{customers:,} customers, {len(tx.customer):,} transactions synthesized in {synth_s:.1f} s",
        highlight=False,
    )
    models = compare_models(tx, quick)
    store_results = score_stores(tx, ["sqlite", "postgres"] if stores is None else stores)
    return {"quick": quick, "seed": SEED, "models": models, "stores": store_results}


def report(result: dict[str, Any]) -> None:
    models = result["models"]
    table = Table(
        "stage",
        "Rapport s",
        "lifetimes s",
        "lifetimes / Rapport",
        title=f"CLV models on {models['customers']:,} customers ({models['transactions']:,} "
        f"transactions, {models['patterns']:,} distinct histories)",
    )
    for s in models["stages"]:
        table.add_row(
            s["stage"], f"{s['rapport_s']:.3f}", f"{s['lifetimes_s']:.3f}", f"{s['ratio']:.1f}×"
        )
    console.print(table)
    params = Table("parameter", "true", "Rapport", "lifetimes", title="Fitted parameters")
    for name, true in models["true_params"].items():
        params.add_row(
            name,
            f"{true:g}",
            f"{models['rapport_params'][name]:.5g}",
            f"{models['lifetimes_params'][name]:.5g}",
        )
    console.print(params)
    total = models["stages"][-1]["ratio"]
    console.print(
        f"parameters agree to 3 significant digits: {models['params_agree_3_digits']}; "
        f"summaries equal: {models['summary_equal']}; largest relative difference of the "
        + ", ".join(f"{k} {v:.1e}" for k, v in models["max_rel_diff"].items())
        + f"; lifetimes' BG/NBD fit on the grouped histories: "
        f"{models['lifetimes_bgnbd_fit_grouped_s']:.2f} s; overall {total:.1f}× "
        f"(target ≥ {TARGET_RATIO:g}×: {'met' if total >= TARGET_RATIO else 'NOT met'})",
        highlight=False,
    )
    if result["stores"]:
        stores = Table(
            "store",
            "customers",
            "orders",
            "raw read s (baseline)",
            "score s",
            "read s",
            "fit + predict s",
            "write s",
            "written",
            title="Scoring the store (score_store)",
        )
        for r in result["stores"]:
            st = r["stages_s"]
            stores.add_row(
                r["store"],
                f"{r['customers']:,}",
                f"{r['orders']:,}",
                f"{r['baseline_raw_read_s']:.2f}",
                f"{r['score_s']:.2f}",
                f"{st['read']:.2f}",
                f"{st['fit_and_predict']:.2f}",
                f"{st['write']:.2f}",
                f"{r['written']:,}",
            )
        console.print(stores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=None, help="default 1,000,000")
    parser.add_argument("--quick", action="store_true", help="100,000 customers")
    parser.add_argument(
        "--stores",
        nargs="*",
        default=["sqlite", "postgres"],
        choices=["sqlite", "postgres"],
        help="stores to score (none: models only)",
    )
    args = parser.parse_args()
    customers = args.customers or (100_000 if args.quick else 1_000_000)
    result = run(customers, args.quick, args.stores)
    report(result)
    out = ROOT / "bench" / "results" / "clv.json"
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
