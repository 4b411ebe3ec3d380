"""Segment benchmark: full evaluation, ingest with segments active, and freshness.

On a store with N customers (default 1,000,000) and ~20 events each over a year
(bench/segment_fixture.py: a fixture written straight into the tables, not the ingest path),
for 20 typical segments (bench/segment_cases.py):

(a) full evaluation: ``compiler.count`` of each segment, median of 3 runs, PostgreSQL and
    SQLite;
(d) baseline in the same run: the same 20 segments computed by pandas from the raw events
    and the customer table held in DataFrames (only the computation is timed); the counts
    must equal Rapport's on every store, a mismatch is printed loudly and fails the run;
(b) ingest through ``Pipeline.ingest`` in process (batches of 100 from bench/workload.py) on
    a fresh smaller store, with the 20 segments defined and without, interleaved;
(c) freshness: a server pinned to one core (as in bench/ingest.py); ``/v1/track`` of an
    event that puts the customer into a segment, then the customer's timeline is polled
    through the management API until ``Segment Entered`` shows; p50/p99.

Prints tables with the targets next to the results and writes bench/results/segments.json.
``bench/segments_ab.py`` runs (b) as an interleaved A/B (CPU per event, an older revision of
the segments package as a third variant, the real-time step replayed alone).

    python bench/segments.py                   # full run (~25 min, most of it building the store)
    python bench/segments.py --quick           # 50,000 customers
    python bench/segments.py --stores postgres --explain
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pandas as pd
import sqlalchemy as sa
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.postgres_server import create_database, server_url  # noqa: E402

from bench.ingest import Server  # noqa: E402
from bench.segment_cases import CASES, Frames, frames  # noqa: E402
from bench.segment_fixture import Built, Clocks, build, now_hour  # noqa: E402
from bench.workload import Workload  # noqa: E402
from rapport.access.keys import create_key  # noqa: E402
from rapport.clock import SimulatedClock  # noqa: E402
from rapport.ingest.messages import parse_batch  # noqa: E402
from rapport.pipeline import Pipeline  # noqa: E402
from rapport.segments.compiler import count, where_clause  # noqa: E402
from rapport.segments.definitions import create_segment  # noqa: E402
from rapport.segments.membership import ENTERED, SegmentIndex  # noqa: E402
from rapport.segments.rules import parse_rule  # noqa: E402
from rapport.segments.sweep import sweep  # noqa: E402
from rapport.store.engine import create_engine, writing  # noqa: E402
from rapport.store.tables import customers, identities  # noqa: E402

console = Console(width=max(120, Console().width))

TARGET_SEGMENT_S = 1.0  # a typical segment on 1M customers, PostgreSQL
TARGET_FRESHNESS_P99_S = 1.0
TARGET_INGEST_SLOWDOWN = 0.30
PROBE_EVENT = "Freshness Probe"
PROBE_RULE = {"event": PROBE_EVENT, "times": {"at_least": 1}, "within_last": 1}


# ------------------------------------------------------------------------------ stores


@contextmanager
def stores(names: list[str], prefix: str, tmp: str) -> Iterator[dict[str, str]]:
    """A fresh database per store for one part of the run, dropped afterwards."""
    urls: dict[str, str] = {}
    drops: list[Callable[[], None]] = []
    try:
        for name in names:
            if name == "sqlite":
                urls[name] = f"sqlite:///{tmp}/{prefix}.db"
            else:
                url, drop = create_database(server_url(), f"rapport_bench_{prefix}")
                urls[name] = url
                drops.append(drop)  # type: ignore[arg-type]
        yield urls
    finally:
        for drop in drops:
            drop()


def load(urls: dict[str, str], n: int, now: datetime, title: str) -> Built:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        tasks: dict[str, Any] = {}

        def advance(task: str, step: int, total: int) -> None:
            if task not in tasks:
                label = {
                    "customers": "customers, orders, counters, consents",
                    "events": "events (time order)",
                    "derived": "RFM, lifecycle, ANALYZE",
                }[task]
                tasks[task] = progress.add_task(f"{title}: {label}", total=total)
            progress.advance(tasks[task], step)

        return build(urls, n, now, advance)


# ------------------------------------------------------------------------------ (a)


def time_segments(url: str, now: datetime, runs: int, timeout_s: int) -> dict[str, dict[str, Any]]:
    """Median of ``runs`` counts per segment. On PostgreSQL a statement timeout turns a
    runaway plan into a reported "timed out" rather than a run that never ends."""
    options = {}
    if url.startswith("postgresql"):
        options["connect_args"] = {"options": f"-c statement_timeout={timeout_s * 1000}"}
    engine = create_engine(url, **options)
    out: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        for case in CASES:
            rule = parse_rule(case.rule)
            times, counts = [], set()
            for _ in range(runs):
                started = time.perf_counter()
                try:
                    counts.add(count(conn, rule, now))
                except sa.exc.OperationalError as exc:
                    if "statement timeout" not in str(exc):
                        raise
                    conn.rollback()
                    break
                times.append(time.perf_counter() - started)
            if len(counts) > 1:
                raise RuntimeError(f"{case.key}: counts differ between runs: {counts}")
            out[case.key] = (
                {
                    "count": counts.pop(),
                    "median_s": statistics.median(times),
                    "runs_s": [round(t, 4) for t in times],
                }
                if len(times) == runs
                else {"count": None, "median_s": None, "timed_out_after_s": timeout_s}
            )
            conn.rollback()
    engine.dispose()
    return out


def _count_sql(conn: sa.Connection, case_rule: dict[str, Any], now: datetime) -> str:
    query = (
        sa.select(sa.func.count())
        .select_from(customers)
        .where(where_clause(parse_rule(case_rule), now, "postgresql"))
    )
    return str(query.compile(conn, compile_kwargs={"literal_binds": True}))


def explain(url: str, now: datetime, keys: list[str]) -> dict[str, str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the count query of each given segment (PostgreSQL)."""
    engine = create_engine(url)
    plans: dict[str, str] = {}
    with engine.connect() as conn:
        for case in CASES:
            if case.key in keys:
                sql = _count_sql(conn, case.rule, now)
                rows = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {sql}").scalars().all()
                plans[case.key] = "\n".join(rows)
                conn.rollback()
    engine.dispose()
    return plans


