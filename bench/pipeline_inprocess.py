"""The ingest pipeline without HTTP: where the time goes per batch size.

    python bench/pipeline_inprocess.py --store postgres --batch 800
    pyinstrument bench/pipeline_inprocess.py --store sqlite

Prints events/s and, per event, the CPU of this process (parsing excluded) and of the
database's own processes (PostgreSQL): CPU per event is what a busy machine disturbs
least, so it is the figure to compare two versions of the code by.
Used to profile before optimising; bench/ingest.py is the benchmark of record.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.postgres_server import create_database, server_url  # noqa: E402

from bench.cpu import cpu_seconds, database_processes  # noqa: E402
from bench.workload import Workload  # noqa: E402
from rapport.ingest.messages import parse_batch  # noqa: E402
from rapport.pipeline import Pipeline  # noqa: E402
from rapport.store.engine import create_engine  # noqa: E402
from rapport.store.migrate import upgrade  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--events", type=int, default=8000)
    parser.add_argument("--visitors", type=int, default=5000)
    args = parser.parse_args()
    drop = None
    if args.store == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp(prefix='rapport-prof-')}/prof.db"
    else:
        url, drop = create_database(server_url(), "rapport_prof")
    engine = create_engine(url)
    upgrade(engine)
    pipeline = Pipeline(engine)
    workload = Workload(visitors=args.visitors, seed=3)
    raws = [workload.batch(args.batch) for _ in range(args.events // args.batch)]
    now = datetime.now(UTC)
    start = time.perf_counter()
    batches = [
        parse_batch(r, received_at=now, phone_region="RU", max_message_bytes=32768) for r in raws
    ]
    parsed = time.perf_counter() - start
    # Warm up, then refresh planner statistics as autovacuum would in a running store:
    # on a never-analysed table PostgreSQL plans the messageId lookup as a sequential scan.
    warm = max(1, len(batches) // 20)
    for batch in batches[:warm]:
        pipeline.ingest(batch)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    database = url.rsplit("/", 1)[1]
    before = database_processes(database) if args.store == "postgres" else []
    db0 = cpu_seconds(before)
    start, cpu0 = time.perf_counter(), time.process_time()
    for batch in batches[warm:]:
        pipeline.ingest(batch)
    stored, cpu = time.perf_counter() - start, time.process_time() - cpu0
    db = cpu_seconds(database_processes(database)) - db0 if args.store == "postgres" else 0.0
    n = (len(raws) - warm) * args.batch
    print(
        f"{args.store} batch={args.batch}: parse {n / parsed:,.0f}/s, pipeline {n / stored:,.0f}/s,"
        f" CPU {cpu / n * 1e6:.0f} µs/event here"
        + (f", {db / n * 1e6:.0f} µs/event in the database" if args.store == "postgres" else "")
    )
    engine.dispose()
    if drop is not None:
        drop()  # type: ignore[operator]


if __name__ == "__main__":
    main()
