"""Interleaved A/B of ingest with the 20 segments active against none, in one process.

``bench/segments.py`` part (b) gives one slowdown figure per store; on a shared 2-core
machine a single figure moves by several points from run to run. This harness runs the
same pipeline on one store in rounds, alternating the variants within each round (their
order rotates from round to round), so drift and neighbours' load hit every variant alike,
and reports medians over rounds:

* ``none``: the pipeline with a segment index that never loads (a store with no segments);
* ``segments``: the 20 segments of ``bench/segment_cases.py``, this tree's code;
* ``baseline`` (with ``--baseline REV``): the same 20 segments evaluated by the segments
  package as it was at git revision ``REV`` (read with ``git show`` into a private
  package, so both code paths run in the same process on the same store).

For each variant and round: events/s (wall clock) and CPU µs per event: this process's CPU
(``time.process_time``) plus, on PostgreSQL, the CPU of the server backends serving this
process (``/proc/<pid>/stat`` of each connection's backend; the server runs on this
machine). The slowdown of a variant is ``1 - rate / rate(none)`` within the round, then
the median over rounds.

    python bench/segments_ab.py --customers 20000 --rounds 8 --batches 10
    python bench/segments_ab.py --baseline HEAD --stores postgres
    python bench/segments_ab.py --profile pyinstrument.txt --stores sqlite

With ``--baseline``, the real-time step alone is then replayed: what each "segments"
batch handed to ``refresh`` is handed again to both code paths in turn, on the same store
state, rolled back after each pass (nothing moves then: the cost of choosing, loading and
evaluating, without the writes); CPU ms per batch, medians over rounds.

``--profile FILE`` runs the "segments" variant alone under pyinstrument after the rounds
and writes its text report (one file per store: FILE with the store name before the
suffix).
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import rapport.pipeline as pipeline_module  # noqa: E402
from bench.cpu import cpu_seconds  # noqa: E402
from bench.segment_fixture import now_hour  # noqa: E402
from bench.segments import define_segments, load, stores  # noqa: E402
from bench.workload import Workload  # noqa: E402
from rapport.clock import SimulatedClock  # noqa: E402
from rapport.ingest.messages import parse_batch  # noqa: E402
from rapport.pipeline import Pipeline  # noqa: E402
from rapport.segments.membership import SegmentIndex, refresh  # noqa: E402
from rapport.store.engine import create_engine  # noqa: E402

console = Console(width=max(120, Console().width))
BATCH = 100


# ------------------------------------------------------------------------------ variants


def baseline_package(rev: str, tmp: str) -> ModuleType:
    """The segments package at ``rev``, importable as ``_baseline_segments``: its files
    from ``git show`` with ``rapport.segments`` renamed inside them."""
    files = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", rev, "src/rapport/segments"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    root = Path(tmp) / "baseline" / "_baseline_segments"
    for name in files:
        if not name.endswith(".py"):
            continue
        text = subprocess.run(
            ["git", "show", f"{rev}:{name}"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout
        out = root / Path(name).relative_to("src/rapport/segments")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text.replace("rapport.segments", "_baseline_segments"))
    sys.path.insert(0, str(root.parent))
    return importlib.import_module("_baseline_segments.membership")


class Variant:
    """A pipeline plus the ``refresh`` the pipeline module must call while it runs."""

    def __init__(self, name: str, pipeline: Pipeline, refresh_fn: Callable[..., Any]) -> None:
        self.name = name
        self.pipeline = pipeline
        self.refresh = refresh_fn

    def ingest(self, batches: list[list[Any]]) -> None:
        pipeline_module.refresh = self.refresh  # type: ignore[attr-defined]
        for batch in batches:
            self.pipeline.ingest(batch)


# ------------------------------------------------------------------------------ CPU


class ServerCpu:
    """CPU seconds of the PostgreSQL backends that serve an engine's connections."""

    def __init__(self, engine: sa.Engine) -> None:
        self.pids: set[int] = set()
        if engine.dialect.name != "postgresql":
            return

        @sa.event.listens_for(engine, "connect")
        def _connected(dbapi_conn: Any, _record: Any) -> None:
            self.pids.add(int(dbapi_conn.info.backend_pid))

    def seconds(self) -> float:
        return cpu_seconds(sorted(self.pids))  # a closed connection's CPU is lost


# ------------------------------------------------------------------------------ the run


