"""The recommendation benchmark's store: a catalogue, customers, orders and views, in SQL.

A benchmark fixture, not the ingest path: ten million order lines through the pipeline
would take hours, and what the recommender needs is the state the pipeline leaves in the
tables it reads (``categories``, ``compatible_categories``, ``products``, ``customers``,
``orders``, ``order_lines``, ``product_views``). Every table is filled set-based by the
database itself, with the integer-hash draws of ``bench/analytics_data.py`` (the same rows
on SQLite and PostgreSQL for the same seed), into a schema made by the migrations; bulk
loads drop a table's secondary indexes and build them again afterwards.

The shop has structure for the recommender to find:

* leaf categories under parents (ten leaves a parent); product ``i`` is in leaf
  ``(i - 1) mod L`` with rank ``(i - 1) div L`` there, and low ranks sell more (a rank is
  ``R · u³``), low categories too (``L · u²``);
* half the leaves declare two compatible leaves (``c + 1`` and ``c + 7``), and orders
  follow them whether declared or not: an order's first line is in its anchor category,
  each further line is in a compatible leaf (half of them), in the same leaf (a fifth) or
  anywhere (the rest);
* lines per order are geometric (mean 2.5 by default, at most 10); orders fall uniformly
  over two years on uniformly drawn customers; 95 % completed, 3 % refunded, 2 % cancelled;
* 2 % of products are sold out (``attributes.available = false``), 3 % were published in
  the last 30 days;
* each customer viewed a geometric number of products (mean 3) in the last 60 days, drawn
  like anchor lines; repeated draws of one product add to its view count.

Customers carry no computed order fields (the recommender does not read them).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bench.analytics_data import DRAWS, P1, P2, Builder, Sql, analyze
from bench.analytics_data import Shape as AnalyticsShape

DAY_S = 86_400
LEAVES_PER_PARENT = 10
MAX_LINES = 10
COMPATIBLE_STEPS = (1, 7)  # leaf c goes with c + 1 and c + 7 (mod L)
OWN_DRAWS = (
    *("ocust", "ostat", "otime", "olen", "oanchor"),
    *("lkind", "lcompat", "lcat", "lrank", "lqty"),
    *("pprice", "pavail", "pnew", "pcreated", "ccreated"),
    *("vlen", "vcat", "vrank", "vtime"),
)


@dataclass(frozen=True)
class Shape:
    products: int
    customers: int
    order_lines: int
    lines_per_order: float = 2.5
    views_per_customer: float = 3.0
    seed: int = 20261122

    @property
    def leaves(self) -> int:
        """Leaf categories: one per 200 products (500 for 100,000), at least 10."""
        return max(10, self.products // 200)

    @property
    def orders(self) -> int:
        return max(1, round(self.order_lines / self.lines_per_order))


@dataclass
class Built:
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


class RecSql(Sql):
    """The analytics bench's dialect helpers with this store's named draws."""

    def __init__(self, dialect: str, seed: int) -> None:
        super().__init__(dialect, seed)
        rng = random.Random(seed * 7 + 1)
        for name in OWN_DRAWS:
            assert name not in DRAWS
            self.mult[name] = (rng.randrange(10**8, P1 - 1), rng.randrange(10**8, P2 - 1))

    def json(self, text: str) -> str:
        return f"CAST({text} AS JSONB)" if self.pg else text


class RecBuilder(Builder):
    def __init__(
        self, conn: sa.Connection, shape: Shape, now: datetime, say: Callable[[str], None]
    ) -> None:
        super().__init__(conn, AnalyticsShape(shape.customers, seed=shape.seed), now, say)
        self.rec = shape
        self.sql: RecSql = RecSql(conn.dialect.name, shape.seed)
        self.out = Built()

    def stage(self, name: str, fn: Callable[[], Any]) -> Any:
        result = super().stage(name, fn)
        self.out.seconds[name] = self.built.seconds[name]
        return result

    # -- helpers

    def product_expr(self, category: str, rank_draw: str, x: str) -> str:
        """The product number (1-based) of a skewed rank in ``category`` (0-based)."""
        s, leaves = self.sql, self.rec.leaves
        ranks = max(1, self.rec.products // leaves)
        rank = s.ifloor(f"{ranks} * {s.pow(s.u(x, rank_draw), '3')}")
        return f"({rank} * {leaves} + {category} + 1)"

    def anchor(self, x: str, draw: str) -> str:
        """A skewed category (0-based): low categories sell more."""
        s = self.sql
        return s.ifloor(f"{self.rec.leaves} * {s.pow(s.u(x, draw), '2')}")

    def pid(self, number: str) -> str:
        return f"'p' || {self.sql.pad(number)}"

    def leaf(self, number: str) -> str:
        return f"'c' || {self.sql.pad(number)}"

    # -- stages

    def prepare(self) -> int:
        s, r = self.sql, self.rec
        if s.pg:
            for setting in (
                "work_mem = '256MB'",
                "maintenance_work_mem = '1GB'",
                "synchronous_commit = off",
                "jit = off",
            ):
                self.run(f"SET {setting}")
        else:
            self.run("PRAGMA cache_size = -400000")
            biggest = max(r.products, r.customers, r.orders, MAX_LINES, 64) + 1
            self.run("CREATE TEMP TABLE bench_numbers (i INTEGER PRIMARY KEY)")
            self.run(
                f"WITH RECURSIVE q(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM q WHERE i < "
                f"{biggest}) INSERT INTO bench_numbers SELECT i FROM q"
            )
        return 0

    def numbers(self, first: int, last: int, alias: str = "g") -> str:
        """A FROM item with ``{alias}.i`` = first … last."""
        if self.sql.pg:
            return f"generate_series({first}, {last}) AS {alias}(i)"
        return f"(SELECT i FROM bench_numbers WHERE i BETWEEN {first} AND {last}) {alias}"

    def categories(self) -> int:
        s, leaves = self.sql, self.rec.leaves
        parents = -(-leaves // LEAVES_PER_PARENT)
        made = self.run(
            "INSERT INTO categories (id, name, parent_id) "
            f"SELECT 'g' || {s.pad('g.i')}, 'Group ' || CAST(g.i AS TEXT), NULL "
            f"FROM {self.numbers(0, parents - 1)}"
        )
        made += self.run(
            "INSERT INTO categories (id, name, parent_id) "
            f"SELECT {self.leaf('g.i')}, 'Category ' || CAST(g.i AS TEXT), "
            f"'g' || {s.pad(f'(g.i / {LEAVES_PER_PARENT})')} FROM {self.numbers(0, leaves - 1)}"
        )
        for step in COMPATIBLE_STEPS:
            other = s.mod(f"g.i + {step}", str(leaves))
            made += self.run(
                "INSERT INTO compatible_categories (category_id, compatible_id) "
                f"SELECT {self.leaf('g.i')}, {self.leaf(other)} FROM {self.numbers(0, leaves - 1)} "
                f"WHERE {s.mod('g.i', '2')} = 0"
            )
        return made

    def products(self) -> int:
        s, r, now = self.sql, self.rec, self.now_s
        x = "g.i"
        attrs = s.json(
            f"CASE WHEN {s.u(x, 'pavail')} < 0.02 THEN '{{\"available\": false}}' ELSE '{{}}' END"
        )
        created = (
            f"CASE WHEN {s.u(x, 'pnew')} < 0.03 THEN {now} - {s.ifloor(s.u(x, 'pcreated') + ' * ' + str(30 * DAY_S))} "
            f"ELSE {now} - {31 * DAY_S} - {s.ifloor(s.u(x, 'pcreated') + ' * ' + str(700 * DAY_S))} END"
        )
        category = s.mod(f"{x} - 1", str(r.leaves))
        insert = (
            "INSERT INTO products (id, sku, name, category_id, price, currency, attributes, "
            "created_at, updated_at) "
            f"SELECT {self.pid(x)}, 'sku' || CAST({x} AS TEXT), 'Product ' || CAST({x} AS TEXT), "
            f"{self.leaf(category)}, {self.price(x)}, 'RUB', {attrs}, {s.ts('t')}, {s.ts('t')} "
            f"FROM (SELECT g.i, {created} AS t FROM {self.numbers(1, r.products)}) g"
        )
        return self.without_indexes("products", lambda: self.run(insert))

    def price(self, number: str) -> str:
        """A product's price from its number, so an order line repeats it."""
        u = self.sql.u(number, "pprice")
        return f"(floor((5 + 495 * {u} * {u}) * 100) / 100.0)"

    def customers(self) -> int:
        s, r = self.sql, self.rec
        t = f"{self.now_s} - {s.ifloor(s.u('g.i', 'ccreated') + ' * ' + str(1095 * DAY_S))}"
        empty = s.json("'{}'")
        insert = (
            "INSERT INTO customers (id, created_at, updated_at, traits, first_name, email) "
            f"SELECT g.i, {s.ts(t)}, {s.ts(t)}, {empty}, "
            "'Customer ' || CAST(g.i AS TEXT), "
            f"'customer' || CAST(g.i AS TEXT) || '@example.com' FROM {self.numbers(1, r.customers)}"
        )
        made = self.without_indexes("customers", lambda: self.run(insert))
        if s.pg:
            self.run(f"SELECT setval(pg_get_serial_sequence('customers', 'id'), {r.customers})")
        return made

    def order_plan(self) -> int:
        """Per order (scratch): customer, time, status draw, number of lines, anchor."""
        s, r = self.sql, self.rec
        x = "g.i"
        lines = s.least(
            str(MAX_LINES),
            "1 + " + s.ifloor(f"-ln({s.u(x, 'olen')}) / ln({1 / (1 - 1 / r.lines_per_order)!r})"),
        )
        made = self.run(
            s.scratch(
                "bench_orders",
                f"AS SELECT g.i AS o, {s.mod(s.h(x, 'ocust'), str(r.customers))} + 1 AS c, "
                f"{self.now_s} - 3600 - {s.ifloor(s.u(x, 'otime') + ' * ' + str(730 * DAY_S))} AS t, "
                f"{s.u(x, 'ostat')} AS us, {lines} AS k, {self.anchor(x, 'oanchor')} AS a "
                f"FROM {self.numbers(1, r.orders)}",
            )
        )
        if s.pg:
            self.run("ALTER TABLE bench_orders ADD PRIMARY KEY (o)")
            self.run("ANALYZE bench_orders")
        return int(self.scalar("SELECT count(*) FROM bench_orders") if made < 0 else made)

    def order_lines(self) -> int:
        s, r = self.sql, self.rec
        x = f"(b.o * {MAX_LINES} + n.i)"
        leaves = str(r.leaves)
        kind = s.u(x, "lkind")
        step = f"(CASE WHEN {s.u(x, 'lcompat')} < 0.5 THEN {COMPATIBLE_STEPS[0]} ELSE {COMPATIBLE_STEPS[1]} END)"
        category = (
            f"CASE WHEN n.i = 0 THEN b.a WHEN {kind} < 0.5 THEN {s.mod(f'b.a + {step}', leaves)} "
            f"WHEN {kind} < 0.7 THEN b.a ELSE {s.ifloor(s.u(x, 'lcat') + ' * ' + leaves)} END"
        )
        gen = (
            f"SELECT o, j, {self.product_expr('cat', 'lrank', 'x')} AS p, "
            f"1 + {s.ifloor(s.u('x', 'lqty') + ' * 1.3')} AS q FROM (SELECT b.o AS o, "
            f"n.i AS j, {x} AS x, {category} AS cat FROM bench_orders b {s.rows('b.k')}) l"
        )
        insert = (
            "INSERT INTO order_lines (id, order_pk, product_id, category_id, price, quantity) "
            f"SELECT o * {MAX_LINES} + j, o, {self.pid('p')}, "
            f"{self.leaf(s.mod('p - 1', leaves))}, {self.price('p')}, q FROM ({gen}) g "
            "ORDER BY o, j"
        )
        return self.without_indexes("order_lines", lambda: self.run(insert))

    def orders(self) -> int:
        s = self.sql
        status = (
            "CASE WHEN us < 0.95 THEN 'completed' WHEN us < 0.98 THEN 'refunded' "
            "ELSE 'cancelled' END"
        )
        insert = (
            "INSERT INTO orders (id, order_id, customer_id, status, total, refunded, discount, "
            "shipping, tax, currency, channel, occurred_at, updated_at) "
            f"SELECT b.o, 'b' || CAST(b.o AS TEXT), b.c, {status}, coalesce(l.total, 0), "
            "CASE WHEN us >= 0.95 AND us < 0.98 THEN coalesce(l.total, 0) ELSE 0 END, "
            f"0, 0, 0, 'RUB', 'online', {s.ts('b.t')}, {s.ts('b.t')} FROM bench_orders b "
            "LEFT JOIN (SELECT order_pk, sum(price * quantity) AS total FROM order_lines "
            "GROUP BY order_pk) l ON l.order_pk = b.o ORDER BY b.t, b.o"
        )
        made = self.without_indexes("orders", lambda: self.run(insert))
        if s.pg:
            self.run(f"SELECT setval(pg_get_serial_sequence('orders', 'id'), {self.rec.orders})")
            self.run(
                "SELECT setval(pg_get_serial_sequence('order_lines', 'id'), "
                f"{(self.rec.orders + 1) * MAX_LINES})"
            )
        return made

    def views(self) -> int:
        s, r = self.sql, self.rec
        x = "(c.i * 64 + n.i)"
        count = s.least(
            "60",
            s.ifloor(f"-ln({s.u('g.i', 'vlen')}) * {r.views_per_customer}"),
        )
        t = f"{self.now_s} - 60 - {s.ifloor(s.u(x, 'vtime') + ' * ' + str(60 * DAY_S))}"
        draws = (
            f"SELECT c.i AS cust, {self.product_expr(self.anchor(x, 'vcat'), 'vrank', x)} AS p, "
            f"{t} AS t FROM (SELECT g.i, {count} AS k FROM {self.numbers(1, r.customers)}) c "
            f"{s.rows('c.k')}"
        )
        insert = (
            "INSERT INTO product_views (customer_id, product_id, views, first_viewed_at, "
            f"last_viewed_at) SELECT cust, {self.pid('p')}, count(*), {s.ts('min(t)')}, "
            f"{s.ts('max(t)')} FROM ({draws}) d GROUP BY cust, p ORDER BY cust, p"
        )
        return self.without_indexes("product_views", lambda: self.run(insert), primary=True)

    def foreign_keys(self, on: bool) -> None:
        """Order lines are written before their orders (an order's total is the sum of its
        lines), so the foreign key from lines to orders is off meanwhile: dropped and added
        again on PostgreSQL (one validating join instead of a lookup per row), the pragma
        on SQLite (outside any transaction, where SQLite honours it)."""
        if not self.sql.pg:
            raw = self.conn.connection.dbapi_connection
            assert raw is not None
            raw.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
            return
        if not on:
            self.fks = self.conn.exec_driver_sql(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = 'order_lines'::regclass AND contype = 'f'"
            ).all()
            for name, _ in self.fks:
                self.run(f'ALTER TABLE order_lines DROP CONSTRAINT "{name}"')
        else:
            for name, definition in self.fks:
                self.run(f'ALTER TABLE order_lines ADD CONSTRAINT "{name}" {definition}')
        self.conn.commit()

    def drop_scratch(self) -> None:
        self.run("DROP TABLE IF EXISTS bench_orders")
        self.run("DROP TABLE IF EXISTS bench_numbers")
        if self.sql.pg:
            self.run("RESET ALL")


