"""Ingest benchmark: sustained events/s through /v1/batch and /v1/track latency.

For each store (SQLite, PostgreSQL) it starts `rapport serve` pinned to one core, drives it
from the other core with several concurrent clients sending 100-event batches of a
realistic mix (computed fields maintained), then measures single /v1/track calls at a
fixed arrival rate. The baseline, measured in the same run, is the raw limit: the same
event rows written straight into the events table (executemany on SQLite, COPY on
PostgreSQL), in transactions of the same size. Prints a table and writes
bench/results/ingest.json.

Each store runs in each ingest mode (``--modes``): ``direct`` answers a request once its
events are applied; ``queued`` answers once the request is in the store's inbox, and a
`rapport worker --ingest-only` process applies it; ``lanes`` (PostgreSQL) is queued ingest
split by customer into ``--lanes`` lanes, the worker running an applier process for each.
The events/s column is always the sustained rate, every event applied (queued: timed
until the inbox is empty).

    python bench/ingest.py            # full run
    python bench/ingest.py --quick    # under a minute
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.postgres_server import create_database, server_url  # noqa: E402

from bench.cpu import children, cpu_seconds, database_processes  # noqa: E402
from bench.workload import Workload  # noqa: E402
from rapport.access.keys import create_key  # noqa: E402
from rapport.ingest.inbox import status as inbox_status  # noqa: E402
from rapport.store.engine import create_engine  # noqa: E402
from rapport.store.migrate import upgrade  # noqa: E402
from rapport.store.tables import events  # noqa: E402

console = Console()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


QUEUED_ENV = {"RAPPORT_INGEST_QUEUE": "true", "RAPPORT_INGEST_APPLY": "false"}


class Server:
    """`rapport serve` in its own process, on one core when the machine has two."""

    def __init__(self, url: str, env: dict[str, str] | None = None) -> None:
        self.url = url
        self.env = {**os.environ, **(env or {})}
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        cmd = [
            sys.executable,
            "-m",
            "rapport.cli",
            "serve",
            "--database-url",
            self.url,
            "--port",
            str(self.port),
        ]
        if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
            cmd = ["taskset", "-c", "0", *cmd]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log, env=self.env)
        base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    return base
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(
            "server did not start: "
            + (self.proc.stderr.read(2000).decode() if self.proc.stderr else "")
        )

    def errors(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        if exc_type is not None:
            console.print(f"[red]server log:[/red]\n{self.errors()}")


class InboxWorker:
    """`rapport worker --ingest-only`: applies the queued requests the server appended,
    with one applier process per lane. Not pinned: it shares the machine with the
    database and the load generator."""

    def __init__(self, url: str, lanes: int = 1) -> None:
        self.url = url
        self.lanes = lanes
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> InboxWorker:
        cmd = [sys.executable, "-m", "rapport.cli", "worker", "--ingest-only"]
        cmd += ["--appliers", str(self.lanes)]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [*cmd, "--database-url", self.url], stdout=subprocess.DEVNULL, stderr=self.log
        )
        return self

    def pids(self) -> list[int]:
        """The worker and the applier processes it started."""
        return [self.proc.pid, *children(self.proc.pid)] if self.proc else []

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self.proc:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=60)
        if exc_type is not None:
            self.log.seek(0)
            console.print(f"[red]worker log:[/red]\n{self.log.read().decode()[-3000:]}")


def _wait_applied(url: str, timeout: float = 600.0) -> float:
    """Seconds until the inbox is empty, polled every 20 ms."""
    engine = create_engine(url)
    start = time.perf_counter()
    try:
        while time.perf_counter() - start < timeout:
            with engine.connect() as conn:
                if inbox_status(conn).pending_requests == 0:
                    return time.perf_counter() - start
            time.sleep(0.02)
        raise RuntimeError("the inbox was not applied in time")
    finally:
        engine.dispose()


class Connection:
    """A minimal keep-alive HTTP/1.1 client: the load generator must cost far less than the
    server it measures, which a full-featured client library on one core does not."""

    def __init__(self, host: str, port: int, key: str) -> None:
        self.host, self.port = host, port
        self.auth = base64.b64encode(f"{key}:".encode()).decode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        try:
            return await self._post(path, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            # The server closed an idle keep-alive connection: reconnect and send again.
            self.close()
            self.writer = None
            return await self._post(path, body)

    async def _post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Basic {self.auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(v.split(b":")[1]) for v in lines if v.lower().startswith(b"content-length")
        )
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _hostport(base: str) -> tuple[str, int]:
    host, _, port = base.removeprefix("http://").partition(":")
    return host, int(port)


async def _throughput(base: str, key: str, bodies: list[bytes], clients: int) -> float:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    host, port = _hostport(base)

    async def worker() -> None:
        conn = Connection(host, port, key)
        try:
            while True:
                try:
                    body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                status, answer = await conn.post("/v1/batch", body)
                if status != 200:
                    raise RuntimeError(f"batch failed: {status} {answer[:300]!r}")
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return time.perf_counter() - start


async def _latency(base: str, key: str, messages: list[bytes], rate: float) -> list[float]:
    """Open loop: requests leave on a fixed schedule whether or not earlier ones returned."""
    host, port = _hostport(base)
    latencies: list[float] = []
    idle: list[Connection] = [Connection(host, port, key) for _ in range(64)]

    async def one(body: bytes, due: float) -> None:
        conn = idle.pop() if idle else Connection(host, port, key)
        status, answer = await conn.post("/v1/track", body)
        latencies.append(time.perf_counter() - due)
        idle.append(conn)
        if status != 200:
            raise RuntimeError(f"track failed: {status} {answer[:300]!r}")

    start = time.perf_counter()
    tasks = []
    for i, body in enumerate(messages):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(body, due)))
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.close()
    return latencies


def _event_rows(batches: list[list[dict[str, Any]]]) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = []
    for batch in batches:
        for i, m in enumerate(batch):
            rows.append(
                (
                    i + 1,
                    m["messageId"],
                    m["type"],
                    m.get("event") or m["type"],
                    orjson.dumps(m.get("properties") or m.get("traits") or {}).decode(),
                    orjson.dumps(m.get("context") or {}).decode(),
                    now,
                    now,
                    "api",
                )
            )
    return rows


COLUMNS = (
    "customer_id, message_id, type, name, properties, context, occurred_at, received_at, source"
)


def _raw_sqlite(path: str, rows: list[tuple[Any, ...]], chunk: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("DELETE FROM events")
    start = time.perf_counter()
    for i in range(0, len(rows), chunk):
        conn.execute("BEGIN")
        conn.executemany(
            f"INSERT INTO events ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", rows[i : i + chunk]
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(rows) / elapsed


def _raw_postgres(url: str, rows: list[tuple[Any, ...]], chunk: int) -> float:
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE events")
        conn.commit()
        start = time.perf_counter()
        for i in range(0, len(rows), chunk):
            with conn.cursor() as cur, cur.copy(f"COPY events ({COLUMNS}) FROM STDIN") as copy:
                for row in rows[i : i + chunk]:
                    copy.write_row(row)
            conn.commit()
        return len(rows) / (time.perf_counter() - start)


def _analyze(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def run_backend(
    name: str, url: str, raw_url: str, args: argparse.Namespace, mode: str
) -> dict[str, Any]:
    """One store in one ingest mode: ``direct`` answers once events are applied; ``queued``
    answers once the request is in the inbox, and a worker process applies it; ``lanes``
    is queued ingest split into ``args.lanes`` lanes, each with its applier process."""
    queued = mode in ("queued", "lanes")
    lanes = args.lanes if mode == "lanes" else 1
    engine = create_engine(url)
    upgrade(engine)
    key = create_key(engine, "write", "bench", datetime.now(UTC)).key
    engine.dispose()
    workload = Workload(visitors=args.visitors, seed=11)
    warm = args.warm_batches
    batches = [workload.batch(args.batch_size) for _ in range(warm + args.batches)]
    bodies = [orjson.dumps({"batch": b}) for b in batches]
    # The workload lives to the end of the run: out of the collector's full passes, which
    # otherwise pause the load generator (up to ~130 ms) while it times requests.
    gc.collect()
    gc.freeze()
    tracks = [
        orjson.dumps(workload.batch(1)[0] | {"type": "track", "event": "Latency Probe"})
        for _ in range(args.track_requests * args.track_runs)
    ]
    server = Server(url, {**QUEUED_ENV, "RAPPORT_INGEST_LANES": str(lanes)} if queued else None)
    with server as base, InboxWorker(url, lanes) if queued else nullcontext() as worker:
        # Warm up (connections, caches, the first customers), then refresh planner
        # statistics as autovacuum would in a running store: on a never-analysed table
        # PostgreSQL plans the messageId lookup as a sequential scan. The warm-up is a
        # tenth of the measured run: statistics taken on 300 events, with the tables 300
        # times larger by the end, had PostgreSQL scan carts and orders whole where a
        # running store's autovacuum (every minute) keeps them near the tables' size.
        asyncio.run(_throughput(base, key, bodies[:warm], args.clients))
        if queued:
            _wait_applied(url)
        _analyze(url)
        # CPU per event of the server process, the applying worker and the database's own
        # processes: what the throughput costs, which a busy machine disturbs far less
        # than wall time.
        server_pid = server.proc.pid if server.proc else 0
        worker_pids = worker.pids() if worker else []
        database = url.rsplit("/", 1)[1]
        db_pids = database_processes(database) if name == "postgres" else []
        cpu0 = cpu_seconds([server_pid]), cpu_seconds(db_pids), cpu_seconds(worker_pids)
        acknowledged = asyncio.run(_throughput(base, key, bodies[warm:], args.clients))
        elapsed = acknowledged + (_wait_applied(url) if queued else 0.0)
        # Backends (and autovacuum workers) that started during the run count from zero.
        db_after = database_processes(database) if name == "postgres" else []
        cpu1 = cpu_seconds([server_pid]), cpu_seconds(db_after), cpu_seconds(worker_pids)
        events = args.batches * args.batch_size
        # Several latency phases, each of its own calls: one stall (an autovacuum, a
        # checkpoint) fills a phase's top 1 %, so the median phase is the figure quoted.
        phases = [
            sorted(asyncio.run(_latency(base, key, tracks[i :: args.track_runs], args.rate)))
            for i in range(args.track_runs)
        ]
        if queued:
            _wait_applied(url)
    check = create_engine(url)
    with check.connect() as conn:
        stored = conn.exec_driver_sql(
            "SELECT count(*) FROM events WHERE type <> 'system'"
        ).scalar_one()
    check.dispose()
    rows = _event_rows(batches[warm:])
    raw = (
        _raw_sqlite(raw_url, rows, args.batch_size)
        if name == "sqlite"
        else _raw_postgres(raw_url, rows, args.batch_size)
    )

    def per_event(before: float, after: float) -> float:
        return round((after - before) / events * 1e6, 1)

    result = {
        "store": name,
        "mode": mode,
        "lanes": lanes,
        "events": events,
        "warm_events": warm * args.batch_size,
        "stored_total": stored,
        "seconds": round(elapsed, 3),
        # Sustained: every event applied (for queued ingest, until the inbox is empty).
        "events_per_s": round(events / elapsed),
        "acknowledged_per_s": round(events / acknowledged),
        "raw_rows_per_s": round(raw),
        "ratio_to_raw": round((events / elapsed) / raw, 3),
        "server_cpu_us_per_event": per_event(cpu0[0], cpu1[0]),
        "worker_cpu_us_per_event": per_event(cpu0[2], cpu1[2]) if queued else None,
        "database_cpu_us_per_event": per_event(cpu0[1], cpu1[1]) if db_pids else None,
        "load_average": round(os.getloadavg()[0], 2),
        "track_requests": sum(len(p) for p in phases),
        "track_rate_per_s": args.rate,
        # Medians over the phases of each phase's p50 and p99; every phase's p99 beside.
        "track_p50_ms": round(statistics.median(_quantile(p, 0.5) for p in phases) * 1000, 2),
        "track_p99_ms": round(statistics.median(_quantile(p, 0.99) for p in phases) * 1000, 2),
        "track_p99_each_ms": [round(_quantile(p, 0.99) * 1000, 2) for p in phases],
    }
    expected = len(bodies) * args.batch_size + len(tracks)
    if stored != expected:
        raise RuntimeError(f"{name} ({mode}): {stored} events stored, {expected} sent")
    return result


def _quantile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted latencies (the value below which a fraction q lies)."""
    return ordered[max(0, int(len(ordered) * q) - 1)]


