"""Scenario benchmark: trigger-to-channel latency, and due steps per second.

(a) **Latency.** `rapport serve` (SQLite, then PostgreSQL) in its own process, pinned to
one core, with an active scenario whose first step is a send: an e-mail through the SMTP
channel configured with ``PUT /api/channels`` to a local aiosmtpd server in another
process, which notes when each message arrives. The load generator sends the trigger event
with single ``/v1/track`` calls at a fixed rate (open loop, raw HTTP); latency is the
message's arrival at the SMTP server minus the moment its event was sent. The baseline, in
the same run and from the same requests: the ``/v1/track`` round trip itself, which ends
once the event, the run and its outbox row are committed; what lies between the two is
delivery (the dispatch loop noticing the row, claiming it, sending it).

(b) **Throughput.** PostgreSQL, N runs written straight into ``scenario_runs`` (``INSERT …
SELECT generate_series``), all due at a wait step — the run wakes, goes to sleep for a
day at the wait, and its step is logged: claim, advance, write back. Worker processes run
the real ``ScenarioLoop`` (1, then 2 processes, sharing the runs with ``SKIP LOCKED``). The
baseline, same run, same table, same number of processes: the raw claim-and-update limit,
a plain ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n)`` loop. A send
step (policy, composing the message, the outbox row, ``Message Queued`` on the card) is
measured the same way on fewer runs, with a customer with e-mail and consent per run.

Prints tables and writes bench/results/scenarios.json.

    python bench/scenarios.py            # full run: 1,000,000 runs (several minutes)
    python bench/scenarios.py --quick    # under a minute
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.connection import Connection as Pipe
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

from bench.ingest import Connection, Server, _free_port, _hostport  # noqa: E402
from rapport.access.keys import create_key  # noqa: E402
from rapport.messaging.templates.store import create_template  # noqa: E402
from rapport.scenarios.store import create_scenario, set_status  # noqa: E402
from rapport.store.engine import create_engine, writing  # noqa: E402
from rapport.store.migrate import upgrade  # noqa: E402

console = Console(width=max(120, Console().width))

TARGET_P99_S = 1.0
TARGET_STEPS_PER_S = 10_000
BATCH = 500  # runs per claim: ScenarioLoop's default

PROBE_SCENARIO = """
name: latency-probe
trigger: {event: Latency Probe}
entity_key: probe
entry: {mode: every_time}
steps:
  - {id: hello, send: {template: probe}}
"""

WAIT_SCENARIO = """
name: due-waits
trigger: {event: Bench Due}
steps:
  - {id: nap, wait: {days: 1}}
  - {id: later, wait: {days: 1}}
"""

SEND_SCENARIO = """
name: due-sends
trigger: {event: Bench Due}
steps:
  - {id: hello, send: {template: hello}}
  - {id: later, wait: {days: 1}}
"""


def _two_cores() -> bool:
    return hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * q) - 1))]


# ------------------------------------------------------------------ (a) the SMTP receiver

_SUBJECT = re.compile(rb"^subject:[ \t]*probe (\d+)", re.IGNORECASE | re.MULTILINE)


class Stamper:
    """An aiosmtpd handler that notes when each probe's message arrived (wall clock)."""

    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}
        self.duplicates = 0
        self.other = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        at = time.time()
        data: bytes = envelope.original_content or b""
        end = data.find(b"\r\n\r\n")
        found = _SUBJECT.search(data, 0, end if end >= 0 else len(data))
        if found is None:
            self.other += 1
        else:
            probe = int(found.group(1))
            if probe in self.arrived:
                self.duplicates += 1
            else:
                self.arrived[probe] = at
        return "250 2.0.0 Ok: queued"


