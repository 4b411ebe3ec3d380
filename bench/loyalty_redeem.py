"""Part (c) of bench/loyalty_recs.py: checkout redemptions from 20 threads on PostgreSQL.

Each thread holds its own connection and redeems the way ``POST /api/loyalty/redeem``
does (the customer resolved, ``checkout.redeem`` under the account's row lock, its events
recorded through the pipeline, all in one transaction). The cases: every thread on its
own customers; all threads on one shared balance; a drain, where the threads ask for
twice what one balance holds. The baseline is the raw limit of a safe debit: the same
threads, each on its own driver connection, running one conditional ``UPDATE`` and a
commit per redemption on a scratch table. A smaller sample goes through HTTP. At the end
every account is checked against its ledger and lots.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from bench.loyalty_recs_data import build_loyalty
from rapport.access.keys import create_key
from rapport.clock import SystemClock
from rapport.customers.profile import live_id
from rapport.errors import InvalidInput
from rapport.pipeline import Pipeline
from rapport.store.engine import create_engine
from rapport.store.migrate import upgrade

THREADS = 20
POINTS = 10  # per redemption
OPENING = 1000  # an ordinary member's opening balance
SHARED, DRAIN = 1, 2  # the customers every thread redeems against
FIRST_OWN = 3  # customers FIRST_OWN… are shared out among the threads

# (thread index, its connection) → (redeemed, refused)
Work = Callable[[int, Any], tuple[int, int]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--members", type=int, help="loyalty customers (20,000; quick 200)")
    parser.add_argument(
        "--per-thread", type=int, help="redemptions per thread and run (50; quick 5)"
    )
    parser.add_argument("--runs", type=int, help="timed runs per case (5; quick 3)")
    parser.add_argument(
        "--http-per-thread", type=int, help="HTTP redemptions per thread (20; quick 3)"
    )


def defaults(args: argparse.Namespace) -> None:
    args.members = args.members or (200 if args.quick else 20_000)
    args.per_thread = args.per_thread or (5 if args.quick else 50)
    args.runs = args.runs or (3 if args.quick else 5)
    args.http_per_thread = args.http_per_thread or (3 if args.quick else 20)


def checkout_available() -> str | None:
    """Why the checkout cannot be benchmarked, or None when it can."""
    try:
        from rapport.loyalty import checkout

        checkout.redeem  # noqa: B018
        checkout.CheckoutRequest  # noqa: B018
    except (ImportError, AttributeError) as exc:
        return f"the loyalty checkout (rapport.loyalty.checkout.redeem) is not there: {exc}"
    return None


def race(connect: Callable[[], Any], work: Work) -> tuple[float, int, int]:
    """``work`` on THREADS threads, each with its own connection (opened before the
    clock starts), released together: (seconds, redeemed, refused)."""
    start = threading.Barrier(THREADS + 1)
    results: list[tuple[int, int] | BaseException | None] = [None] * THREADS

    def run(i: int) -> None:
        conn = connect()
        try:
            start.wait()
            results[i] = work(i, conn)
        except BaseException as exc:  # reported below: a failed thread fails the run
            results[i] = exc
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join(timeout=600)
    seconds = time.perf_counter() - began
    failed = [r for r in results if not isinstance(r, tuple)]
    if failed:
        raise SystemExit(f"{len(failed)} redemption threads failed: {failed[0]!r}")
    done = [r for r in results if isinstance(r, tuple)]
    return seconds, sum(r[0] for r in done), sum(r[1] for r in done)


def own_customers(thread: int, members: int) -> list[int]:
    return list(range(FIRST_OWN + thread, members + 1, THREADS))


# ------------------------------------------------------------------ through the domain


def domain_work(
    engine: sa.Engine, pipeline: Pipeline, tag: str, count: int, who: Callable[[int, int], int]
) -> Work:
    from rapport.loyalty.checkout import CheckoutRequest, make_order, redeem

    def work(thread: int, conn: sa.Connection) -> tuple[int, int]:
        redeemed = refused = 0
        for n in range(count):
            key = f"{tag}-{thread}-{n}"
            try:
                with conn.begin():
                    cid = live_id(conn, who(thread, n))
                    assert cid is not None
                    order = make_order(cid, [("sku-1", None, 100.0, 1)], f"order-{key}")
                    done = redeem(conn, CheckoutRequest(order, None, POINTS), key, _now())
                    if done.events:
                        pipeline.record_many(conn, done.events)
                redeemed += 1
            except InvalidInput:
                refused += 1
        return redeemed, refused

    return work


def _now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------ the raw limit


def raw_work(count: int, who: Callable[[int, int], int]) -> Work:
    def work(thread: int, conn: psycopg.Connection[Any]) -> tuple[int, int]:
        redeemed = refused = 0
        for n in range(count):
            with conn.cursor() as cursor:
                cursor.execute(
                    "UPDATE bench_accounts SET balance = balance - %s "
                    "WHERE id = %s AND balance >= %s",
                    (POINTS, who(thread, n), POINTS),
                )
                ok = cursor.rowcount == 1
            conn.commit()
            redeemed += ok
            refused += not ok
        return redeemed, refused

    return work


# ------------------------------------------------------------------ over HTTP


def http_work(base: str, key: str, tag: str, count: int, who: Callable[[int, int], int]) -> Work:
    def work(thread: int, client: httpx.Client) -> tuple[int, int]:
        redeemed = refused = 0
        for n in range(count):
            body = {
                "customer_id": who(thread, n),
                "order_id": f"order-{tag}-{thread}-{n}",
                "lines": [{"product_id": "sku-1", "price": 100.0, "quantity": 1}],
                "points_to_use": POINTS,
            }
            answer = client.post(
                "/api/loyalty/redeem",
                json=body,
                headers={"Idempotency-Key": f"{tag}-{thread}-{n}"},
            )
            if answer.status_code == 200:
                redeemed += 1
            elif answer.status_code == 422:
                refused += 1
            else:
                raise RuntimeError(f"{answer.status_code}: {answer.text[:300]}")
        return redeemed, refused

    def connect() -> httpx.Client:
        return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60)

    work.connect = connect  # type: ignore[attr-defined]
    return work


# ------------------------------------------------------------------ the checks


def audit(engine: sa.Engine) -> dict[str, int]:
    """Every account against its ledger and its lots: counted, not assumed."""
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT count(*), "
            "sum(CASE WHEN a.balance < 0 OR a.pending < 0 THEN 1 ELSE 0 END), "
            "sum(CASE WHEN a.balance <> coalesce(l.points, 0) "
            "OR a.pending <> coalesce(l.pending, 0) THEN 1 ELSE 0 END), "
            "sum(CASE WHEN a.balance + a.pending <> coalesce(t.remaining, 0) THEN 1 ELSE 0 END), "
            "sum(CASE WHEN coalesce(l.points, 0) < 0 THEN 1 ELSE 0 END) "
            "FROM loyalty_accounts a "
            "LEFT JOIN (SELECT customer_id, sum(points) AS points, sum(pending) AS pending "
            "FROM loyalty_ledger GROUP BY customer_id) l ON l.customer_id = a.customer_id "
            "LEFT JOIN (SELECT customer_id, sum(remaining) AS remaining FROM loyalty_lots "
            "GROUP BY customer_id) t ON t.customer_id = a.customer_id"
        ).one()
        negative_lots = conn.exec_driver_sql(
            "SELECT count(*) FROM loyalty_lots WHERE remaining < 0"
        ).scalar_one()
        redeem = conn.exec_driver_sql(
            "SELECT count(*), coalesce(-sum(points), 0) FROM loyalty_ledger WHERE kind = 'redeem'"
        ).one()
        stored = conn.exec_driver_sql("SELECT count(*) FROM loyalty_redemptions").scalar_one()
    return {
        "accounts": int(row[0]),
        "overdrawn_balances": int(row[1] or 0),
        "accounts_not_equal_to_ledger": int(row[2] or 0),
        "accounts_not_equal_to_lots": int(row[3] or 0),
        "ledgers_summing_below_zero": int(row[4] or 0),
        "lots_below_zero": int(negative_lots),
        "redeem_entries": int(redeem[0]),
        "points_redeemed": int(redeem[1]),
        "stored_redemptions": int(stored),
    }


def balance_of(engine: sa.Engine, cid: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.exec_driver_sql(
                f"SELECT balance FROM loyalty_accounts WHERE customer_id = {cid}"
            ).scalar_one()
        )


# ------------------------------------------------------------------ the run


def rate(seconds: list[float], redeemed: list[int]) -> dict[str, Any]:
    rates = [n / s for n, s in zip(redeemed, seconds, strict=True)]
    return {
        "median_per_s": round(statistics.median(rates), 1),
        "all_per_s": [round(r, 1) for r in rates],
        "redeemed": redeemed,
    }


def run(
    url: str,
    args: argparse.Namespace,
    now: datetime,
    console: Console,
    server: Callable[[str], AbstractContextManager[str]],
) -> dict[str, Any]:
    why = checkout_available()
    if why is not None:
        console.print(f"[yellow]redemptions not measured: {why}[/yellow]")
        return {"status": "unavailable", "reason": why}
    members, per_thread, runs = args.members, args.per_thread, args.runs
    if members < FIRST_OWN + THREADS:
        raise SystemExit(f"--members: at least {FIRST_OWN + THREADS}, one customer per thread")
    shared_opening = THREADS * per_thread * runs * POINTS * 2
    drain_opening = THREADS * per_thread * POINTS // 2

    def opening(cid: int) -> int:
        return {SHARED: shared_opening, DRAIN: drain_opening}.get(cid, OPENING)

    engine = create_engine(url)
    upgrade(engine)
    console.print(f"[bold]Loyalty[/bold]: {members:,} members with balances from the ledger")
    seeding = build_loyalty(engine, members, opening, now, console.print)
    mine = {t: own_customers(t, members) for t in range(THREADS)}

    def distinct(thread: int, n: int) -> int:
        return mine[thread][n % len(mine[thread])]

    def one(cid: int) -> Callable[[int, int], int]:
        return lambda thread, n: cid

    raw_url = url.replace("+psycopg", "")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE UNLOGGED TABLE bench_accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)"
        )
        conn.exec_driver_sql(
            "INSERT INTO bench_accounts SELECT customer_id, balance FROM loyalty_accounts"
        )
    pipeline = Pipeline(engine, SystemClock())
    cases: dict[str, dict[str, Any]] = {}
    for case, who in (("own customers", distinct), ("one shared balance", one(SHARED))):
        seconds: dict[str, list[float]] = {"domain": [], "raw": []}
        counts: dict[str, list[int]] = {"domain": [], "raw": []}
        for r in range(runs):
            console.print(f"  {case}: run {r + 1}/{runs}, {THREADS} threads × {per_thread}")
            work = domain_work(engine, pipeline, f"{case[:3]}{r}", per_thread, who)
            s, done, refused = race(engine.connect, work)
            if refused:
                raise SystemExit(f"{case}: {refused} redemptions refused with balance to spare")
            seconds["domain"].append(s)
            counts["domain"].append(done)
            s, done, refused = race(lambda: psycopg.connect(raw_url), raw_work(per_thread, who))
            seconds["raw"].append(s)
            counts["raw"].append(done)
        domain, raw = rate(seconds["domain"], counts["domain"]), rate(seconds["raw"], counts["raw"])
        cases[case] = {
            "domain": domain,
            "raw_update": raw,
            "ratio_raw_to_domain": round(raw["median_per_s"] / domain["median_per_s"], 1),
        }
    console.print(f"  drain: {THREADS} threads ask for twice the balance of one customer")
    before = balance_of(engine, DRAIN)
    s, done, refused = race(
        engine.connect, domain_work(engine, pipeline, "drain", per_thread, one(DRAIN))
    )
    drain = {
        "opening_balance": before,
        "asked": THREADS * per_thread,
        "redeemed": done,
        "refused": refused,
        "balance_after": balance_of(engine, DRAIN),
        "expected_redeemed": before // POINTS,
        "seconds": round(s, 3),
    }
    drain["exact"] = done == before // POINTS and drain["balance_after"] == before - done * POINTS
    http = over_http(engine, url, args, distinct, one(SHARED), console, server)
    checks = audit(engine)
    redeemed_total = (
        sum(sum(c["domain"]["redeemed"]) for c in cases.values())
        + done
        + sum(h["redeemed"] for h in http.values())
    )
    checks["redeemed_by_the_threads"] = redeemed_total
    checks["ledger_agrees_with_the_threads"] = (
        checks["redeem_entries"] == redeemed_total == checks["stored_redemptions"]
        and checks["points_redeemed"] == redeemed_total * POINTS
    )
    with engine.connect() as conn:
        raw_negative = conn.exec_driver_sql(
            "SELECT count(*) FROM bench_accounts WHERE balance < 0"
        ).scalar_one()
        conn.exec_driver_sql("DROP TABLE bench_accounts")
        conn.commit()
    checks["raw_table_below_zero"] = int(raw_negative)
    engine.dispose()
    out = {
        "threads": THREADS,
        "points_per_redemption": POINTS,
        "members": members,
        "per_thread": per_thread,
        "runs": runs,
        "seeding_s": seeding,
        "cases": cases,
        "drain": drain,
        "http": http,
        "checks": checks,
    }
    report(out, console)
    return out


def over_http(
    engine: sa.Engine,
    url: str,
    args: argparse.Namespace,
    distinct: Callable[[int, int], int],
    shared: Callable[[int, int], int],
    console: Console,
    server: Callable[[str], AbstractContextManager[str]],
) -> dict[str, dict[str, Any]]:
    key = create_key(engine, "secret", "bench", _now()).key
    out: dict[str, dict[str, Any]] = {}
    with server(url) as base:
        for case, who in (("own customers", distinct), ("one shared balance", shared)):
            console.print(f"  over HTTP, {case}: {THREADS} clients × {args.http_per_thread}")
            work = http_work(base, key, f"http-{case[:3]}", args.http_per_thread, who)
            seconds, done, refused = race(work.connect, work)  # type: ignore[attr-defined]
            out[case] = {
                "redeemed": done,
                "refused": refused,
                "per_s": round(done / seconds, 1),
            }
    return out


def report(out: dict[str, Any], console: Console) -> None:
    t = Table(
        title=f"Redemptions on PostgreSQL: {out['threads']} threads, each on its own connection "
        f"(redemptions/s, median of {out['runs']})"
    )
    t.add_column("case")
    t.add_column("checkout.redeem", justify="right")
    t.add_column("raw UPDATE (baseline)", justify="right")
    t.add_column("ratio raw ÷ redeem", justify="right")
    t.add_column("over HTTP (one run)", justify="right")
    for case, c in out["cases"].items():
        t.add_row(
            case,
            f"{c['domain']['median_per_s']:,.0f}",
            f"{c['raw_update']['median_per_s']:,.0f}",
            f"{c['ratio_raw_to_domain']}×",
            f"{out['http'][case]['per_s']:,.0f}",
        )
    console.print(t)
    d, k = out["drain"], out["checks"]
    console.print(
        f"Drain: {d['asked']} asked for a balance of {d['opening_balance']} points "
        f"({d['expected_redeemed']} redemptions): {d['redeemed']} redeemed, {d['refused']} "
        f"refused, balance after {d['balance_after']} — "
        + ("[green]exact[/green]" if d["exact"] else "[red]NOT exact[/red]")
    )
    bad = k["overdrawn_balances"] + k["accounts_not_equal_to_ledger"] + k["lots_below_zero"]
    colour = "green" if bad == 0 and k["ledger_agrees_with_the_threads"] else "red"
    console.print(
        f"[{colour}]Checked {k['accounts']:,} accounts: overdrawn balances: "
        f"{k['overdrawn_balances']}; not equal to their ledger: "
        f"{k['accounts_not_equal_to_ledger']}; not equal to their lots: "
        f"{k['accounts_not_equal_to_lots']}; lots below zero: {k['lots_below_zero']}; "
        f"{k['redeem_entries']:,} redeem entries for {k['redeemed_by_the_threads']:,} "
        f"redemptions made[/{colour}]"
    )