def run_store(
    url: str,
    now: datetime,
    customers: int,
    rounds: int,
    batches: int,
    baseline: ModuleType | None,
    profile: Path | None,
) -> dict[str, Any]:
    engine = create_engine(url)
    server = ServerCpu(engine)
    workload = Workload(visitors=customers, seed=11)
    workload.t = now - timedelta(hours=4)  # 50 ms a message: stays before "now"

    def parsed(k: int) -> list[list[Any]]:
        return [
            parse_batch(
                workload.batch(BATCH), received_at=now, phone_region="RU", max_message_bytes=32768
            )
            for _ in range(k)
        ]

    plain = Pipeline(engine, SimulatedClock(now))
    plain.segment_index = SegmentIndex(ttl=math.inf)
    variants = [Variant("none", plain, refresh)]
    variants[0].ingest(parsed(5))  # warm-up: connections, caches, the product catalogue
    segment_ids = define_segments(engine, now)
    captured: list[dict[int, Any]] = []

    def capturing(conn: sa.Connection, index: Any, touched: dict[int, Any], at: datetime) -> Any:
        if len(touched) > 1:  # a batch's, not the moves' own loyalty re-check
            captured.append(touched)
        return refresh(conn, index, touched, at)

    variants.append(Variant("segments", Pipeline(engine, SimulatedClock(now)), capturing))
    if baseline is not None:
        old = Pipeline(engine, SimulatedClock(now))
        old.segment_index = baseline.SegmentIndex()
        variants.append(Variant("baseline", old, baseline.refresh))
    for v in variants[1:]:
        v.ingest(parsed(2))

    samples: dict[str, list[dict[str, float]]] = {v.name: [] for v in variants}
    for r in range(rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for v in order:
            work = parsed(batches)
            cpu0, server0, wall0 = time.process_time(), server.seconds(), time.perf_counter()
            v.ingest(work)
            wall = time.perf_counter() - wall0
            cpu = time.process_time() - cpu0
            server_cpu = server.seconds() - server0
            n = BATCH * len(work)
            samples[v.name].append(
                {
                    "events_per_s": n / wall,
                    "cpu_us": cpu / n * 1e6,
                    "server_cpu_us": server_cpu / n * 1e6,
                }
            )
        console.print(
            f"  round {r + 1}/{rounds}: "
            + ", ".join(f"{k} {s[-1]['events_per_s']:,.0f} ev/s" for k, s in samples.items())
        )
    with engine.connect() as conn:
        moves = conn.exec_driver_sql(
            "SELECT count(*) FROM events WHERE name IN ('Segment Entered', 'Segment Exited')"
        ).scalar_one()
    replayed = None
    if baseline is not None:
        replayed = replay(engine, server, now, captured, baseline, rounds)
    profiled = None
    if profile is not None:
        profiled = run_profile(variants[1], parsed(batches), profile)
    engine.dispose()
    return {
        "replay": replayed,
        "segments": len(segment_ids),
        "rounds": rounds,
        "events_per_round": BATCH * batches,
        "membership_events": int(moves),
        "variants": summarize(samples),
        "profile": profiled,
    }


def replay(
    engine: sa.Engine,
    server: ServerCpu,
    now: datetime,
    captured: list[dict[int, Any]],
    baseline: ModuleType,
    rounds: int,
) -> dict[str, Any]:
    """The real-time step alone, this tree's against the baseline's, on the same inputs.

    What the "segments" rounds handed to ``refresh`` (what each batch touched, for whom) is
    handed again to each code path in turn, in a transaction rolled back after each pass.
    Membership is already current then, so nothing moves: this is the cost of choosing
    the segments, loading the snapshots and evaluating them, without the writes.
    """
    paths: list[tuple[str, Callable[..., Any], Any]] = [
        ("segments", refresh, SegmentIndex()),
        ("baseline", baseline.refresh, baseline.SegmentIndex()),
    ]
    out: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _, _ in paths}
    for r in range(rounds):
        for name, fn, index in paths if r % 2 == 0 else paths[::-1]:
            with engine.connect() as conn:
                index.current(conn)
                cpu0, server0 = time.process_time(), server.seconds()
                wall0 = time.perf_counter()
                for touched in captured:
                    fn(conn, index, touched, now)
                wall = time.perf_counter() - wall0
                cpu, server_cpu = time.process_time() - cpu0, server.seconds() - server0
                conn.rollback()
            k = len(captured) or 1
            out[name].append((wall / k * 1e3, cpu / k * 1e3, server_cpu / k * 1e3))
    return {
        "batches": len(captured),
        **{
            name: {
                "wall_ms_per_batch": round(statistics.median(x[0] for x in rows), 2),
                "cpu_ms_per_batch": round(statistics.median(x[1] for x in rows), 2),
                "server_cpu_ms_per_batch": round(statistics.median(x[2] for x in rows), 2),
            }
            for name, rows in out.items()
        },
    }