def _smtp_process(port: int, commands: Pipe) -> None:
    from aiosmtpd.controller import Controller

    if _two_cores():
        os.sched_setaffinity(0, {1})
    stamper = Stamper()
    controller = Controller(stamper, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    commands.send("ready")
    while True:
        command = commands.recv()
        if command == "stats":
            fut = asyncio.run_coroutine_threadsafe(_snapshot(stamper), controller.loop)
            commands.send(fut.result())
        else:
            controller.stop()
            commands.send("stopped")
            return


async def _snapshot(stamper: Stamper) -> dict[str, Any]:
    return {
        "arrived": dict(stamper.arrived),
        "duplicates": stamper.duplicates,
        "other": stamper.other,
    }


class SmtpReceiver:
    def __init__(self) -> None:
        self.port = _free_port()
        ctx = mp.get_context("spawn")
        self._pipe, child = ctx.Pipe()
        self._proc = ctx.Process(target=_smtp_process, args=(self.port, child), daemon=True)

    def __enter__(self) -> SmtpReceiver:
        self._proc.start()
        if not self._pipe.poll(60) or self._pipe.recv() != "ready":
            raise RuntimeError("the SMTP server process did not start")
        return self

    def stats(self) -> dict[str, Any]:
        self._pipe.send("stats")
        return dict(self._pipe.recv())

    def __exit__(self, *exc: object) -> None:
        try:
            self._pipe.send("stop")
            self._pipe.recv()
        finally:
            self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.terminate()


# ------------------------------------------------------------------ (a) the latency run


class _Server(Server):
    """`rapport serve` as in the ingest benchmark, killed if it does not stop in time."""

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            super().__exit__(exc_type, *exc)
        except subprocess.TimeoutExpired:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()


def _prepare_latency_store(url: str) -> tuple[str, str]:
    """Migrated store, keys, the probe template and the active scenario."""
    now = datetime.now(UTC)
    engine = create_engine(url)
    upgrade(engine)
    write = create_key(engine, "write", "bench", now).key
    secret = create_key(engine, "secret", "bench", now).key
    with writing(engine) as conn:
        create_template(
            conn,
            name="probe",
            channel="email",
            kind="text",
            variants={"en": {"subject": "probe {{ event.properties.probe }}", "body": "Hello"}},
            now=now,
        )
        stored = create_scenario(conn, PROBE_SCENARIO, now)
        set_status(conn, stored.id, "active", now)
    engine.dispose()
    return write, secret


async def _identify(base: str, key: str, customers: int) -> None:
    host, port = _hostport(base)
    conn = Connection(host, port, key)
    try:
        for start in range(0, customers, 100):
            batch = [
                {
                    "type": "identify",
                    "userId": f"probe-{i}",
                    "traits": {"email": f"probe{i}@example.com", "consents": {"email": True}},
                }
                for i in range(start, min(customers, start + 100))
            ]
            status, answer = await conn.post("/v1/batch", orjson.dumps({"batch": batch}))
            if status != 200:
                raise RuntimeError(f"identify failed: {status} {answer[:300]!r}")
    finally:
        conn.close()


def _probe(i: int, customers: int) -> bytes:
    return orjson.dumps(
        {
            "type": "track",
            "userId": f"probe-{i % customers}",
            "event": "Latency Probe",
            "properties": {"probe": i},
        }
    )


async def _send_probes(
    base: str, key: str, first: int, count: int, rate: float, customers: int
) -> tuple[dict[int, float], list[float]]:
    """Open loop: probe ``i`` leaves at ``start + i / rate`` whether or not earlier ones
    returned. Returns each probe's send time (wall clock) and the round trips."""
    host, port = _hostport(base)
    sent: dict[int, float] = {}
    acks: list[float] = []
    idle = [Connection(host, port, key) for _ in range(32)]

    async def one(i: int) -> None:
        conn = idle.pop() if idle else Connection(host, port, key)
        sent[i] = time.time()
        t = time.perf_counter()
        status, answer = await conn.post("/v1/track", _probe(i, customers))
        acks.append(time.perf_counter() - t)
        idle.append(conn)
        if status != 200:
            raise RuntimeError(f"track failed: {status} {answer[:300]!r}")

    start = time.perf_counter()
    tasks = []
    for n in range(count):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(first + n)))
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.close()
    return sent, acks


