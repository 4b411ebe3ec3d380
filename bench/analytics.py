"""Analytics benchmark: the dashboard on a large store, and CLV beside lifetimes.

(a) **Dashboard.** A store of N customers (1,000,000 by default: ~10,000,000 orders and
~30,000,000 message status events over a year, ``bench/analytics_data.py``) on SQLite and on
PostgreSQL; then ``dashboard(conn, preset("last_30_days", today), now)`` — revenue, the
business figures and the funnel, the CRM revenue share, the message totals against the
previous period, the daily trend, alerts — one warm-up, then the median of 5 (``--quick``:
3), and each part on its own, called the way the dashboard calls it. The baseline, in the
same run: the same message figures computed the way a store without the roll-up has to,
straight from the events table (properties read from the JSON, one row per message, the
outcomes it reached counted per day and origin), with the credited orders read the same
way as the dashboard does. The two must agree on every figure or the run fails.

(b) **CLV.** ``bench/clv_bench.py``: fitting and scoring the CLV models on the customers
beside the ``lifetimes`` package, on the same data in the same run.

Prints tables and writes bench/results/analytics.json.

    python bench/analytics.py                 # full run (~70 minutes, most of it building)
    python bench/analytics.py --quick         # 20,000 customers, under a minute
    python bench/analytics.py --stores postgres --customers 200000 --part a --explain --keep
    python bench/analytics.py --part a --stores postgres --reuse postgres=postgresql://…
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.postgres_server import create_database, server_url  # noqa: E402

from bench.analytics_data import Built, Shape, build  # noqa: E402
from rapport.analytics.business import dashboard_business  # noqa: E402
from rapport.analytics.dashboard import alerts, dashboard  # noqa: E402
from rapport.analytics.message_facts import OUTCOME_OF_EVENT  # noqa: E402
from rapport.analytics.message_metrics import (  # noqa: E402
    MessageMetrics,
    crm_revenue_share,
    message_metrics,
)
from rapport.analytics.periods import Period, preset  # noqa: E402
from rapport.analytics.scope import tune  # noqa: E402
from rapport.customers.computed import COUNTED_ORDER_STATUSES  # noqa: E402
from rapport.segments.lifecycle import LifecycleThresholds, current_thresholds  # noqa: E402
from rapport.store.engine import create_engine  # noqa: E402
from rapport.store.fast import db_time  # noqa: E402
from rapport.store.migrate import upgrade  # noqa: E402
from rapport.store.tables import scenarios  # noqa: E402

console = Console(width=max(120, Console().width))

TARGET_DASHBOARD_S = 2.0  # on PostgreSQL
TARGET_CLV_SPEEDUP = 5.0
LOOKBACK = timedelta(days=7)  # a message's last status event comes within this of its first
# A common operator setting, for the business figures on a slower rhythm than the data's.
SLOW_RHYTHM = LifecycleThresholds(active_days=90, lapsed_days=180, source="settings")
STORE_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def load() -> dict[str, float]:
    one, five, _ = os.getloadavg()
    return {"load1": round(one, 2), "load5": round(five, 2)}


# ------------------------------------------------------------------ the dashboard, timed


def parts(period: Period, now: datetime) -> list[tuple[str, Callable[[sa.Connection], Any]]]:
    """The dashboard's calls, in the order ``dashboard`` makes them."""
    return [
        ("message totals", lambda c: message_metrics(c, period)),
        ("previous period", lambda c: message_metrics(c, period.previous())),
        ("trend (per day)", lambda c: message_metrics(c, period, None, "day")),
        ("business + funnel", lambda c: dashboard_business(c, period)),
        ("CRM revenue share", lambda c: crm_revenue_share(c, period)),
        (
            "active scenarios",
            lambda c: c.execute(
                sa.select(sa.func.count()).where(scenarios.c.status == "active")
            ).scalar_one(),
        ),
        ("alerts", lambda c: alerts(c, period, now)),
    ]


