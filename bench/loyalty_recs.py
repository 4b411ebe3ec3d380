"""Loyalty and recommendations benchmark: the model build, the recommendation API, and
redemptions under concurrency.

(a) **Model build.** A shop of P products in categories (some declaring compatible
categories), C customers, ~L order lines and product views (``bench/loyalty_recs_data.py``;
full size 100,000 / 1,000,000 / 10,000,000), made set-based in the database. Then
``rapport.recommend.build.build`` — every list: popular, new arrivals, bought together,
compatible, personal — with the item-kNN personal model and, when ``implicit`` is
installed, with ALS (the default model then). Baseline, same run: the bought-together
lists computed by the database itself (the order lines self-joined per order, pairs
counted, the same shrunk cosine, the same top 30 of the available neighbours, window
functions), which must equal the build's lists row for row or the run fails.

(b) **Recommendation API.** ``GET /api/recommendations`` over real HTTP (uvicorn in a
process forked from this one, on loopback; one keep-alive httpx client, requests one
after another) for a mix of strategies — ``personal`` by customer, ``bought_together`` by
product, ``popular`` in a category, ``viewed_not_bought`` by customer — with random
existing customers, products and categories; p50/p95/p99 per strategy and overall, and per
request the SQL statements, the server process's CPU and its PostgreSQL processes' CPU
(load-independent costs, where latencies on a shared machine are not). Baselines in the
same server: ``/health`` (one ``SELECT 1`` through the pool) and one indexed ``SELECT`` of
a stored list (``/bench/list``, a route only this server has). Target: p99 ≤ 20 ms.

(c) **Redemptions** on PostgreSQL (``bench/loyalty_recs_data.build_loyalty``: customers
with balances credited through the ledger): 20 threads, each on its own connection,
redeem through ``rapport.loyalty.checkout.redeem`` as ``POST /api/loyalty/redeem`` calls it
(customer resolved, redeem, its events recorded through the pipeline, one transaction),
(1) each against its own customers, (2) all against one shared balance; redemptions/s,
median of the runs. Then a drain: 20 threads ask for twice what one balance holds —
exactly the balance must be spent. A smaller sample goes through HTTP. Baseline: the same
threads running the minimal safe SQL (``UPDATE … SET balance = balance - x WHERE id = …
AND balance >= x``) on a scratch table. At the end every account is checked against its
ledger and its lots: "overdrawn balances" is counted, not assumed.

Prints tables and writes bench/results/loyalty_recs.json.

    python bench/loyalty_recs.py --quick          # 5,000 products, 10,000 customers, 100,000
                                                  # lines, 200 members: under a minute
    python bench/loyalty_recs.py                  # full size, PostgreSQL
    python bench/loyalty_recs.py --customers 200000 --lines 2000000 --part recs --keep
    python bench/loyalty_recs.py --part recs --reuse postgres=postgresql://…
    python bench/loyalty_recs.py --part recs --api-only --reuse postgres=postgresql://…
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.postgres_server import create_database, server_url  # noqa: E402

from bench import loyalty_redeem  # noqa: E402
from bench.loyalty_recs_data import Shape, build, existing  # noqa: E402
from rapport.access.keys import create_key  # noqa: E402
from rapport.api.app import create_app  # noqa: E402  (once here: servers are forked)
from rapport.recommend.build import build as build_lists  # noqa: E402
from rapport.recommend.personal import choose_model  # noqa: E402
from rapport.recommend.strategies import BuildOptions  # noqa: E402
from rapport.store.engine import create_engine  # noqa: E402
from rapport.store.migrate import upgrade  # noqa: E402

console = Console(width=max(120, Console().width))

TARGET_P99_MS = 20.0
COSTS = ("statements", "cpu_s", "db_cpu_s")  # counters the benchmark's server keeps
STORE_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
MIX = ("personal", "bought_together", "popular", "viewed_not_bought")
LIMIT = 10


def load() -> dict[str, float]:
    one, five, _ = os.getloadavg()
    return {"load1": round(one, 2), "load5": round(five, 2)}


def pad(n: int) -> str:
    return f"{n:010d}"


# ------------------------------------------------------------------ (a) the model build


def bought_together_sql(dialect: str, neighbours: int, shrink: float) -> str:
    """The build's bought-together lists, computed by the database: distinct (order,
    product) of completed orders, pairs per order counted, shrunk cosine, the best
    ``2 × neighbours``, then the best ``neighbours`` of the available ones (ties: the
    lower product id, as the build breaks them)."""
    pg = dialect == "postgresql"
    real = "DOUBLE PRECISION" if pg else "REAL"
    unavailable = (
        "(p.attributes ->> 'available') = 'false'"
        if pg
        else "json_extract(p.attributes, '$.available') = 0"
    )
    return (
        "WITH l AS (SELECT DISTINCT ol.order_pk, ol.product_id FROM order_lines ol "
        "JOIN orders o ON o.id = ol.order_pk JOIN products p ON p.id = ol.product_id "
        "WHERE o.status = 'completed'), "
        "n AS (SELECT product_id, count(*) AS n FROM l GROUP BY product_id), "
        "pairs AS (SELECT a.product_id AS i, b.product_id AS j, count(*) AS c FROM l a "
        "JOIN l b ON b.order_pk = a.order_pk AND b.product_id <> a.product_id "
        "GROUP BY a.product_id, b.product_id), "
        f"scored AS (SELECT i, j, CAST(c AS {real}) / sqrt(CAST(ni.n AS {real}) * nj.n) "
        f"* (CAST(c AS {real}) / (c + {shrink!r})) AS score FROM pairs "
        "JOIN n ni ON ni.product_id = i JOIN n nj ON nj.product_id = j), "
        "ranked AS (SELECT i, j, score, row_number() OVER (PARTITION BY i ORDER BY score DESC, "
        "j) AS r FROM scored), "
        "kept AS (SELECT i, j, score, row_number() OVER (PARTITION BY i ORDER BY score DESC, "
        f"j) AS r FROM ranked JOIN products p ON p.id = j WHERE r <= {2 * neighbours} "
        f"AND NOT coalesce({unavailable}, FALSE)) "
        f"SELECT i, r - 1, j, score FROM kept WHERE r <= {neighbours} ORDER BY i, r"
    )


def database_lists(
    engine: sa.Engine, options: BuildOptions
) -> tuple[float, list[tuple[str, int, str, float]]]:
    sql = bought_together_sql(engine.dialect.name, options.neighbours, options.shrink)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL work_mem = '256MB'")
            conn.exec_driver_sql("SET LOCAL jit = off")
        started = time.perf_counter()
        rows = [(str(r[0]), int(r[1]), str(r[2]), float(r[3])) for r in conn.exec_driver_sql(sql)]
        seconds = time.perf_counter() - started
        conn.rollback()
    return seconds, rows


def stored_lists(engine: sa.Engine) -> list[tuple[str, int, str, float]]:
    with engine.connect() as conn:
        return [
            (str(r[0]), int(r[1]), str(r[2]), float(r[3]))
            for r in conn.exec_driver_sql(
                "SELECT list_key, position, product_id, score FROM rec_lists "
                "WHERE kind = 'bought_together' ORDER BY list_key, position"
            )
        ]


def list_differences(
    built: list[tuple[str, int, str, float]], database: list[tuple[str, int, str, float]]
) -> list[str]:
    """Where the build's bought-together rows and the database's differ (scores to 1e-9)."""
    if len(built) != len(database):
        return [f"{len(built):,} rows built, {len(database):,} from the database"]
    out = []
    for a, b in zip(built, database, strict=True):
        same = a[:3] == b[:3] and abs(a[3] - b[3]) <= 1e-9 * max(1.0, abs(a[3]))
        if not same:
            out.append(f"{a} vs {b}")
    return out


def time_build(engine: sa.Engine, now: datetime, args: argparse.Namespace) -> dict[str, Any]:
    """Each personal model's build (median of the runs), then the database baseline."""
    models = ["knn"] + (["als"] if choose_model("auto") == "als" else [])
    out: dict[str, Any] = {"models": {}}
    for model in models:  # the last one built is what the API serves: the default model
        runs = []
        for rep in range(args.build_reps):
            console.print(f"  build with {model} ({rep + 1}/{args.build_reps})")
            result = build_lists(engine, now, BuildOptions(personal_model=model))
            runs.append(result)
        totals = [r.seconds["total"] for r in runs]
        middle = runs[totals.index(statistics.median_low(totals))]
        out["models"][model] = {
            "median_s": round(statistics.median(totals), 2),
            "all_s": totals,
            "stages_s": middle.seconds,
            "rows": middle.rows,
        }
        out["inputs"] = middle.inputs
    out["served_model"] = models[-1]
    options = BuildOptions()
    console.print("  baseline: the bought-together lists computed by the database")
    seconds, rows = database_lists(engine, options)
    wrong = list_differences(stored_lists(engine), rows)
    if wrong:
        for line in wrong[:10]:
            console.print(f"[red]  {line}[/red]")
        raise SystemExit(
            f"the database's bought-together lists differ from the build's in {len(wrong)} rows"
        )
    stages = out["models"][models[-1]]["stages_s"]
    ours = stages["read"] + stages["bought_together"]
    out["baseline"] = {
        "database_bought_together_s": round(seconds, 2),
        "rows": len(rows),
        "lists_equal": True,
        "build_read_plus_bought_together_s": round(ours, 2),
        "ratio": round(seconds / ours, 1) if ours else None,
    }
    return out


