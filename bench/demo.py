"""The demo's phases timed: history, simulated days (and their parts), refresh, report.

Runs what ``rapport demo run --no-serve`` runs (a fresh SQLite store, the history, the
default strategy's simulated days with real SMTP into the mail catcher, the refresh, the
report) and prints, per phase, the wall-clock time and the CPU time of this process
(every thread: the mail catcher and the dispatcher's database thread run in it), then the
simulation's own split of its wall-clock time. ``--json`` writes the figures to a file,
so runs can be kept and compared.

``--against DIR`` measures a baseline in the same run: the same demo from another
checkout (``DIR/src`` first on the path), alternately with this one, ``--rounds`` times,
each in a fresh process; it prints the medians of both and their ratio, with the load
average before each run (the machine is shared, so the runs are interleaved). The CPU
time there is the whole process tree's (the mail catcher included).

    python bench/demo.py                                   # the CLI's defaults
    python bench/demo.py --customers 500 --days 20 --json out.json
    python bench/demo.py --against ../old-checkout --rounds 3
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rapport.cli.demo import CUSTOMERS, DAYS, MONTHS  # noqa: E402
from rapport.demo.generator import DemoConfig, generate  # noqa: E402
from rapport.demo.runner import fresh_sqlite_url, prepare, simulate_and_report  # noqa: E402
from rapport.demo.verticals import default_strategy, make_history  # noqa: E402


class Phases:
    """Wall and process CPU seconds of each named phase."""

    def __init__(self) -> None:
        self.figures: dict[str, dict[str, float]] = {}
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def mark(self, name: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.figures[name] = {"wall": wall - self._wall, "cpu": cpu - self._cpu}
        self._wall, self._cpu = wall, cpu


DAYS_PHASE = "simulate + refresh + report"


def run(customers: int, months: int, days: int, seed: int, workdir: Path) -> dict[str, Any]:
    phases = Phases()
    engine = prepare(fresh_sqlite_url(workdir / "demo.db"))
    config = DemoConfig(customers=customers, months=months, days=days, seed=seed)
    history = make_history(config)
    phases.mark("plan")
    generation = generate(engine, config, history=history)
    phases.mark("history")
    quiet = Console(file=io.StringIO())
    began = time.process_time()
    outcome = simulate_and_report(
        engine,
        config,
        history,
        default_strategy("shop"),
        workdir / "mail",
        workdir / "report.html",
        quiet,
        generation=generation,
    )
    total_cpu = time.process_time() - began
    phases.mark(DAYS_PHASE)
    sim = outcome.simulation
    return {
        "config": {"customers": customers, "months": months, "days": days, "seed": seed},
        "phases": phases.figures,
        "simulation_wall": sim.seconds,
        "refresh_wall": sim.refresh_seconds,
        "simulation_cpu_with_refresh_and_report": total_cpu,
        "parts": sim.timings,
        # CPU seconds per part, where the simulation measures them (not in older trees).
        "parts_cpu": getattr(sim, "cpu_timings", {}),
        "history_events": generation.stored,
        "shop_events": sim.shop_events,
        "emails": sim.counts["emails caught"],
        "counts": dict(sim.counts),
        "load": os.getloadavg(),
    }


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def interleaved(args: argparse.Namespace) -> None:
    """This tree against ``args.against``, alternately, each run in a fresh process."""
    trees = {"baseline": args.against.resolve(), "this tree": ROOT}
    size = ["--customers", str(args.customers), "--months", str(args.months)]
    size += ["--days", str(args.days), "--seed", str(args.seed)]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="rapport-demo-ab-") as temp:
        for round_ in range(args.rounds):
            for name, tree in trees.items():
                out = Path(temp) / f"{name}-{round_}.json"
                env = dict(os.environ, PYTHONPATH=f"{tree / 'src'}{os.pathsep}{tree}")
                load = os.getloadavg()[0]
                began, cpu = time.perf_counter(), _child_cpu()
                subprocess.run(
                    [sys.executable, __file__, *size, "--json", str(out)],
                    env=env,
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
                figures = json.loads(out.read_text(encoding="utf-8"))
                phases = figures["phases"]
                run = {
                    "wall": time.perf_counter() - began,
                    "cpu": _child_cpu() - cpu,
                    "simulation": figures["simulation_wall"],
                    "history": phases["history"]["wall"],
                    "history cpu": phases["history"]["cpu"],
                    "days + report": phases[DAYS_PHASE]["wall"],
                    "days + report cpu": phases[DAYS_PHASE]["cpu"],
                    "load": load,
                    **{f"  {part}": seconds for part, seconds in figures["parts"].items()},
                    **{f"  {part} cpu": s for part, s in figures.get("parts_cpu", {}).items()},
                }
                runs[name].append(run)
                print(
                    f"round {round_ + 1} {name:<10} wall {run['wall']:6.1f} s  "
                    f"cpu {run['cpu']:6.1f} s  history {run['history']:5.1f} s  "
                    f"simulation {run['simulation']:6.1f} s  (load {load:.1f})",
                    flush=True,
                )
    print(f"medians of {args.rounds} rounds, {' '.join(size)} (parts: wall clock):")
    shared = [k for k in runs["this tree"][0] if k != "load" and k in runs["baseline"][0]]
    for what in shared:
        base = statistics.median(r[what] for r in runs["baseline"])
        this = statistics.median(r[what] for r in runs["this tree"])
        ratio = f"{this / base:.2f}" if base else "-"
        print(f"  {what:<18} baseline {base:6.1f} s  this tree {this:6.1f} s  ratio {ratio}")
    only = [k for k in runs["this tree"][0] if k not in shared and k != "load"]
    for what in only:  # measured by this tree's simulation alone
        this = statistics.median(r[what] for r in runs["this tree"])
        print(f"  {what:<18} this tree {this:6.1f} s")
    for name, measured in runs.items():
        loads = [r["load"] for r in measured]
        print(f"  load before the {name} runs: {min(loads):.1f}-{max(loads):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=CUSTOMERS)
    parser.add_argument("--months", type=int, default=MONTHS)
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of --against")
    args = parser.parse_args()
    if args.against is not None:
        interleaved(args)
        return
    with tempfile.TemporaryDirectory(prefix="rapport-demo-bench-") as temp:
        figures = run(args.customers, args.months, args.days, args.seed, Path(temp))
    print(f"load before/after: {figures['load']}")
    for name, f in figures["phases"].items():
        print(f"{name:<30} wall {f['wall']:7.1f} s   cpu {f['cpu']:7.1f} s")
    print(f"{'  simulation alone':<30} wall {figures['simulation_wall']:7.1f} s")
    cpu = figures["parts_cpu"]
    for name, seconds in sorted(figures["parts"].items(), key=lambda kv: -kv[1]):
        print(f"    {name:<26} wall {seconds:7.1f} s   cpu {cpu.get(name, 0.0):7.1f} s")
    print(
        f"history events {figures['history_events']:,}, shop events {figures['shop_events']:,}, "
        f"e-mails {figures['emails']:,}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