def summarize(samples: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    none = samples["none"]
    for name, rows in samples.items():
        slow = [1 - s["events_per_s"] / b["events_per_s"] for s, b in zip(rows, none, strict=True)]
        cpu_ratio = [
            (s["cpu_us"] + s["server_cpu_us"]) / (b["cpu_us"] + b["server_cpu_us"]) - 1
            for s, b in zip(rows, none, strict=True)
        ]
        out[name] = {
            "events_per_s": round(statistics.median(r["events_per_s"] for r in rows)),
            "cpu_us": round(statistics.median(r["cpu_us"] for r in rows), 1),
            "server_cpu_us": round(statistics.median(r["server_cpu_us"] for r in rows), 1),
            "slowdown": round(statistics.median(slow), 3),
            "cpu_increase": round(statistics.median(cpu_ratio), 3),
            "slowdown_rounds": [round(x, 3) for x in slow],
        }
    return out


def run_profile(variant: Variant, work: list[list[Any]], out: Path) -> str:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    variant.ingest(work)
    profiler.stop()
    out.write_text(profiler.output_text(unicode=True, color=False, show_all=False))
    return str(out)


def report(results: dict[str, dict[str, Any]], customers: int, load_avg: str) -> None:
    table = Table(
        title=f"Ingest with 20 segments vs none, interleaved rounds — {customers:,} customers, "
        f"medians over rounds; load {load_avg}"
    )
    for col in (
        "store",
        "variant",
        "events/s",
        "CPU µs/ev (client)",
        "CPU µs/ev (server)",
        "slowdown",
        "CPU +",
    ):
        table.add_column(col, justify="right")
    for store, r in results.items():
        for name, v in r["variants"].items():
            table.add_row(
                store,
                name,
                f"{v['events_per_s']:,}",
                f"{v['cpu_us']:,.0f}",
                f"{v['server_cpu_us']:,.0f}" if store == "postgres" else "—",
                "" if name == "none" else f"{v['slowdown'] * 100:.1f} %",
                "" if name == "none" else f"{v['cpu_increase'] * 100:.1f} %",
            )
    console.print(table)
    for store, r in results.items():
        console.print(
            f"{store}: {r['rounds']} rounds × {r['events_per_round']:,} events per variant; "
            f"{r['membership_events']:,} Segment Entered/Exited events written in all"
        )
        for name, v in r["variants"].items():
            if name != "none":
                console.print(f"  {name} slowdown by round: {v['slowdown_rounds']}")
        if r.get("replay"):
            rp = r["replay"]
            console.print(
                f"  the real-time step alone, replayed ({rp['batches']} batches, medians "
                "over rounds, per batch): "
                + "; ".join(
                    f"{name} {rp[name]['wall_ms_per_batch']} ms wall, "
                    f"{rp[name]['cpu_ms_per_batch']} ms CPU"
                    + (
                        f" + {rp[name]['server_cpu_ms_per_batch']} ms server CPU"
                        if store == "postgres"
                        else ""
                    )
                    for name in ("segments", "baseline")
                )
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--batches", type=int, default=10, help="batches of 100 per round")
    parser.add_argument("--baseline", help="git revision whose segments package to compare")
    parser.add_argument("--profile", type=Path, help="pyinstrument text report of 'segments'")
    args = parser.parse_args()
    names = [s for s in ("sqlite", "postgres") if s in args.stores.split(",")]
    now = now_hour()
    tmp = tempfile.mkdtemp(prefix="rapport-bench-ab-")
    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    try:
        baseline = baseline_package(args.baseline, tmp) if args.baseline else None
        with stores(names, "segments_ab", tmp) as urls:
            load(urls, args.customers, now, "store")
            for s in names:
                console.print(f"[bold]{s}[/bold]: {args.rounds} interleaved rounds")
                profile = None
                if args.profile is not None:
                    profile = args.profile.with_name(
                        f"{args.profile.stem}-{s}{args.profile.suffix}"
                    )
                results[s] = run_store(
                    urls[s], now, args.customers, args.rounds, args.batches, baseline, profile
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_avg = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    report(results, args.customers, load_avg)
    out = ROOT / "bench" / "results" / "segments-ab.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "at": now.isoformat(),
        "customers": args.customers,
        "baseline": args.baseline,
        "load_average": load_avg,
        "total_s": round(time.perf_counter() - started, 1),
        "stores": results,
    }
    out.write_text(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
    console.print(f"written {out.relative_to(ROOT)} in {payload['total_s']:.0f} s")


if __name__ == "__main__":
    main()