MESSAGE_PARTS = ("message totals", "previous period", "trend (per day)")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def in_transaction(engine: sa.Engine, fn: Callable[[sa.Connection], Any]) -> tuple[float, Any]:
    """One call in its own transaction (rolled back: a report writes nothing)."""
    with engine.connect() as conn:
        try:
            return timed(lambda: fn(conn))
        finally:
            conn.rollback()


@contextmanager
def limited(conn: sa.Connection, seconds: float) -> Iterator[None]:
    """Stop a statement still running after ``seconds``: a dashboard that takes many minutes
    is a finding to report, not something to wait hours for."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(seconds * 1000)}")
        yield
        return
    raw = conn.connection.dbapi_connection
    deadline = time.perf_counter() + seconds
    raw.set_progress_handler(lambda: int(time.perf_counter() > deadline), 100_000)  # type: ignore[union-attr]
    try:
        yield
    finally:
        raw.set_progress_handler(None, 0)  # type: ignore[union-attr]


def within(seconds: float, fn: Callable[[sa.Connection], Any]) -> Callable[[sa.Connection], Any]:
    def call(conn: sa.Connection) -> Any:
        with limited(conn, seconds):
            return fn(conn)

    return call


def ms(values: list[float]) -> dict[str, Any]:
    return {
        "median_ms": round(statistics.median(values) * 1000, 1),
        "all_ms": [round(v * 1000, 1) for v in values],
    }


def time_dashboard(engine: sa.Engine, period: Period, now: datetime, reps: int) -> dict[str, Any]:
    """Medians of the whole dashboard and of its parts (after the warm-up run)."""
    whole = [in_transaction(engine, lambda c: dashboard(c, period, now))[0] for _ in range(reps)]
    each: dict[str, list[float]] = {name: [] for name, _ in parts(period, now)}
    message_part: list[float] = []
    slow: list[float] = []
    for _ in range(reps):
        with engine.connect() as conn:
            for name, fn in parts(period, now):
                each[name].append(timed(lambda fn=fn: fn(conn))[0])
            conn.rollback()
        message_part.append(sum(each[name][-1] for name in MESSAGE_PARTS))
        slow.append(
            in_transaction(engine, lambda c: dashboard_business(c, period, thresholds=SLOW_RHYTHM))[
                0
            ]
        )
    return {
        "dashboard": ms(whole),
        "parts": {name: ms(values) for name, values in each.items()},
        "message_part": ms(message_part),
        "business_lapsed_180_days": ms(slow),
    }


def time_business_baseline(
    engine: sa.Engine, period: Period, reps: int, limit: float
) -> dict[str, Any]:
    """The business figures the way the dashboard computed them before the order roll-ups:
    one statement folding the orders since one lapse before the period into a row per
    customer (``from_orders``). Every figure must equal the roll-ups' (counts exactly,
    revenue to the cent), with the store's lapse and with the 180-day one."""
    out: dict[str, Any] = {}
    for name, thresholds, runs in (("store_lapse", None, reps), ("lapse_180_days", SLOW_RHYTHM, 1)):
        _, fast = in_transaction(
            engine, lambda c, t=thresholds: dashboard_business(c, period, thresholds=t)
        )
        seconds: list[float] = []
        slow: Any = None
        for _ in range(runs):
            spent, slow = in_transaction(
                engine,
                within(
                    limit,
                    lambda c, t=thresholds: dashboard_business(
                        c, period, thresholds=t, from_orders=True
                    ),
                ),
            )
            seconds.append(spent)
        wrong = differences(fast, slow, f"business ({name})")
        if wrong:
            for line in wrong[:20]:
                console.print(f"[red]  {line}[/red]")
            raise SystemExit(f"the roll-ups and the orders disagree on {len(wrong)} figures")
        out[name] = {**ms(seconds), "figures_equal": True}
    return out


# ------------------------------------------------------------------ the baseline