# ------------------------------------------------------------------ (b) the API


def serve(url: str, port: int) -> None:
    """The API as ``rapport serve`` runs it, minus the background loops, plus one route
    that is the raw limit: one indexed SELECT of a stored list through the same pool."""
    import uvicorn
    from fastapi.responses import Response

    from rapport.settings import Settings
    from rapport.store.tables import rec_lists

    settings = Settings(database_url=url, sweep_seconds=0, dispatch=False, scenario_seconds=0)
    engine = create_engine(url)
    app = create_app(settings, engine=engine)
    r = rec_lists.c
    statements = [0]
    backends: dict[int, float] = {}  # PostgreSQL server processes of this pool: CPU seen

    @sa.event.listens_for(engine, "before_cursor_execute")
    def count(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        if sql.strip().upper() not in ("BEGIN", "COMMIT", "ROLLBACK"):
            statements[0] += 1

    @sa.event.listens_for(engine, "connect")
    def backend(dbapi_conn: Any, _record: Any) -> None:
        pid = getattr(getattr(dbapi_conn, "info", None), "backend_pid", None)
        if pid is not None:
            backends[int(pid)] = 0.0

    @app.get("/bench/statements")
    def statements_so_far() -> Response:
        """SQL statements this server ran (transaction control and the pool's liveness
        check aside), and the CPU seconds this process and its database server
        processes (PostgreSQL on this machine) used so far, for costs per request."""
        for pid in backends:
            backends[pid] = max(backends[pid], process_cpu(pid))
        found = {
            "statements": statements[0],
            "cpu_s": time.process_time(),
            "db_cpu_s": sum(backends.values()) if backends else None,
        }
        return Response(orjson.dumps(found), media_type="application/json")

    @app.get("/bench/list")
    def one_list(kind: str, key: str = "", limit: int = LIMIT) -> Response:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(r.product_id, r.score)
                .where(r.kind == kind, r.list_key == key)
                .order_by(r.position)
                .limit(limit)
            ).all()
        return Response(orjson.dumps([[p, s] for p, s in rows]), media_type="application/json")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def process_cpu(pid: int) -> float:
    """CPU seconds (user and system) another process of this machine used so far; 0 when
    it cannot be read (not Linux, gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server(url: str) -> Iterator[str]:
    """The benchmark's API server, in a process forked from this one: the app's modules
    were imported here once, so each server is up in a moment instead of after seconds of
    imports (three servers in a ``--quick`` run)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    process = multiprocessing.get_context("fork").Process(
        target=serve, args=(url, port), daemon=True
    )
    process.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if not process.is_alive() or time.monotonic() > deadline:
                raise SystemExit("the benchmark's API server did not start")
            time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.join(20)
        if process.is_alive():
            process.kill()
            process.join()