def diagnose(url: str, now: datetime, keys: list[str], work_mem: str) -> dict[str, Any]:
    """For segments that timed out: the plan PostgreSQL chose (EXPLAIN without ANALYZE, which
    would not end either), and the same count with more ``work_mem`` for this transaction
    only — a ``x IN (subquery)`` under OR can run as a hashed subplan only if the hash of
    the subquery's ids fits in ``work_mem``; otherwise PostgreSQL rescans the subquery's
    result for every customer."""
    engine = create_engine(url)
    found: dict[str, Any] = {}
    with engine.connect() as conn:
        for case in CASES:
            if case.key not in keys:
                continue
            sql = _count_sql(conn, case.rule, now)
            plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN {sql}").scalars().all())
            conn.rollback()
            times = []
            for _ in range(3):
                conn.exec_driver_sql(f"SET LOCAL work_mem = '{work_mem}'")
                started = time.perf_counter()
                n = conn.execute(sa.text(sql)).scalar_one()
                times.append(time.perf_counter() - started)
                conn.rollback()
            conn.exec_driver_sql(f"SET LOCAL work_mem = '{work_mem}'")
            rows = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {sql}").scalars().all()
            conn.rollback()
            found[case.key] = {
                "plan_as_is": plan,
                "work_mem": work_mem,
                "count": int(n),
                "median_s": round(statistics.median(times), 4),
                "plan_with_work_mem": "\n".join(rows),
            }
    engine.dispose()
    return found