def naive_counts_sql(dialect: str) -> str:
    """Per day and origin, how many messages first recorded that day reached each outcome,
    read from the status events: one row per message (its first event, the outcomes it
    reached), then counted — COUNT(DISTINCT message) per outcome, as the roll-up groups."""
    pg = dialect == "postgresql"

    def prop(name: str) -> str:
        return f"(properties ->> '{name}')" if pg else f"json_extract(properties, '$.{name}')"

    day = "CAST(timezone('UTC', first_at) AS DATE)" if pg else "substr(first_at, 1, 10)"
    names = ", ".join(f"'{n}'" for n in sorted(OUTCOME_OF_EVENT))
    flags = ", ".join(
        f"max(CASE WHEN name = '{event}' THEN 1 ELSE 0 END) AS {outcome}"
        for event, outcome in OUTCOME_OF_EVENT.items()
    )
    origin = ("channel", "campaign_id", "scenario_id", "step", "variant")
    per_message = (
        f"SELECT {prop('message_id')} AS k, min(occurred_at) AS first_at, "
        + ", ".join(f"min({prop(n)}) AS {n}" for n in origin)
        + f", {flags} FROM events WHERE name IN ({names}) AND occurred_at >= :since "
        f"AND {prop('message_id')} IS NOT NULL GROUP BY {prop('message_id')}"
    )
    keys = ", ".join(f"coalesce({n}, '')" for n in origin)
    sums = ", ".join(f"sum({o}) AS {o}" for o in OUTCOME_OF_EVENT.values())
    return (
        f"SELECT {day} AS day, {keys}, {sums} FROM ({per_message}) m "
        f"WHERE first_at >= :first AND first_at < :end GROUP BY {day}, {keys}"
    )


ATTR = {"delivered": "confirmed"}


def naive_messages(conn: sa.Connection, period: Period) -> dict[str, Any]:
    """The dashboard's message figures (this period, the one before, per day) without the
    roll-up."""
    tune(conn)  # the same settings the reports give their big aggregates
    before = period.previous()
    rows = conn.execute(
        sa.text(naive_counts_sql(conn.dialect.name)),
        {
            "since": db_time(conn, before.start - LOOKBACK),
            "first": db_time(conn, before.start),
            "end": db_time(conn, period.end),
        },
    ).all()
    days: dict[date, MessageMetrics] = {}
    for row in rows:
        d = row[0] if isinstance(row[0], date) else date.fromisoformat(row[0])
        m = days.setdefault(d, MessageMetrics())
        for outcome, value in zip(OUTCOME_OF_EVENT.values(), row[6:], strict=True):
            name = ATTR.get(outcome, outcome)
            setattr(m, name, getattr(m, name) + int(value or 0))
    day_param: Any = (lambda d: d) if conn.dialect.name == "postgresql" else date.isoformat
    conversions = conn.execute(
        sa.text(
            "SELECT a.message_day, count(*), sum(o.total - o.refunded) FROM order_attributions a "
            "JOIN orders o ON o.id = a.order_pk WHERE a.message_day >= :first "
            "AND a.message_day <= :last AND o.status IN :counted GROUP BY a.message_day"
        ).bindparams(sa.bindparam("counted", expanding=True)),
        {
            "first": day_param(before.first),
            "last": day_param(period.last),
            "counted": list(COUNTED_ORDER_STATUSES),
        },
    ).all()
    for d, n, revenue in conversions:
        m = days.setdefault(d if isinstance(d, date) else date.fromisoformat(d), MessageMetrics())
        m.conversions += int(n)
        m.revenue += float(revenue or 0)

    def total(p: Period) -> dict[str, Any]:
        out = MessageMetrics()
        for d, m in days.items():
            if p.first <= d <= p.last:
                out.add(m)
        return out.as_json()

    trend = []
    d = period.first
    while d <= period.last:
        m = days.get(d, MessageMetrics())
        m.key = {"day": d.isoformat()}
        trend.append(m.as_json())
        d += timedelta(days=1)
    return {"messages": total(period), "previous": total(before), "trend": trend}


