"""The time sweep, narrowed vs full: what re-checking only the customers who can cross saves.

    python bench/sweep.py                 # 100,000 customers, SQLite and PostgreSQL
    python bench/sweep.py --customers 20000 --stores postgres

Builds the segment benchmark's store (bench/segment_fixture.py: a year of a shop's history
written in bulk), defines three typical time-dependent segments, establishes membership
with a full sweep at ``now``, then times the sweep one minute later: narrowed (the default
sweep) and full (``full_every=0``), median of 5, both ending in the same membership. It
also times the first sweep after UTC midnight, when whole-day windows move. Results go to
``bench/results/sweep.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.postgres_server import create_database, server_url  # noqa: E402

from bench.segment_fixture import build, now_hour  # noqa: E402
from rapport.segments.compiler import member_ids  # noqa: E402
from rapport.segments.definitions import create_segment  # noqa: E402
from rapport.segments.membership import SegmentIndex  # noqa: E402
from rapport.segments.sweep import run_sweep  # noqa: E402
from rapport.store.engine import create_engine, writing  # noqa: E402

SEGMENTS: dict[str, dict[str, Any]] = {
    "inactive 30 days": {
        "all": [
            {"computed": "events_count", "op": "gt", "value": 0},
            {"computed": "last_seen_at", "op": "more_than_days_ago", "value": 30},
        ]
    },
    "cart abandoners": {
        "all": [
            {"event": "Product Added", "within_last": 3},
            {"event": "Order Completed", "not_for_days": 3},
            {"consent": "email"},
        ]
    },
    "lapsed regulars": {
        "all": [
            {"computed": "orders_count", "op": "ge", "value": 2},
            {"computed": "days_since_last_order", "op": "gt", "value": 60},
        ]
    },
}
RUNS = 5


@contextmanager
def stores(names: list[str], tmp: str) -> Iterator[dict[str, str]]:
    urls: dict[str, str] = {}
    drops: list[Callable[[], None]] = []
    try:
        for name in names:
            if name == "sqlite":
                urls[name] = f"sqlite:///{tmp}/sweep.db"
            else:
                url, drop = create_database(server_url(), "rapport_bench_sweep")
                urls[name] = url
                drops.append(drop)  # type: ignore[arg-type]
        yield urls
    finally:
        for drop in drops:
            drop()


def _timed(engine: sa.Engine, at: datetime, **kw: Any) -> tuple[float, dict[int, int | None]]:
    """One sweep in its own transaction, rolled back so every run starts from the same
    membership and sweep state."""
    with engine.connect() as conn, conn.begin() as tx:
        index = SegmentIndex(ttl=3600).current(conn)
        started = time.perf_counter()
        outcome = run_sweep(conn, index, at, **kw)
        took = time.perf_counter() - started
        tx.rollback()
    return took, outcome.visited


def measure(url: str, now: datetime) -> dict[str, Any]:
    engine = create_engine(url)
    with writing(engine) as conn:
        ids = {
            name: create_segment(conn, name, "", rule, now).id for name, rule in SEGMENTS.items()
        }
        index = SegmentIndex().current(conn)
        run_sweep(conn, index, now, list(ids.values()))  # membership at now, in full
    minute = now + timedelta(minutes=1)
    after_midnight = (now + timedelta(days=1)).replace(hour=0, minute=1)
    out: dict[str, Any] = {}
    for label, at in (("one minute later", minute), ("first sweep after midnight", after_midnight)):
        narrowed = [_timed(engine, at) for _ in range(RUNS)]
        full = [_timed(engine, at, full_every=timedelta(0)) for _ in range(RUNS)]
        out[label] = {
            "narrowed_s": statistics.median(t for t, _ in narrowed),
            "full_s": statistics.median(t for t, _ in full),
            "visited": {name: narrowed[0][1][sid] for name, sid in ids.items()},
        }
    with engine.connect() as conn:
        index = SegmentIndex().current(conn)
        out["members"] = {
            name: len(member_ids(conn, index.by_id[sid].rule, now)) for name, sid in ids.items()
        }
    engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    names = [s for s in ("sqlite", "postgres") if s in args.stores.split(",")]
    now = now_hour().replace(hour=15)
    results: dict[str, Any] = {"customers": args.customers, "now": now.isoformat()}
    with tempfile.TemporaryDirectory() as tmp, stores(names, tmp) as urls:
        built = build(urls, args.customers, now, lambda *_: None)
        results["events"] = built.events
        for name, url in urls.items():
            results[name] = measure(url, now)
            for label in ("one minute later", "first sweep after midnight"):
                r = results[name][label]
                print(
                    f"{name:9} {label:27} narrowed {r['narrowed_s'] * 1000:8.1f} ms"
                    f"   full {r['full_s'] * 1000:8.1f} ms   visited {r['visited']}"
                )
            print(f"{name:9} members at now: {results[name]['members']}")
    out = ROOT / "bench" / "results" / "sweep.json"
    out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