# ------------------------------------------------------------------------------ (d)


def cards(url: str) -> pd.DataFrame:
    """What the store computed and pandas takes as given: the RFM cell and lifecycle stage."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(customers.c.id, customers.c.rfm_cell, customers.c.lifecycle_stage)
        ).all()
    engine.dispose()
    return pd.DataFrame(rows, columns=["id", "rfm_cell", "lifecycle_stage"])


def time_pandas(f: Frames, runs: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for case in CASES:
        times, counts = [], set()
        for _ in range(runs):
            started = time.perf_counter()
            counts.add(case.pandas(f))
            times.append(time.perf_counter() - started)
        out[case.key] = {"count": counts.pop(), "median_s": statistics.median(times)}
    return out


# ------------------------------------------------------------------------------ (b)


def define_segments(engine: sa.Engine, now: datetime) -> list[int]:
    """The 20 segments, with their membership back-filled (no timeline events)."""
    ids = []
    with writing(engine) as conn:
        for case in CASES:
            ids.append(create_segment(conn, case.title, case.key, case.rule, now).id)
        sweep(conn, SegmentIndex().current(conn), now, ids, backfill=True)
    return ids


def ingest_rate(
    url: str, now: datetime, visitors: int, batches: int, rounds: int
) -> dict[str, Any]:
    """Events/s with and without the segments, interleaved so drift hits both alike.

    "Without" is the same pipeline with a segment index that never loads (ttl = ∞): what
    the pipeline does in a store with no segments.
    """
    engine = create_engine(url)
    workload = Workload(visitors=visitors, seed=11)
    workload.t = now - timedelta(hours=2)  # 50 ms a message: stays before "now"
    received = now

    def parsed(k: int) -> list[Any]:
        return [
            parse_batch(
                workload.batch(100),
                received_at=received,
                phone_region="RU",
                max_message_bytes=32768,
            )
            for _ in range(k)
        ]

    plain = Pipeline(engine, SimulatedClock(now))
    plain.segment_index = SegmentIndex(ttl=math.inf)
    for batch in parsed(5):  # warm-up: connections, caches, the product catalogue
        plain.ingest(batch)
    ids = define_segments(engine, now)
    active = Pipeline(engine, SimulatedClock(now))
    for batch in parsed(2):
        active.ingest(batch)
    spent = {"none": 0.0, "segments": 0.0}
    events = {"none": 0, "segments": 0}
    per_round = max(1, batches // rounds)
    for _ in range(rounds):
        for key, pipeline in (("none", plain), ("segments", active)):
            work = parsed(per_round)
            started = time.perf_counter()
            for batch in work:
                pipeline.ingest(batch)
            spent[key] += time.perf_counter() - started
            events[key] += 100 * len(work)
    with engine.connect() as conn:
        moves = conn.exec_driver_sql(
            "SELECT count(*) FROM events WHERE name IN ('Segment Entered', 'Segment Exited') "
            "AND source = 'system'"
        ).scalar_one()
    engine.dispose()
    none = events["none"] / spent["none"]
    with_segments = events["segments"] / spent["segments"]
    return {
        "segments": len(ids),
        "events_each": events["none"],
        "none_events_per_s": round(none),
        "segments_events_per_s": round(with_segments),
        "slowdown": round(1 - with_segments / none, 3),
        "membership_events": int(moves),
    }


# ------------------------------------------------------------------------------ (c)


class Http:
    """A blocking keep-alive HTTP/1.1 client on a raw socket: the probe must cost far less
    than what it measures (see bench/ingest.py for why not a client library)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")
        self.host = host

    def request(self, method: str, path: str, auth: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: {auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.sock.sendall(head + body)
        status = int(self.file.readline().split()[1])
        length = 0
        while (line := self.file.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return status, self.file.read(length)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def freshness(url: str, probes: int) -> dict[str, Any]:
    import base64

    engine = create_engine(url)
    with writing(engine) as conn:
        probe_id = create_segment(conn, "Freshness probe", "", PROBE_RULE, datetime.now(UTC)).id
    write_key = create_key(engine, "write", "bench", datetime.now(UTC)).key
    secret = create_key(engine, "secret", "bench", datetime.now(UTC)).key
    # Distinct customers: nobody has performed the probe event before, so each one enters.
    visitors = [f"anon-{v}" for v in range(1, 40 * probes, 40)][:probes]
    with engine.connect() as conn:
        owner = dict(
            conn.execute(
                sa.select(identities.c.value, identities.c.customer_id).where(
                    identities.c.kind == "anonymous_id", identities.c.value.in_(visitors)
                )
            ).all()
        )
    engine.dispose()
    basic = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    bearer = f"Bearer {secret}"
    seen: list[float] = []
    polls: list[int] = []
    with Server(url) as base:
        host, _, port = base.removeprefix("http://").partition(":")
        http = Http(host, int(port))
        time.sleep(2.5)  # the server's segment index reloads within 2 s
        for i, anon in enumerate(visitors):
            cid = owner[anon]
            body = orjson.dumps(
                {"anonymousId": anon, "event": PROBE_EVENT, "messageId": f"probe-{i}-{anon}"}
            )
            path = f"/api/customers/{cid}/timeline?name={quote(ENTERED)}&limit=5"
            started = time.perf_counter()
            status, answer = http.request("POST", "/v1/track", basic, body)
            if status != 200:
                raise RuntimeError(f"track failed: {status} {answer[:300]!r}")
            n = 0
            while True:
                n += 1
                status, answer = http.request("GET", path, bearer)
                if status != 200:
                    raise RuntimeError(f"timeline failed: {status} {answer[:300]!r}")
                found = any(
                    e["properties"].get("segment_id") == probe_id
                    for e in orjson.loads(answer)["events"]
                )
                if found:
                    break
                if time.perf_counter() - started > 30:
                    raise RuntimeError(f"customer {cid} never entered the probe segment")
                time.sleep(0.002)
            seen.append(time.perf_counter() - started)
            polls.append(n)
            time.sleep(0.02)
        http.close()
    seen.sort()
    return {
        "probes": len(seen),
        "p50_ms": round(statistics.median(seen) * 1000, 2),
        "p99_ms": round(seen[max(0, math.ceil(len(seen) * 0.99) - 1)] * 1000, 2),
        "max_ms": round(seen[-1] * 1000, 2),
        "polls_mean": round(statistics.mean(polls), 2),
    }


# ------------------------------------------------------------------------------ report


def report(result: dict[str, Any], store_names: list[str]) -> None:
    if "segments" in result:
        report_counts(result, store_names)
    report_realtime(result)


def report_counts(result: dict[str, Any], store_names: list[str]) -> None:
    a, d = result["segments"], result["pandas"]
    table = Table(
        title=f"(a) full evaluation, median of 3 — {result['customers']:,} customers, "
        f"{result['events']:,} events; (d) pandas baseline from raw events"
    )
    table.add_column("segment")
    table.add_column("reads")
    table.add_column("members", justify="right")
    for s in store_names:
        table.add_column(f"{s} ms", justify="right")
    table.add_column("pandas ms", justify="right")
    if "postgres" in store_names:
        table.add_column("pg / pandas", justify="right")
    table.add_column("counts", justify="center")
    for case in CASES:
        row = [case.key, case.reads, f"{d[case.key]['count']:,}"]
        for s in store_names:
            if a[s][case.key]["median_s"] is None:
                row.append(f"[red]> {a[s][case.key]['timed_out_after_s']} s[/red]")
                continue
            ms = a[s][case.key]["median_s"] * 1000
            slow = s == "postgres" and ms > TARGET_SEGMENT_S * 1000
            row.append(f"[red]{ms:,.0f}[/red]" if slow else f"{ms:,.0f}")
        row.append(f"{d[case.key]['median_s'] * 1000:,.0f}")
        if "postgres" in store_names:
            pg_s = a["postgres"][case.key]["median_s"]
            row.append(f"{pg_s / d[case.key]['median_s']:.1f}×" if pg_s else "—")
        row.append("[green]equal[/green]" if case.key not in result["mismatches"] else "[red]DIFF")
        table.add_row(*row)
    done = [c.key for c in CASES if all(a[s][c.key]["median_s"] is not None for s in store_names)]
    totals = [f"sum of {len(done)} finished", "", ""]
    for s in store_names:
        totals.append(f"{sum(a[s][k]['median_s'] for k in done) * 1000:,.0f}")
    pandas_sum = sum(d[k]["median_s"] for k in done)
    totals.append(f"{pandas_sum * 1000:,.0f}")
    if "postgres" in store_names:
        totals.append(f"{sum(a['postgres'][k]['median_s'] for k in done) / pandas_sum:.1f}×")
    totals.append("")
    table.add_row(*totals, style="bold")
    console.print(table)
    console.print(
        f"target: a typical segment on 1M customers ≤ {TARGET_SEGMENT_S * 1000:.0f} ms on "
        "PostgreSQL (red: over). pg / pandas: how many times longer PostgreSQL takes than "
        "pandas, which times only the computation, in memory, on typed columns (properties "
        "already extracted), with nothing precomputed."
    )


def report_realtime(result: dict[str, Any]) -> None:
    if result.get("ingest"):
        t = Table(title="(b) ingest through Pipeline.ingest, batches of 100, in process")
        for col in ("store", "customers", "no segments ev/s", "20 segments ev/s", "slowdown"):
            t.add_column(col, justify="right")
        t.add_column("target")
        for s, r in result["ingest"].items():
            t.add_row(
                s,
                f"{result['ingest_customers']:,}",
                f"{r['none_events_per_s']:,}",
                f"{r['segments_events_per_s']:,}",
                f"{r['slowdown'] * 100:.0f} %",
                f"≤ {TARGET_INGEST_SLOWDOWN * 100:.0f} %",
            )
        console.print(t)
    if result.get("freshness"):
        t = Table(title="(c) freshness: /v1/track → Segment Entered on the timeline (API)")
        for col in ("store", "probes", "p50 ms", "p99 ms", "max ms"):
            t.add_column(col, justify="right")
        t.add_column("target")
        for s, r in result["freshness"].items():
            t.add_row(
                s,
                str(r["probes"]),
                f"{r['p50_ms']}",
                f"{r['p99_ms']}",
                f"{r['max_ms']}",
                f"p99 ≤ {TARGET_FRESHNESS_P99_S * 1000:.0f} ms",
            )
        console.print(t)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="50,000 customers")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--customers", type=int, help="override the store size")
    parser.add_argument(
        "--explain", action="store_true", help="EXPLAIN ANALYZE slow segments on PostgreSQL"
    )
    parser.add_argument("--skip-realtime", action="store_true", help="only (a) and (d)")
    parser.add_argument(
        "--realtime-only", action="store_true", help="only (b) and (c), on their own store"
    )
    parser.add_argument(
        "--timeout", type=int, default=120, help="seconds before a count is given up (PostgreSQL)"
    )
    args = parser.parse_args()
    names = [s for s in ("sqlite", "postgres") if s in args.stores.split(",")]
    n = args.customers or (50_000 if args.quick else 1_000_000)
    small = 10_000 if args.quick else 100_000
    probes = 50 if args.quick else 200
    batches, rounds = (40, 4) if args.quick else (300, 10)
    now = now_hour()
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})  # the server of (c) gets core 0

    result: dict[str, Any] = {"quick": args.quick, "at": now.isoformat(), "customers": n}
    tmp = tempfile.mkdtemp(prefix="rapport-bench-")
    started = time.perf_counter()
    try:
        if not args.realtime_only:
            with stores(names, "segments", tmp) as urls:
                built = load(urls, n, now, "store")
                result.update(
                    events=built.events,
                    event_counters=built.counters,
                    orders=built.orders,
                    build_s={k: round(v, 1) for k, v in built.seconds.items()},
                )
                result["segments"] = {}
                for s in names:
                    console.print(f"[bold]{s}[/bold]: counting 20 segments, 3 runs each")
                    result["segments"][s] = time_segments(urls[s], now, 3, args.timeout)
                f = frames(
                    built.events_columns,
                    built.customer_columns,
                    cards(urls[names[-1]]),
                    Clocks(now).now_t,
                    now.date(),
                )
                del built
                console.print("[bold]pandas[/bold]: the same 20 segments from the raw events")
                result["pandas"] = time_pandas(f, 3)
                del f
                mismatches = {}
                for case in CASES:
                    want = result["pandas"][case.key]["count"]
                    got = {s: result["segments"][s][case.key]["count"] for s in names}
                    if any(v is not None and v != want for v in got.values()):
                        mismatches[case.key] = {"pandas": want, **got}
                result["mismatches"] = mismatches
                if "postgres" in names:
                    pg = result["segments"]["postgres"]
                    slow = [k for k, v in pg.items() if (v["median_s"] or 0) > TARGET_SEGMENT_S]
                    stuck = [k for k, v in pg.items() if v["median_s"] is None]
                    result["slow_on_postgres"] = slow
                    result["timed_out_on_postgres"] = stuck
                    if args.explain and slow:
                        result["plans"] = explain(urls["postgres"], now, slow)
                    if stuck:
                        console.print(f"[bold]postgres[/bold]: diagnosing {', '.join(stuck)}")
                        result["diagnosis"] = diagnose(urls["postgres"], now, stuck, "64MB")
        if not args.skip_realtime:
            result["ingest_customers"] = small
            result["ingest"], result["freshness"] = {}, {}
            with stores(names, "realtime", tmp) as urls:
                load(urls, small, now, "realtime store")
                for s in names:
                    console.print(f"[bold]{s}[/bold]: ingest with 20 segments vs none")
                    result["ingest"][s] = ingest_rate(urls[s], now, small, batches, rounds)
                    console.print(f"[bold]{s}[/bold]: freshness, {probes} probes")
                    result["freshness"][s] = freshness(urls[s], probes)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["total_s"] = round(time.perf_counter() - started, 1)

    report(result, names)
    for key, plan in result.get("plans", {}).items():
        console.print(f"[bold]EXPLAIN ANALYZE {key}[/bold]\n{plan}")
    for key, d in result.get("diagnosis", {}).items():
        console.print(
            f"[bold red]{key} timed out on PostgreSQL[/bold red]; plan as is:\n{d['plan_as_is']}\n"
            f"[bold]with work_mem = {d['work_mem']}[/bold]: {d['median_s'] * 1000:,.0f} ms, "
            f"{d['count']:,} members\n{d['plan_with_work_mem']}"
        )
    # A run of (b) and (c) alone keeps its own file: a full run's counts stay.
    name = "segments-realtime.json" if args.realtime_only else "segments.json"
    out = ROOT / "bench" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    for per_store in result.get("segments", {}).values():
        for v in per_store.values():
            if v["median_s"] is not None:
                v["median_s"] = round(v["median_s"], 4)
    for v in result.get("pandas", {}).values():
        v["median_s"] = round(v["median_s"], 4)
    out.write_text(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    console.print(f"written {out.relative_to(ROOT)} in {result['total_s']:.0f} s")
    if result.get("mismatches"):
        console.print(
            "[bold red]MISMATCH between pandas and Rapport counts:[/bold red] "
            f"{result['mismatches']}"
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