def _or_dash(value: float | None) -> str:
    return "-" if value is None else f"{value}"


def _events_table(url: str) -> None:
    """The baseline's store: only the events table, as the migrations make it."""
    engine = create_engine(url)
    events.create(engine)
    engine.dispose()


def _run_store(store: str, mode: str, tmp: str, args: argparse.Namespace) -> dict[str, Any]:
    """A fresh store (and a fresh raw baseline store) for one store and mode."""
    if store == "sqlite":
        url, raw_url = f"sqlite:///{tmp}/{mode}.db", f"{tmp}/{mode}-raw.db"
        _events_table(f"sqlite:///{raw_url}")
        return run_backend(store, url, raw_url, args, mode)
    server = server_url()
    url, drop = create_database(server, "rapport_bench")
    raw, drop_raw = create_database(server, "rapport_bench_raw")
    try:
        _events_table(raw)
        return run_backend(store, url, raw, args, mode)
    finally:
        drop()  # type: ignore[operator]
        drop_raw()  # type: ignore[operator]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small run, under a minute")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rate", type=float, default=500.0, help="/v1/track requests per second")
    parser.add_argument(
        "--track-runs",
        type=int,
        default=3,
        help="latency phases per store and mode; their median p50/p99 is reported",
    )
    parser.add_argument(
        "--warm-batches",
        type=int,
        default=None,
        help="batches sent before measuring, then ANALYZE (default: a tenth of the run)",
    )
    parser.add_argument(
        "--modes",
        default="direct,queued,lanes",
        help="ingest modes: direct (answer once applied), queued (answer once in the inbox), "
        "lanes (queued, split into --lanes lanes with an applier process each; PostgreSQL)",
    )
    parser.add_argument(
        "--lanes", type=int, default=2, help="lanes (and applier processes) of the lanes mode"
    )
    args = parser.parse_args()
    args.batch_size = 100
    args.batches = 40 if args.quick else 1000
    args.visitors = 5_000 if args.quick else 50_000
    args.track_requests = 500 if args.quick else 5000
    if args.warm_batches is None:
        args.warm_batches = max(3, args.batches // 10)

    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    results = []
    tmp = tempfile.mkdtemp(prefix="rapport-bench-")
    try:
        for store in args.stores.split(","):
            for mode in args.modes.split(","):
                if mode == "lanes" and store == "sqlite":
                    continue  # one writer at a time: appliers side by side only queue
                console.print(
                    f"[bold]{store}, {mode}[/bold]: {args.batches} batches of "
                    f"{args.batch_size}, {args.clients} clients; then {args.track_runs} × "
                    f"{args.track_requests} /v1/track at {args.rate:g}/s"
                )
                results.append(_run_store(store, mode, tmp, args))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    table = Table(
        title="Ingest (server on one core)",
        caption="events/s: every event applied; acknowledged: answered (queued: in the "
        "inbox). CPU per event: the server's process, the applying worker's, the database's",
    )
    for col in (
        "store",
        "mode",
        "events/s",
        "acknowledged/s",
        "raw rows/s",
        "ratio",
        "server µs/ev",
        "worker µs/ev",
        "db µs/ev",
        "track p50 ms",
        "p99 ms (each phase)",
    ):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(
            r["store"],
            r["mode"] + (f" ×{r['lanes']}" if r["lanes"] > 1 else ""),
            f"{r['events_per_s']:,}",
            f"{r['acknowledged_per_s']:,}",
            f"{r['raw_rows_per_s']:,}",
            f"{r['ratio_to_raw']:.2f}",
            f"{r['server_cpu_us_per_event']}",
            _or_dash(r["worker_cpu_us_per_event"]),
            _or_dash(r["database_cpu_us_per_event"]),
            f"{r['track_p50_ms']}",
            f"{r['track_p99_ms']} ({', '.join(str(v) for v in r['track_p99_each_ms'])})",
        )
    console.print(table)
    console.print(f"load average {os.getloadavg()[0]:.2f} (other work on the machine)")
    out = ROOT / "bench" / "results" / "ingest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        orjson.dumps(
            {"quick": args.quick, "results": results, "at": datetime.now(UTC).isoformat()},
            option=orjson.OPT_INDENT_2,
        ).decode()
    )
    console.print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