def build(
    engine: sa.Engine, shape: Shape, now: datetime, say: Callable[[str], None] = lambda _: None
) -> Built:
    """Fill a freshly migrated, empty store; row counts and seconds per stage."""
    with engine.connect() as conn:
        b = RecBuilder(conn, shape, now, say)
        b.foreign_keys(False)
        b.stage("prepare", b.prepare)
        counts = b.out.counts
        counts["categories"] = b.stage("categories", b.categories)
        counts["products"] = b.stage("products", b.products)
        counts["customers"] = b.stage("customers", b.customers)
        counts["orders"] = b.stage("orders (plan)", b.order_plan)
        counts["order_lines"] = b.stage("order lines", b.order_lines)
        b.stage("orders", b.orders)
        b.stage("foreign key", lambda: b.foreign_keys(True))
        counts["product_views"] = b.stage("product views", b.views)
        b.stage("drop scratch", b.drop_scratch)
    started = time.perf_counter()
    analyze(engine)
    b.out.seconds["analyze"] = round(time.perf_counter() - started, 2)
    say(f"  analyze: done in {b.out.seconds['analyze']:.1f} s")
    with engine.connect() as conn:
        counts["completed_orders"] = int(
            conn.exec_driver_sql(
                "SELECT count(*) FROM orders WHERE status = 'completed'"
            ).scalar_one()
        )
    return b.out