def percentiles(seconds: list[float]) -> dict[str, Any]:
    ms = np.array(seconds) * 1000
    return {
        "n": len(seconds),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def requests_mix(
    rng: random.Random, shape: dict[str, int], per_strategy: int
) -> list[tuple[str, dict[str, Any]]]:
    """(strategy, query) in random order: random existing customers, products, leaves."""
    asks: list[tuple[str, dict[str, Any]]] = []
    for strategy in MIX:
        for _ in range(per_strategy):
            query: dict[str, Any] = {"strategy": strategy, "limit": LIMIT}
            if strategy in ("personal", "viewed_not_bought"):
                query["customer"] = rng.randint(1, shape["customers"])
            elif strategy == "bought_together":
                query["product"] = "p" + pad(rng.randint(1, shape["products"]))
            else:
                query["category"] = "c" + pad(rng.randrange(shape["leaves"]))
            asks.append((strategy, query))
    rng.shuffle(asks)
    return asks


def time_api(url: str, shape: dict[str, int], args: argparse.Namespace) -> dict[str, Any]:
    engine = create_engine(url)
    key = create_key(engine, "secret", "bench", datetime.now(UTC)).key
    engine.dispose()
    rng = random.Random(args.seed)
    asks = requests_mix(rng, shape, args.requests)
    warm = requests_mix(rng, shape, max(10, args.requests // 10))
    leaves = [("popular", "c" + pad(rng.randrange(shape["leaves"]))) for _ in range(len(asks) // 4)]
    with (
        server(url) as base,
        httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as client,
    ):

        def get(path: str, params: dict[str, Any]) -> tuple[float, httpx.Response]:
            started = time.perf_counter()
            answer = client.get(path, params=params)
            return time.perf_counter() - started, answer

        for _, query in warm:
            get("/api/recommendations", query)
        times: dict[str, list[float]] = {s: [] for s in MIX}
        costs = {s: dict.fromkeys(COSTS, 0.0) for s in [*MIX, "probe"]}
        short = 0
        ran = client.get("/bench/statements").json()
        for strategy, query in asks:
            seconds, answer = get("/api/recommendations", query)
            if answer.status_code != 200:
                raise SystemExit(f"{query}: {answer.status_code} {answer.text[:300]}")
            short += len(answer.json()["items"]) < LIMIT
            times[strategy].append(seconds)
            ran, before = client.get("/bench/statements").json(), ran
            for cost in COSTS:
                costs[strategy][cost] += (ran[cost] or 0) - (before[cost] or 0)
        # What reading the counters costs the server by itself, taken off each request.
        probes = max(50, args.requests // 4)
        for _ in range(probes):
            ran, before = client.get("/bench/statements").json(), ran
            for cost in COSTS:
                costs["probe"][cost] += (ran[cost] or 0) - (before[cost] or 0)
        health = [get("/health", {})[0] for _ in range(len(asks) // 4)]
        one_list = []
        for kind, leaf in leaves:
            seconds, answer = get("/bench/list", {"kind": kind, "key": leaf})
            assert answer.status_code == 200, answer.text
            one_list.append(seconds)
    overall = [t for s in MIX for t in times[s]]
    out: dict[str, Any] = {
        "requests": len(asks),
        "limit": LIMIT,
        "answers_short_of_limit": short,
        "strategies": {s: percentiles(times[s]) for s in MIX},
        "statements_per_request": {
            s: round(costs[s]["statements"] / max(len(times[s]), 1), 2) for s in MIX
        },
        # CPU per request, the reading of the counters taken off: the server process (the
        # app, its HTTP stack, the driver) and its PostgreSQL server processes (None on
        # SQLite, which runs inside the server process). Unlike latencies, these barely
        # move with the machine's load.
        "server_cpu_ms_per_request": {
            s: round(
                1000 * (costs[s]["cpu_s"] / len(times[s]) - costs["probe"]["cpu_s"] / probes), 2
            )
            for s in MIX
        },
        "database_cpu_ms_per_request": {
            s: round(
                1000 * (costs[s]["db_cpu_s"] / len(times[s]) - costs["probe"]["db_cpu_s"] / probes),
                2,
            )
            if ran["db_cpu_s"] is not None
            else None
            for s in MIX
        },
        "overall": percentiles(overall),
        "baseline_health": percentiles(health),
        "baseline_one_list_select": percentiles(one_list),
    }
    out["ratio_p50_to_one_list"] = round(
        out["overall"]["p50_ms"] / out["baseline_one_list_select"]["p50_ms"], 1
    )
    out["target_met"] = all(
        v["p99_ms"] <= TARGET_P99_MS for v in [out["overall"], *out["strategies"].values()]
    )
    return out


# ------------------------------------------------------------------ one store


@contextmanager
def store(name: str, keep: bool, label: str) -> Iterator[str]:
    if name == "sqlite":
        folder = tempfile.mkdtemp(prefix=f"rapport_bench_{label}_")
        try:
            yield f"sqlite:///{folder}/store.db"
        finally:
            if keep:
                console.print(f"  kept sqlite:///{folder}/store.db")
            else:
                shutil.rmtree(folder, ignore_errors=True)
    else:
        url, drop = create_database(server_url(), f"rapport_bench_{label}")
        try:
            yield url
        finally:
            if keep:
                console.print(f"  kept {url}")
            else:
                drop()  # type: ignore[operator]


def run_recs(
    name: str, url: str, args: argparse.Namespace, now: datetime, reused: bool
) -> dict[str, Any]:
    label = STORE_NAMES[name]
    wall: dict[str, float] = {}
    started = time.perf_counter()
    engine = create_engine(url)
    migrate_s = 0.0
    if reused:
        console.print(f"[bold]{label}[/bold]: the store at {url}")
        built = existing(engine)
    else:
        shape = Shape(args.products, args.customers, args.lines, seed=args.seed)
        console.print(
            f"[bold]{label}[/bold]: building {shape.products:,} products, "
            f"{shape.customers:,} customers, ~{shape.order_lines:,} order lines"
        )
        started = time.perf_counter()
        upgrade(engine)
        migrate_s = time.perf_counter() - started
        built = build(engine, shape, now, console.print)
        engine.dispose()
        engine = create_engine(url)
    with engine.connect() as conn:
        leaves = int(
            conn.exec_driver_sql(
                "SELECT count(*) FROM categories WHERE parent_id IS NOT NULL"
            ).scalar_one()
        )
    wall["shop"] = time.perf_counter() - started
    timing: dict[str, Any] | None = None
    if not args.api_only:
        console.print(f"[bold]{label}[/bold]: the model build, {args.build_reps} run(s) per model")
        started = time.perf_counter()
        timing = time_build(engine, now, args)
        wall["model build and baseline"] = time.perf_counter() - started
    engine.dispose()
    shape_now = {
        "products": built.counts["products"],
        "customers": built.counts["customers"],
        "leaves": leaves,
    }
    console.print(f"[bold]{label}[/bold]: {4 * args.requests:,} API requests over HTTP")
    started = time.perf_counter()
    api = time_api(url, shape_now, args)
    wall["API"] = time.perf_counter() - started
    return {
        "wall_s": {part: round(seconds, 1) for part, seconds in wall.items()},
        "store": name,
        "counts": built.counts,
        "generation_s": {"migrations": round(migrate_s, 2), **built.seconds}
        if built.seconds
        else {},
        "generation_total_s": round(migrate_s + sum(built.seconds.values()), 1),
        "build": timing,
        "api": api,
        "load_average": load(),
    }


# ------------------------------------------------------------------ report


def report_build(label: str, b: dict[str, Any]) -> None:
    t = Table(title=f"{label}: model build (seconds)")
    t.add_column("stage")
    for model in b["models"]:
        t.add_column(model, justify="right")
    stages = list(next(iter(b["models"].values()))["stages_s"])
    for stage in stages:
        t.add_row(stage, *(f"{m['stages_s'].get(stage, 0):,.2f}" for m in b["models"].values()))
    t.add_row(
        "[bold]median total[/bold]",
        *(
            f"[bold]{m['median_s']:,.1f}[/bold] ({len(m['all_s'])} runs)"
            for m in b["models"].values()
        ),
    )
    base = b["baseline"]
    t.add_row(
        "baseline: bought together in the database",
        f"{base['database_bought_together_s']:,.1f}",
        "",
    )
    t.add_row(
        "  vs the build's read + bought together",
        f"{base['build_read_plus_bought_together_s']:,.1f}",
        "",
    )
    t.add_row("  ratio (lists equal row for row)", f"{base['ratio']}×", "")
    console.print(t)


def report_recs(results: list[dict[str, Any]]) -> None:
    built = [r for r in results if r["generation_s"]]
    if built:
        g = Table(title="Building the shop (seconds)")
        g.add_column("stage")
        for r in built:
            g.add_column(STORE_NAMES[r["store"]], justify="right")
        for stage in built[0]["generation_s"]:
            g.add_row(stage, *(f"{r['generation_s'].get(stage, 0):,.1f}" for r in built))
        g.add_row(
            "[bold]total[/bold]", *(f"[bold]{r['generation_total_s']:,.1f}[/bold]" for r in built)
        )
        console.print(g)
    for r in results:
        label = STORE_NAMES[r["store"]]
        c = r["counts"]
        console.print(
            f"{label}: {c['products']:,} products, {c['customers']:,} customers, "
            f"{c['orders']:,} orders ({c['completed_orders']:,} completed), "
            f"{c['order_lines']:,} order lines, {c['product_views']:,} product views"
        )
        if r["build"] is not None:  # None with --api-only: the lists came from an earlier run
            report_build(label, r["build"])
        a = r["api"]
        t = Table(
            title=f"{label}: GET /api/recommendations over HTTP, limit {a['limit']} (ms; "
            "statements, server and database CPU per request)"
        )
        columns = ("requests", "n", "p50", "p95", "p99", "max", "statements", "CPU", "DB CPU")
        for col in columns:
            t.add_column(col, justify="right" if col != "requests" else "left")
        per = a.get("statements_per_request", {})
        cpu = a.get("server_cpu_ms_per_request", {})
        db_cpu = a.get("database_cpu_ms_per_request", {})
        rows = [
            *((s, v) for s, v in a["strategies"].items()),
            ("[bold]all four[/bold]", a["overall"]),
        ]
        rows += [
            ("baseline: /health (SELECT 1)", a["baseline_health"]),
            ("baseline: one indexed list SELECT", a["baseline_one_list_select"]),
        ]
        for name, v in rows:
            t.add_row(
                name,
                str(v["n"]),
                *(f"{v[k]:,.1f}" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")),
                f"{per[name]:g}" if name in per else "",
                f"{cpu[name]:.2f}" if cpu.get(name) is not None else "",
                f"{db_cpu[name]:.2f}" if db_cpu.get(name) is not None else "",
            )
        t.add_row("ratio p50 ÷ one list SELECT", "", f"{a['ratio_p50_to_one_list']}×")
        verdict = "[green]met[/green]" if a["target_met"] else "[red]not met[/red]"
        t.add_row(f"target p99 ≤ {TARGET_P99_MS:g} ms", "", "", "", verdict)
        console.print(t)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, both stores: about 45 s at load 3-4"
    )
    parser.add_argument("--products", type=int, help="default 100,000 (quick 5,000)")
    parser.add_argument("--customers", type=int, help="default 1,000,000 (quick 10,000)")
    parser.add_argument(
        "--lines", type=int, help="order lines, default 10 a customer (quick 100,000)"
    )
    parser.add_argument("--stores", help="default postgres (quick: sqlite,postgres)")
    parser.add_argument("--part", choices=("recs", "loyalty", "all"), default="all")
    parser.add_argument("--requests", type=int, help="API requests per strategy (1000; quick 100)")
    parser.add_argument("--build-reps", type=int, help="builds per model, the median reported (1)")
    parser.add_argument("--seed", type=int, default=Shape(0, 0, 0).seed)
    parser.add_argument(
        "--api-only",
        action="store_true",
        help="with --reuse: time the API on the lists already built, skip the model build",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the shop stores (and print where)"
    )
    parser.add_argument(
        "--reuse",
        action="append",
        default=[],
        metavar="STORE=URL",
        help="time a shop store kept from an earlier run instead of building one",
    )
    loyalty_redeem.add_arguments(parser)
    args = parser.parse_args()
    if args.api_only and not args.reuse:
        parser.error("--api-only needs --reuse STORE=URL: a store whose lists are built")
    args.products = args.products or (5_000 if args.quick else 100_000)
    args.customers = args.customers or (10_000 if args.quick else 1_000_000)
    args.lines = args.lines or (100_000 if args.quick else 10 * args.customers)
    args.stores = args.stores or ("sqlite,postgres" if args.quick else "postgres")
    args.requests = args.requests or (100 if args.quick else 1000)
    args.build_reps = args.build_reps or 1
    loyalty_redeem.defaults(args)
    started = time.perf_counter()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    out: dict[str, Any] = {
        "quick": args.quick,
        "at": datetime.now(UTC).isoformat(),
        "cores": os.cpu_count(),
        "load_at_start": load(),
        "targets": {"recommendation_p99_ms": TARGET_P99_MS, "overdrawn_balances": 0},
    }
    if args.part in ("recs", "all"):
        reuse = dict(item.split("=", 1) for item in args.reuse)
        results = []
        for name in args.stores.split(","):
            if name in reuse:
                results.append(run_recs(name, reuse[name], args, now, True))
                continue
            with store(name, args.keep, "recs") as url:
                results.append(run_recs(name, url, args, now, False))
        report_recs(results)
        out["recommendations"] = results
    if args.part in ("loyalty", "all"):
        began = time.perf_counter()
        with store("postgres", False, "loyalty") as url:
            out["loyalty"] = loyalty_redeem.run(url, args, now, console, server)
        out["loyalty_wall_s"] = round(time.perf_counter() - began, 1)
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["load_at_end"] = load()
    path = ROOT / "bench" / "results" / "loyalty_recs.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2, default=str))
    parts = [
        f"{STORE_NAMES[r['store']]} {part} {seconds:.0f} s"
        for r in out.get("recommendations", [])
        for part, seconds in r["wall_s"].items()
    ]
    if "loyalty_wall_s" in out:
        parts.append(f"redemptions {out['loyalty_wall_s']:.0f} s")
    console.print(f"wall time: {'; '.join(parts)}")
    console.print(
        f"written {path.relative_to(ROOT)} in {out['seconds']:.0f} s "
        f"(load average {out['load_at_start']['load1']} at the start, "
        f"{out['load_at_end']['load1']} at the end)"
    )


if __name__ == "__main__":
    main()