def _wait_for(receiver: SmtpReceiver, probes: set[int], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        stats = receiver.stats()
        if probes <= stats["arrived"].keys() or time.monotonic() > deadline:
            return stats
        time.sleep(0.2)


def latency_run(store: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    write, secret = _prepare_latency_store(url)
    with SmtpReceiver() as receiver, _Server(url) as base:
        channels = {
            "email": {
                "backend": "smtp",
                "host": "127.0.0.1",
                "port": receiver.port,
                "security": "plain",
                "sender": "Shop <news@shop.example>",
            }
        }
        answer = httpx.put(
            f"{base}/api/channels",
            json=channels,
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        )
        answer.raise_for_status()
        asyncio.run(_identify(base, write, args.customers))
        # Warm up until a probe arrives: the dispatcher has picked the channel up.
        warm = set(range(1_000_000, 1_000_000 + 20))
        asyncio.run(_send_probes(base, write, min(warm), len(warm), 20, args.customers))
        if not warm <= _wait_for(receiver, warm, 30)["arrived"].keys():
            raise RuntimeError(f"{store}: the warm-up probes never arrived\n{base}")
        count = int(args.rate * args.seconds)
        sent, acks = asyncio.run(_send_probes(base, write, 0, count, args.rate, args.customers))
        stats = _wait_for(receiver, set(sent), 60)
    arrived = stats["arrived"]
    missing = [i for i in sent if i not in arrived]
    if missing:
        engine = create_engine(url)
        with engine.connect() as conn:
            statuses = dict(
                conn.exec_driver_sql("SELECT status, count(*) FROM outbox GROUP BY status").all()
            )
            errors = conn.exec_driver_sql(
                "SELECT last_error, count(*) FROM outbox WHERE last_error IS NOT NULL "
                "GROUP BY last_error ORDER BY 2 DESC LIMIT 3"
            ).all()
        engine.dispose()
        raise RuntimeError(
            f"{store}: {len(missing)} of {count} probes never arrived; outbox {statuses}, "
            f"errors {errors}"
        )
    latencies = [arrived[i] - sent[i] for i in sent]
    result = {
        "store": store,
        "events": count,
        "rate_per_s": args.rate,
        "track_p50_ms": round(statistics.median(acks) * 1000, 1),
        "track_p99_ms": round(_pct(acks, 0.99) * 1000, 1),
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "latency_p99_ms": round(_pct(latencies, 0.99) * 1000, 1),
        "latency_max_ms": round(max(latencies) * 1000, 1),
        "duplicates": stats["duplicates"],
    }
    result["ratio_p99"] = round(result["latency_p99_ms"] / max(result["track_p99_ms"], 0.1), 2)
    return result


# ------------------------------------------------------------------ (b) the workers


def _worker_process(url: str, batch: int, commands: Pipe) -> None:
    """A worker: the real ScenarioLoop (``run``) or the raw SQL loop (``raw``), on command."""
    from rapport.pipeline import Pipeline
    from rapport.worker import ScenarioLoop

    engine = create_engine(url)
    pipeline = Pipeline(engine)
    loop = ScenarioLoop(pipeline, batch=batch)
    raw = psycopg.connect(url.replace("+psycopg", ""))
    commands.send("ready")
    while True:
        command = commands.recv()
        if command == "stop":
            break
        started = time.time()
        cpu = time.process_time()
        done = 0
        if command == "run":
            while (n := loop.run_once()) > 0:
                done += n
        else:
            done = _raw_loop(raw, batch)
        commands.send(
            {
                "runs": done,
                "start": started,
                "end": time.time(),
                "cpu": time.process_time() - cpu,
            }
        )
    raw.close()
    engine.dispose()


RAW_CLAIM = (
    "UPDATE scenario_runs SET step = 'later', wake_at = now() + interval '1 day', "
    "updated_at = now() WHERE id IN (SELECT id FROM scenario_runs WHERE status = 'active' "
    "AND wake_at <= now() ORDER BY wake_at LIMIT %s FOR UPDATE SKIP LOCKED)"
)


def _raw_loop(conn: psycopg.Connection[Any], batch: int) -> int:
    done = 0
    while True:
        n = conn.execute(RAW_CLAIM, (batch,)).rowcount
        conn.commit()
        if n <= 0:
            return done
        done += n


class Workers:
    """Two worker processes (spawned: nothing inherited), kept for every round."""

    def __init__(self, url: str, count: int = 2) -> None:
        ctx = mp.get_context("spawn")
        self.pipes: list[Pipe] = []
        self.procs = []
        for _ in range(count):
            mine, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_process, args=(url, BATCH, child), daemon=True)
            proc.start()
            self.pipes.append(mine)
            self.procs.append(proc)
        for pipe in self.pipes:
            if not pipe.poll(120) or pipe.recv() != "ready":
                raise RuntimeError("a worker process did not start")

    def go(self, command: str, n: int) -> tuple[int, float, float]:
        """Send ``command`` to ``n`` workers at once; (runs done, seconds to the last, the
        workers' own CPU seconds)."""
        started = time.time()
        for pipe in self.pipes[:n]:
            pipe.send(command)
        answers = [pipe.recv() for pipe in self.pipes[:n]]
        return (
            sum(a["runs"] for a in answers),
            max(a["end"] for a in answers) - started,
            sum(a["cpu"] for a in answers),
        )

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send("stop")
        for proc in self.procs:
            proc.join(timeout=30)


# ------------------------------------------------------------------ (b) the store


def _admin(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url.replace("+psycopg", ""), autocommit=True)


def _prepare_throughput_store(url: str, customers: int) -> dict[str, int]:
    """Schema, the two scenarios and their template, and ``customers`` reachable customers
    (e-mail and consent) for the send runs."""
    now = datetime.now(UTC)
    engine = create_engine(url)
    upgrade(engine)
    with writing(engine) as conn:
        create_template(
            conn,
            name="hello",
            channel="email",
            kind="text",
            variants={
                "en": {
                    "subject": "{{ customer.first_name }}, something new for you",
                    "body": "Hello {{ customer.first_name }}, we have news.",
                }
            },
            now=now,
        )
        ids = {}
        for text in (WAIT_SCENARIO, SEND_SCENARIO):
            stored = create_scenario(conn, text, now)
            set_status(conn, stored.id, "active", now)
            ids[stored.name] = stored.id
    engine.dispose()
    with _admin(url) as conn:
        conn.execute(
            "INSERT INTO customers (created_at, updated_at, traits, first_name, email, "
            "events_count) SELECT now(), now(), '{}', 'Customer ' || g, "
            "'customer' || g || '@example.com', 0 FROM generate_series(1, %s) g",
            (customers,),
        )
        conn.execute(
            "INSERT INTO consents (customer_id, channel, status, source, updated_at) "
            "SELECT id, 'email', 'subscribed', 'bench', now() FROM customers"
        )
    return ids


def _load_runs(url: str, scenario_id: int, step: str, n: int) -> float:
    """``n`` runs due a minute ago at ``step``, one per customer id; seconds it took."""
    started = time.perf_counter()
    with _admin(url) as conn:
        conn.execute("TRUNCATE scenario_runs, scenario_step_log, outbox RESTART IDENTITY")
        conn.execute(
            "INSERT INTO scenario_runs (scenario_id, version, customer_id, entity_key, status, "
            "step, wake_at, context, started_at, updated_at) "
            "SELECT %s, 1, g, '', 'active', %s, now() - interval '1 minute', "
            """'{"trigger": {"name": "Bench Due", "properties": {}}}', now(), now() """
            "FROM generate_series(1, %s) g",
            (scenario_id, step, n),
        )
        conn.execute("VACUUM ANALYZE scenario_runs")
        conn.execute("VACUUM ANALYZE customers")
    return time.perf_counter() - started


def _check_done(url: str, n: int, send: bool) -> None:
    with _admin(url) as conn:
        due = conn.execute(
            "SELECT count(*) FROM scenario_runs WHERE status = 'active' AND wake_at <= now()"
        ).fetchone()
        moved = conn.execute(
            "SELECT count(*) FROM scenario_runs WHERE status = 'active' AND wake_at > now()"
        ).fetchone()
        queued = conn.execute("SELECT count(*) FROM outbox").fetchone()
    assert due is not None and moved is not None and queued is not None
    if due[0] or moved[0] != n or (send and queued[0] != n):
        raise RuntimeError(
            f"{n} runs: {due[0]} still due, {moved[0]} moved on, {queued[0]} outbox rows"
        )


def throughput_runs(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    ids = _prepare_throughput_store(url, args.send_runs)
    workers = Workers(url)
    results: list[dict[str, Any]] = []
    try:
        for step, scenario, n, reps in (
            ("wait", ids["due-waits"], args.runs, args.reps),
            ("send", ids["due-sends"], args.send_runs, args.send_reps),
        ):
            first = "nap" if step == "wait" else "hello"
            # Warm-up, not timed: connections, the scenario index, the first time-trigger
            # scan and the template caches of both workers.
            _load_runs(url, scenario, first, 2 * BATCH)
            workers.go("run", 2)
            for processes in (1, 2):
                rates: dict[str, list[float]] = {"rapport": [], "raw": []}
                cpu: list[float] = []
                for _ in range(reps):
                    for kind in ("raw", "rapport"):
                        load_s = _load_runs(url, scenario, first, n)
                        done, seconds, used = workers.go(
                            "run" if kind == "rapport" else "raw", processes
                        )
                        if done != n:
                            raise RuntimeError(f"{kind}: {done} of {n} runs advanced")
                        if kind == "rapport":
                            _check_done(url, n, step == "send")
                            cpu.append(used / n * 1e6)
                        rates[kind].append(n / seconds)
                        console.print(
                            f"  {step} × {n:,}, {processes} worker(s), {kind}: "
                            f"{n / seconds:,.0f} steps/s (loaded in {load_s:.1f} s)"
                        )
                rapport = statistics.median(rates["rapport"])
                raw = statistics.median(rates["raw"])
                results.append(
                    {
                        "step": step,
                        "runs": n,
                        "workers": processes,
                        "reps": reps,
                        "steps_per_s": round(rapport),
                        "raw_per_s": round(raw),
                        "ratio_to_raw": round(rapport / raw, 3),
                        "worker_cpu_us_per_step": round(statistics.median(cpu), 1),
                        "all_steps_per_s": [round(r) for r in rates["rapport"]],
                        "all_raw_per_s": [round(r) for r in rates["raw"]],
                    }
                )
    finally:
        workers.close()
    return results


# ------------------------------------------------------------------ main


def _with_postgres(prefix: str, run: Callable[[str], Any]) -> Any:
    url, drop = create_database(server_url(), prefix)
    try:
        return run(url)
    finally:
        drop()  # type: ignore[operator]


def report(latency: list[dict[str, Any]], throughput: list[dict[str, Any]]) -> None:
    if latency:
        table = Table(title="(a) /v1/track → message at the SMTP server (open loop)")
        for col in (
            "store",
            "events",
            "rate/s",
            "track p50 ms",
            "track p99 ms",
            "latency p50 ms",
            "latency p99 ms",
            "max ms",
            "p99 ÷ track p99",
            f"p99 ≤ {TARGET_P99_S:g} s",
        ):
            table.add_column(col, justify="right")
        for r in latency:
            ok = r["latency_p99_ms"] <= TARGET_P99_S * 1000
            table.add_row(
                r["store"],
                f"{r['events']:,}",
                f"{r['rate_per_s']:g}",
                f"{r['track_p50_ms']}",
                f"{r['track_p99_ms']}",
                f"{r['latency_p50_ms']}",
                f"{r['latency_p99_ms']}",
                f"{r['latency_max_ms']}",
                f"{r['ratio_p99']:.1f}",
                "[green]yes[/green]" if ok else "[red]no[/red]",
            )
        console.print(table)
    if throughput:
        table = Table(title="(b) due steps per second, PostgreSQL (median of the repetitions)")
        for col in (
            "due step",
            "runs",
            "worker processes",
            "Rapport steps/s",
            "raw claim+update/s",
            "ratio",
            "worker CPU µs/step",
            f"≥ {TARGET_STEPS_PER_S:,}/s",
        ):
            table.add_column(col, justify="right")
        for r in throughput:
            ok = r["steps_per_s"] >= TARGET_STEPS_PER_S
            table.add_row(
                r["step"],
                f"{r['runs']:,}",
                str(r["workers"]),
                f"{r['steps_per_s']:,}",
                f"{r['raw_per_s']:,}",
                f"{r['ratio_to_raw']:.2f}",
                f"{r['worker_cpu_us_per_step']:g}",
                ("[green]yes[/green]" if ok else "[red]no[/red]") if r["step"] == "wait" else "-",
            )
        console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small run, under a minute")
    parser.add_argument("--stores", default="sqlite,postgres", help="for the latency part")
    parser.add_argument("--parts", default="latency,throughput")
    parser.add_argument("--rate", type=float, default=200.0, help="trigger events per second")
    parser.add_argument("--seconds", type=float, help="seconds of trigger events per store")
    parser.add_argument("--runs", type=int, help="due wait steps (default 1,000,000)")
    parser.add_argument("--send-runs", type=int, help="due send steps (default 50,000)")
    parser.add_argument("--reps", type=int, help="repetitions of each wait-step figure")
    parser.add_argument("--send-reps", type=int, default=1, help="… of each send-step figure")
    args = parser.parse_args()
    args.seconds = args.seconds or (6.0 if args.quick else 30.0)
    args.runs = args.runs or (20_000 if args.quick else 1_000_000)
    args.send_runs = args.send_runs or (3_000 if args.quick else 50_000)
    args.reps = args.reps or (3 if args.quick else 1)
    args.customers = 500
    parts = args.parts.split(",")

    if _two_cores():
        os.sched_setaffinity(0, {1})  # the load generator; the server is pinned to core 0
    latency: list[dict[str, Any]] = []
    throughput: list[dict[str, Any]] = []
    if "latency" in parts:
        tmp = tempfile.mkdtemp(prefix="rapport-bench-")
        try:
            for store in args.stores.split(","):
                console.print(
                    f"[bold]{store}[/bold]: {args.rate:g} trigger events/s for "
                    f"{args.seconds:g} s, a send at once"
                )
                if store == "sqlite":
                    latency.append(latency_run(store, f"sqlite:///{tmp}/scenarios.db", args))
                else:
                    latency.append(
                        _with_postgres(
                            "rapport_bench_scenarios", lambda u: latency_run("postgres", u, args)
                        )
                    )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if "throughput" in parts:
        if _two_cores():
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        console.print(
            f"[bold]postgres[/bold]: {args.runs:,} due waits, {args.send_runs:,} due sends; "
            "1 and 2 worker processes"
        )
        throughput = _with_postgres("rapport_bench_scenarios", lambda u: throughput_runs(u, args))
    report(latency, throughput)
    out = ROOT / "bench" / "results" / "scenarios.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        orjson.dumps(
            {
                "quick": args.quick,
                "latency": latency,
                "throughput": throughput,
                "at": datetime.now(UTC).isoformat(),
            },
            option=orjson.OPT_INDENT_2,
        ).decode()
    )
    console.print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
