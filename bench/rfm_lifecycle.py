"""RFM and lifecycle recomputation time on a synthetic store, SQLite and PostgreSQL.

Builds N customers (default 100,000) with a skewed number of orders each (about 40% never
order, most buyers order once or twice) spread over two years, then times
``recompute_rfm`` (a cold run that writes every buyer, then a warm run that finds nothing
changed) and ``recompute_lifecycle`` (the first sweep: a silent back-fill). The baseline,
measured in the same run, is the raw limit: the one GROUP BY over the period's orders that
any RFM computation has to read. Prints a table and writes bench/results/rfm_lifecycle.json.

    python bench/rfm_lifecycle.py              # 100,000 customers
    python bench/rfm_lifecycle.py --quick      # 20,000 customers
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rapport.clock import SimulatedClock  # noqa: E402
from rapport.pipeline import Pipeline  # noqa: E402
from rapport.segments.lifecycle import recompute_lifecycle  # noqa: E402
from rapport.segments.rfm import _period_aggregates, recompute_rfm  # noqa: E402
from rapport.store.engine import create_engine, writing  # noqa: E402
from rapport.store.migrate import upgrade  # noqa: E402
from rapport.store.tables import customers, orders  # noqa: E402

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def build(engine: sa.Engine, n: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    placed = 0
    batch = 10_000
    with writing(engine) as conn:
        for start in range(0, n, batch):
            size = min(batch, n - start)
            rows = [{"created_at": NOW, "updated_at": NOW, "traits": {}} for _ in range(size)]
            ids = [
                int(i)
                for i in conn.execute(
                    customers.insert().returning(customers.c.id, sort_by_parameter_order=True),
                    rows,
                ).scalars()
            ]
            order_rows: list[dict[str, Any]] = []
            for cid in ids:
                k = 0 if rng.random() < 0.4 else min(30, int(rng.paretovariate(1.6)))
                first = NOW - timedelta(days=rng.uniform(0, 730))
                at = first
                for _ in range(k):
                    order_rows.append(
                        {
                            "order_id": f"o{placed}",
                            "customer_id": cid,
                            "status": "completed",
                            "total": round(rng.lognormvariate(3.5, 0.8), 2),
                            "channel": "online",
                            "occurred_at": at,
                            "updated_at": at,
                        }
                    )
                    placed += 1
                    at = min(NOW, at + timedelta(days=rng.expovariate(1 / 45)))
            if order_rows:
                conn.execute(orders.insert(), order_rows)
        # The aggregates the pipeline would have maintained.
        conn.exec_driver_sql(
            "UPDATE customers SET orders_count = a.n, revenue = a.rev, first_order_at = a.f, "
            "last_order_at = a.l FROM (SELECT customer_id, count(*) AS n, sum(total) AS rev, "
            "min(occurred_at) AS f, max(occurred_at) AS l FROM orders GROUP BY customer_id) a "
            "WHERE customers.id = a.customer_id"
        )
    return placed


def timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def run_store(name: str, url: str, n: int) -> dict[str, Any]:
    engine = create_engine(url)
    upgrade(engine)
    build_s, placed = timed(lambda: build(engine, n))
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(sa.text("ANALYZE"))
            conn.commit()
    agg = _period_aggregates(NOW - timedelta(days=365), NOW)

    def baseline() -> int:
        with engine.connect() as conn:
            return len(conn.execute(sa.select(agg)).all())

    base_s, buyers = timed(baseline)
    cold_s, cold = timed(lambda: recompute_rfm(engine, NOW))
    warm_s, warm = timed(lambda: recompute_rfm(engine, NOW))
    pipeline = Pipeline(engine, SimulatedClock(NOW))
    life_s, life = timed(lambda: recompute_lifecycle(engine, pipeline, NOW))
    later = NOW + timedelta(days=7)
    pipeline.clock.set(later)  # type: ignore[attr-defined]
    week_s, week = timed(lambda: recompute_lifecycle(engine, pipeline, later))
    engine.dispose()
    return {
        "store": name,
        "customers": n,
        "orders": placed,
        "build_s": round(build_s, 2),
        "baseline_group_by_s": round(base_s, 3),
        "buyers_in_period": buyers,
        "rfm_cold_s": round(cold_s, 3),
        "rfm_cold_changed": cold.changed,
        "rfm_warm_s": round(warm_s, 3),
        "rfm_warm_changed": warm.changed,
        "lifecycle_first_s": round(life_s, 3),
        "lifecycle_first_changed": life.changed,
        "lifecycle_week_later_s": round(week_s, 3),
        "lifecycle_week_later_changed": week.changed,
        "lifecycle_week_later_events": week.announced,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="20,000 customers")
    args = parser.parse_args()
    n = 20_000 if args.quick else args.customers

    from tests.postgres_server import create_database, server_url

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(run_store("sqlite", f"sqlite:///{tmp}/bench.db", n))
    pg_url, drop = create_database(server_url(), prefix="rapport_bench")
    try:
        results.append(run_store("postgres", pg_url, n))
    finally:
        drop()  # type: ignore[operator]

    table = Table(
        "store",
        "customers",
        "orders",
        "buyers (365 d)",
        "baseline GROUP BY s",
        "RFM cold s",
        "RFM warm s",
        "lifecycle 1st s",
        "lifecycle +7 d s (changes)",
        title="RFM and lifecycle recomputation",
    )
    for r in results:
        table.add_row(
            r["store"],
            f"{r['customers']:,}",
            f"{r['orders']:,}",
            f"{r['buyers_in_period']:,}",
            f"{r['baseline_group_by_s']:.3f}",
            f"{r['rfm_cold_s']:.3f}",
            f"{r['rfm_warm_s']:.3f}",
            f"{r['lifecycle_first_s']:.3f}",
            f"{r['lifecycle_week_later_s']:.3f} ({r['lifecycle_week_later_changed']:,})",
        )
    Console(width=200).print(table)
    out = ROOT / "bench" / "results" / "rfm_lifecycle.json"
    out.write_bytes(orjson.dumps({"results": results}, option=orjson.OPT_INDENT_2))
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