def rolled_up(conn: sa.Connection, period: Period) -> dict[str, Any]:
    (messages,) = message_metrics(conn, period)
    (before,) = message_metrics(conn, period.previous())
    trend = message_metrics(conn, period, None, "day")
    return {
        "messages": messages.as_json(),
        "previous": before.as_json(),
        "trend": [m.as_json() for m in trend],
    }


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Where two results differ: counts exactly; money to the cent and other fractions to 1e-9
    (sums of floats added in another order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(a)} vs {sorted(b)}"]
        return [x for k in a for x in differences(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} vs {len(b)} items"]
        return [
            x
            for i, (p, q) in enumerate(zip(a, b, strict=True))
            for x in differences(p, q, f"{where}[{i}]")
        ]
    if isinstance(a, float) and isinstance(b, float):
        money = where.endswith(("revenue", "per_recipient")) and abs(a - b) <= 0.01
        close = math.isclose(a, b, rel_tol=1e-9)
        return [] if money or close else [f"{where}: {a!r} vs {b!r}"]
    return [] if a == b else [f"{where}: {a!r} vs {b!r}"]


def time_baseline(engine: sa.Engine, period: Period, reps: int) -> dict[str, Any]:
    _, expected = in_transaction(engine, lambda c: rolled_up(c, period))
    _, got = in_transaction(engine, lambda c: naive_messages(c, period))  # also the warm-up
    wrong = differences(expected, got, "messages")
    if wrong:
        for line in wrong[:20]:
            console.print(f"[red]  {line}[/red]")
        raise SystemExit(f"the baseline and the dashboard disagree on {len(wrong)} figures")
    runs = [in_transaction(engine, lambda c: naive_messages(c, period))[0] for _ in range(reps)]
    return {**ms(runs), "figures_equal": True, "figures": expected["messages"]}


# ------------------------------------------------------------------ statements and plans


@contextmanager
def captured(engine: sa.Engine) -> Iterator[list[tuple[str, Any, float]]]:
    """The statements run on ``engine`` meanwhile, with their parameters and seconds."""
    seen: list[tuple[str, Any, float]] = []

    def before(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def after(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        started = conn.info["bench_started"].pop()
        seen.append((statement, params, time.perf_counter() - started))

    sa.event.listen(engine, "before_cursor_execute", before)
    sa.event.listen(engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)
        sa.event.remove(engine, "after_cursor_execute", after)


def explained(
    engine: sa.Engine, seen: list[tuple[str, Any, float]], explain: bool
) -> list[dict[str, Any]]:
    """The statements seen, slowest first; with ``explain`` (PostgreSQL) the plans of those
    over 100 ms, replayed in one transaction after the settings the dashboard made."""
    out = [
        {"ms": round(s * 1000, 1), "sql": " ".join(sql.split())[:160]}
        for sql, _, s in sorted(seen, key=lambda x: -x[2])
        if s >= 0.005
    ]
    if explain and engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            for sql, params, seconds in seen:
                if sql.lstrip().upper().startswith("SET"):
                    conn.exec_driver_sql(sql, params)
                elif seconds >= 0.1:
                    plan = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params).all()
                    console.print(f"[bold]{seconds * 1000:.0f} ms[/bold]: {' '.join(sql.split())}")
                    console.print(f"  parameters: {params}")
                    for (line,) in plan:
                        console.print(f"  {line}", highlight=False, markup=False)
            conn.rollback()
    return out


def over_limit(engine: sa.Engine, period: Period, now: datetime, limit: float) -> dict[str, Any]:
    """When the whole dashboard does not finish within ``limit``: each part once, under the
    same limit, to show which one it is."""
    each: dict[str, Any] = {}
    with captured(engine) as seen:
        for name, fn in parts(period, now):
            try:
                each[name] = ms([in_transaction(engine, within(limit, fn))[0]])
            except sa.exc.OperationalError:
                each[name] = {"median_ms": None, "over_limit_s": limit, "all_ms": []}
    message = [each[n]["median_ms"] for n in MESSAGE_PARTS]
    return {
        "dashboard": {"median_ms": None, "over_limit_s": limit, "all_ms": []},
        "parts": each,
        "message_part": {"median_ms": round(sum(message), 1), "all_ms": [round(sum(message), 1)]},
        "business_lapsed_180_days": {"median_ms": None, "all_ms": []},
        "slowest_statements": explained(engine, seen, False)[:8],
    }


# ------------------------------------------------------------------ one store


@contextmanager
def store(name: str, keep: bool) -> Iterator[str]:
    if name == "sqlite":
        folder = tempfile.mkdtemp(prefix="rapport_bench_analytics_")
        try:
            yield f"sqlite:///{folder}/store.db"
        finally:
            if keep:
                console.print(f"  kept sqlite:///{folder}/store.db")
            else:
                shutil.rmtree(folder, ignore_errors=True)
    else:
        url, drop = create_database(server_url(), "rapport_bench_analytics")
        try:
            yield url
        finally:
            if keep:
                console.print(f"  kept {url}")
            else:
                drop()  # type: ignore[operator]


def existing(url: str) -> Built:
    """The counts of a store built before (``--reuse``); no generation times."""
    engine = create_engine(url)
    with engine.connect() as conn:
        counts = {
            table: int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())
            for table in (
                "customers",
                "orders",
                "events",
                "message_facts",
                "message_daily",
                "order_attributions",
            )
        }
        counts["messages"] = counts["message_facts"]
        t = current_thresholds(conn)
    engine.dispose()
    return Built(counts, {}, {"active_days": t.active_days, "lapsed_days": t.lapsed_days,
                              "median_gap_days": t.median_gap_days, "source": t.source})  # fmt: skip


def run_store(
    name: str, url: str, args: argparse.Namespace, now: datetime, reused: bool
) -> dict[str, Any]:
    label = STORE_NAMES[name]
    loads = {"start": load()}
    migrate_s = 0.0
    if reused:
        console.print(f"[bold]{label}[/bold]: the store at {url}")
        engine = create_engine(url)
        # A store kept by an older revision is brought to the newest schema first (0014
        # fills the order roll-ups from its orders): timed, as an operator would meet it.
        migrate_s, _ = timed(lambda: upgrade(engine))
        engine.dispose()
        console.print(f"  migrations to the newest revision: {migrate_s:.1f} s")
        built = existing(url)
        args.customers = built.counts["customers"]
    else:
        console.print(f"[bold]{label}[/bold]: building {args.customers:,} customers")
        engine = create_engine(url)
        migrate_s, _ = timed(lambda: upgrade(engine))
        built = build(engine, Shape(args.customers, seed=args.seed), now, console.print)
        engine.dispose()  # the builder's session settings go with its connections
    loads["built"] = load()
    engine = create_engine(url)
    period = preset("last_30_days", now.date())
    console.print(f"[bold]{label}[/bold]: timing the dashboard, {args.reps} runs after a warm-up")
    try:
        with captured(engine) as seen:
            _, figures = in_transaction(
                engine, within(args.limit, lambda c: dashboard(c, period, now))
            )
        timing = time_dashboard(engine, period, now, args.reps)
        timing["slowest_statements"] = explained(engine, seen, args.explain)[:8]
    except sa.exc.OperationalError:
        console.print(f"[red]{label}: the dashboard did not finish in {args.limit:g} s[/red]")
        timing = over_limit(engine, period, now, args.limit)
        figures = None
    console.print(
        f"[bold]{label}[/bold]: the business figures from the orders, {args.baseline_reps} runs"
    )
    business_baseline = time_business_baseline(engine, period, args.baseline_reps, args.limit)
    console.print(f"[bold]{label}[/bold]: the baseline from the events, {args.baseline_reps} runs")
    baseline = time_baseline(engine, period, args.baseline_reps)
    loads["timed"] = load()
    engine.dispose()
    message_ms = timing["message_part"]["median_ms"]
    return {
        "store": name,
        "customers": args.customers,
        **{k: v for k, v in built.counts.items() if k != "customers"},
        "lifecycle_thresholds": built.thresholds,
        "period": period.as_json(),
        "generation_s": {"migrations": round(migrate_s, 2), **built.seconds}
        if built.seconds
        else {},
        "generation_total_s": round(migrate_s + sum(built.seconds.values()), 1),
        "upgrade_of_reused_store_s": round(migrate_s, 1) if reused else None,
        **timing,
        "baseline": baseline,
        "ratio_baseline_to_message_part": round(baseline["median_ms"] / message_ms, 1),
        "business_from_orders": business_baseline,
        "ratio_business_from_orders_to_rollups": _ratio(
            business_baseline["store_lapse"], timing["parts"]["business + funnel"]
        ),
        "alerts": [f"{a['code']} ({a['channel']})" for a in figures["alerts"]] if figures else None,
        "load_average": loads,
        "dashboard_figures": orjson.loads(orjson.dumps(figures, default=str)) if figures else None,
    }


# ------------------------------------------------------------------ part (b)


def run_clv(args: argparse.Namespace) -> dict[str, Any]:
    try:
        from bench import clv_bench
    except ImportError as exc:
        console.print(f"[yellow]part (b) not run: {exc}[/yellow]")
        return {"status": "unavailable", "reason": str(exc)}
    console.print(f"[bold]CLV[/bold]: fit and score {args.clv_customers:,} customers")
    result: dict[str, Any] = clv_bench.run(
        customers=args.clv_customers, quick=args.quick, stores=args.stores.split(",")
    )
    clv_bench.report(result)
    return result


# ------------------------------------------------------------------ report


def report(results: list[dict[str, Any]]) -> None:
    built = [r for r in results if r["generation_s"]]
    if built:
        g = Table(title="Building the store (seconds)")
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
        console.print(
            f"{label}: {r['customers']:,} customers, {r['orders']:,} orders, {r['events']:,} status "
            f"events, {r['message_facts']:,} messages, {r['order_attributions']:,} credited orders; "
            f"lifecycle thresholds {r['lifecycle_thresholds']['active_days']}/"
            f"{r['lifecycle_thresholds']['lapsed_days']} days"
        )
        runs = len(r["dashboard"]["all_ms"])
        t = Table(
            title=f"{label}: dashboard, last 30 days" + (f" (median of {runs})" if runs else "")
        )
        t.add_column("part")
        t.add_column("median ms", justify="right")
        t.add_column("runs ms", justify="right")
        for name, values in r["parts"].items():
            t.add_row(name, _ms(values), _runs(values))
        d = r["dashboard"]
        t.add_row("[bold]whole dashboard[/bold]", f"[bold]{_ms(d)}[/bold]", _runs(d))
        m = r["message_part"]
        t.add_row("message part (the 3 message calls)", f"{m['median_ms']:,.1f}", _runs(m))
        b = r["baseline"]
        t.add_row("baseline: message part from the events", f"{b['median_ms']:,.1f}", _runs(b))
        ratio = r["ratio_baseline_to_message_part"]
        t.add_row("ratio baseline ÷ message part", f"{ratio:,.1f}×", "figures equal")
        s = r["business_lapsed_180_days"]
        t.add_row("(business + funnel, 180-day lapse)", _ms(s), _runs(s))
        bb = r["business_from_orders"]
        t.add_row(
            "baseline: business + funnel from the orders", _ms(bb["store_lapse"]),
            _runs(bb["store_lapse"]),
        )  # fmt: skip
        ratio_b = r["ratio_business_from_orders_to_rollups"]
        t.add_row(
            "ratio from the orders ÷ roll-ups",
            "-" if ratio_b is None else f"{ratio_b:,.1f}×",
            "figures equal",
        )
        t.add_row(
            "(from the orders, 180-day lapse)", _ms(bb["lapse_180_days"]),
            _runs(bb["lapse_180_days"]),
        )  # fmt: skip
        if r["store"] == "postgres":
            ok = d["median_ms"] is not None and d["median_ms"] <= TARGET_DASHBOARD_S * 1000
            verdict = "[green]met[/green]" if ok else "[red]not met[/red]"
            t.add_row(f"target ≤ {TARGET_DASHBOARD_S:g} s", verdict, "")
        console.print(t)


def _ratio(baseline: dict[str, Any], fast: dict[str, Any]) -> float | None:
    if baseline["median_ms"] is None or not fast.get("median_ms"):
        return None
    return round(baseline["median_ms"] / fast["median_ms"], 1)


def _ms(values: dict[str, Any]) -> str:
    if values["median_ms"] is None:
        return f"over {values['over_limit_s']:g} s" if "over_limit_s" in values else "-"
    return f"{values['median_ms']:,.1f}"


def _runs(values: dict[str, Any]) -> str:
    return " ".join(f"{v:,.0f}" for v in values["all_ms"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20,000 customers, under a minute")
    parser.add_argument("--customers", type=int, help="default 1,000,000 (quick: 20,000)")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--part", choices=("a", "b", "all"), default="all")
    parser.add_argument("--reps", type=int, help="timed dashboard runs (default 5, quick 3)")
    parser.add_argument("--baseline-reps", type=int, default=3)
    parser.add_argument(
        "--limit", type=float, default=300.0, help="seconds a dashboard run may take (300)"
    )
    parser.add_argument("--seed", type=int, default=Shape(0).seed)
    parser.add_argument(
        "--explain", action="store_true", help="plans of slow statements (PostgreSQL)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the stores (and print where)")
    parser.add_argument(
        "--reuse",
        action="append",
        default=[],
        metavar="STORE=URL",
        help="time a store kept from an earlier run instead of building one",
    )
    args = parser.parse_args()
    args.customers = args.customers or (20_000 if args.quick else 1_000_000)
    args.clv_customers = args.customers
    args.reps = args.reps or (3 if args.quick else 5)
    started = time.perf_counter()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    out: dict[str, Any] = {
        "quick": args.quick,
        "at": datetime.now(UTC).isoformat(),
        "now": now.isoformat(),
        "cores": os.cpu_count(),
        "load_at_start": load(),
        "targets": {"dashboard_s_postgres": TARGET_DASHBOARD_S, "clv_speedup": TARGET_CLV_SPEEDUP},
    }
    results: list[dict[str, Any]] = []
    if args.part in ("a", "all"):
        reuse = dict(item.split("=", 1) for item in args.reuse)
        for name in args.stores.split(","):
            if name in reuse:
                results.append(run_store(name, reuse[name], args, now, True))
                continue
            with store(name, args.keep) as url:
                results.append(run_store(name, url, args, now, False))
        report(results)
        figures = [r["dashboard_figures"] for r in results]
        out["dashboard"] = results
        if len(figures) == 2 and None not in figures:
            wrong = differences(figures[0], figures[1], "dashboard")
            out["same_figures_on_both_stores"] = not wrong
            console.print(
                "Both stores give the same dashboard figures."
                if not wrong
                else f"[yellow]The stores' dashboards differ: {wrong[:5]}[/yellow]"
            )
    if args.part in ("b", "all"):
        out["clv"] = run_clv(args)
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["load_at_end"] = load()
    path = ROOT / "bench" / "results" / "analytics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        orjson.dumps(out, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=str)
    )
    console.print(f"written {path.relative_to(ROOT)} in {out['seconds']:.0f} s")


if __name__ == "__main__":
    main()