def existing(engine: sa.Engine) -> Built:
    """The counts of a store built before (``--reuse``); no build times."""
    with engine.connect() as conn:
        counts = {
            table: int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())
            for table in (
                "categories",
                "products",
                "customers",
                "orders",
                "order_lines",
                "product_views",
            )
        }
        counts["completed_orders"] = int(
            conn.exec_driver_sql(
                "SELECT count(*) FROM orders WHERE status = 'completed'"
            ).scalar_one()
        )
    return Built(counts, {})


# ---------------------------------------------------------------- the loyalty store

LOYALTY_PROGRAMME: dict[str, Any] = {
    "enabled": True,
    "accrual_percent": 5,
    "max_redeem_percent": 100,
    "pending_days": 0,
    "expiry_days": 365,
}
SEED_BATCH = 500  # customers credited per transaction


def build_loyalty(
    engine: sa.Engine,
    customers: int,
    points: Callable[[int], int],
    now: datetime,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, float]:
    """A programme, ``customers`` customers, and each one's opening balance credited
    through the ledger (``add_points``: a ledger entry, a lot, the account row), so every
    balance the benchmark spends is one the ledger can account for. Seconds per stage."""
    from rapport.access.audit import Actor
    from rapport.loyalty.points import add_points
    from rapport.loyalty.programme import parse, save
    from rapport.store.engine import writing
    from rapport.store.tables import customers as customers_table

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with writing(engine) as conn:
        save(conn, parse(LOYALTY_PROGRAMME), Actor.system(), now)
        conn.execute(
            customers_table.insert(),
            [
                {
                    "id": cid,
                    "created_at": now,
                    "updated_at": now,
                    "traits": {},
                    "email": f"member{cid}@example.com",
                }
                for cid in range(1, customers + 1)
            ],
        )
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('customers', 'id'), {customers})"
            )
    seconds["customers"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    for first in range(1, customers + 1, SEED_BATCH):
        with writing(engine) as conn:
            for cid in range(first, min(first + SEED_BATCH, customers + 1)):
                add_points(conn, cid, points(cid), "opening-balance", now, reason="bench")
    seconds["balances (add_points)"] = round(time.perf_counter() - started, 2)
    say(
        f"  {customers:,} customers in {seconds['customers']:.1f} s, their balances through "
        f"the ledger in {seconds['balances (add_points)']:.1f} s"
    )
    analyze(engine)
    return seconds
