"""The analytics benchmark's store: a year of a shop's orders and messages, made in SQL.

A benchmark fixture, not the ingest path: thirty million status events through the pipeline
would take hours, and what the dashboard benchmark needs is a store in the state the
pipeline leaves behind. Every table is filled set-based by the database itself (``INSERT …
SELECT`` over ``generate_series`` on PostgreSQL, over a numbers table made by a recursive
CTE on SQLite) into a schema created by the migrations. Random draws are an integer hash
of a row's number (a multiplication, a square and a second multiplication, modulo primes),
written the same way in both dialects, so the two stores hold the same rows; the seed
picks the multipliers.

* customers: ids in sign-up order over three years; 15 % never order; the buyers' orders
  over the last twelve months are geometric, 80 % light (mean 2) and 20 % heavy (mean 60),
  scaled by how long they have been customers: ~10 orders a customer, four in ten buyers
  buy once, a tenth of the buyers place three quarters of the orders;
* orders at uniform times in each customer's window, written in time order: 95 %
  completed (3 % of those partly refunded), 3 % refunded, 2 % cancelled;
* messages from ~120 campaigns (Tuesdays, Thursdays and some Saturdays, 3–12 % of the
  customers known at the time each; e-mail, SMS, push; four in ten A/B) and 11 steps of six
  scenarios every day (weekends quieter): each one's status events as the outbox records
  them (``Message Queued``/``Sent`` for each; e-mail opened 35 %, clicked 8 %, bounced 2 %
  (6 % yesterday, so the dashboard has a bounce alert to raise), unsubscribed 0.3 %; SMS
  delivery receipts; push opens), repeated opens and clicks, written in time order;
* then what the live path keeps: the customer rows, written once with their order
  aggregates and event counts folded in; ``message_facts`` (one ``INSERT … SELECT``
  grouping the status events by message, equal to what ``fold_message_events`` makes of
  them); ``message_daily`` (``rebuild_daily``); ``order_attributions`` (one statement with
  the rule of ``analytics/attribution.py``); the order roll-ups the dashboard's business
  figures sum (``analytics/order_days.rebuild``); and RFM cells and lifecycle stages by
  Rapport's own ``recompute_rfm`` and ``recompute_lifecycle``.

Bulk loads drop a table's secondary indexes and build them again afterwards from the
definitions the migrations left, as a restore does; the schema at the end is the
migrations'.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rapport.analytics.attribution import load_attribution
from rapport.analytics.message_facts import OUTCOME_OF_EVENT, rebuild_daily
from rapport.analytics.order_days import rebuild as rebuild_orders
from rapport.clock import SimulatedClock
from rapport.pipeline import Pipeline
from rapport.segments.lifecycle import current_thresholds, recompute_lifecycle
from rapport.segments.rfm import recompute_rfm
from rapport.store.tables import MESSAGE_OUTCOMES, scenarios

DAY_S = 86_400
YEAR_S = 365 * DAY_S
SPAN_S = 3 * YEAR_S  # customers signed up over the last three years
MAX_LAG_S = 7 * DAY_S  # the latest status event of a message comes within this of its queueing
MAX_ORDERS = 1000  # per customer and year
P1, P2 = 2_147_483_647, 2_147_483_629  # primes below 2**31: products stay within 64 bits

# (scenario, steps as (step, channel, share of the scenario messages))
SCENARIOS: list[tuple[str, list[tuple[str, str, float]]]] = [
    ("welcome", [("welcome-1", "email", 0.20), ("welcome-2", "email", 0.12)]),
    (
        "abandoned-cart",
        [("cart-1", "email", 0.18), ("cart-2", "sms", 0.06), ("cart-3", "push", 0.05)],
    ),
    ("win-back", [("winback-1", "email", 0.08), ("winback-2", "email", 0.05)]),
    ("birthday", [("birthday", "email", 0.06)]),
    ("post-purchase", [("thanks", "email", 0.10), ("review", "email", 0.05)]),
    ("browse-abandonment", [("browse", "push", 0.05)]),
]
CAMPAIGN_SHARE = 0.7  # of the messages; the rest come from scenarios
CHANNELS = (("email", 0.75), ("sms", 0.15), ("push", 0.10))
BOUNCE = {"email": 0.02, "sms": 0.02, "push": 0.005}
BOUNCE_YESTERDAY_EMAIL = 0.06
BIG_PRIMES = (1_000_003, 15_485_863, 179_424_673, 32_452_843, 49_979_687)

# Status event slots of a message: (slot, event name, column of its offset from queueing).
SLOTS = [
    (0, "Message Queued", None),
    (1, "Message Sent", "d_s"),
    (2, "Message Delivered", "d_d"),
    (3, "Message Bounced", "d_b"),
    (4, "Message Opened", "d_o1"),
    (5, "Message Opened", "d_o2"),
    (6, "Message Opened", "d_o3"),
    (7, "Message Clicked", "d_c1"),
    (8, "Message Clicked", "d_c2"),
    (9, "Message Unsubscribed", "d_u"),
]
# The named draws: each is a different pair of multipliers.
DRAWS = [
    *("tq", "ts", "b", "tb", "d", "td", "o", "to", "o2", "to2", "o3", "to3"),
    *("c", "tc", "c2", "tc2", "u", "tu", "cust"),
    *("signup", "buyer", "heavy", "k", "ot", "st", "pr", "t1", "t2", "och"),
]


@dataclass(frozen=True)
class Shape:
    customers: int
    messages_per_customer: float = 11.4  # ~30 status events a customer
    seed: int = 20261122


@dataclass
class Built:
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)


class Sql:
    """The few expressions that differ between the dialects, and the hash draws."""

    def __init__(self, dialect: str, seed: int) -> None:
        self.pg = dialect == "postgresql"
        rng = random.Random(seed)
        self.mult = {
            name: (rng.randrange(10**8, P1 - 1), rng.randrange(10**8, P2 - 1)) for name in DRAWS
        }

    def h(self, x: str, draw: str) -> str:
        """An integer in [0, P2) from row number ``x`` (below 2**32)."""
        a, c = self.mult[draw]
        big = f"CAST({x} AS BIGINT)" if self.pg else f"({x})"
        # A linear step, a square (without it draws of consecutive rows are a lattice),
        # a second linear step modulo another prime.
        y = self.mod(f"{big} * {a}", str(P1))
        y = self.mod(f"{y} * {y}", str(P1))
        return self.mod(f"{y} * {c} + {big}", str(P2))

    def mod(self, a: str, b: str) -> str:
        # psycopg reads a bare % as a placeholder even with no parameters.
        return f"mod({a}, {b})" if self.pg else f"(({a}) % {b})"

    def u(self, x: str, draw: str) -> str:
        """A uniform draw in (0, 1), the same double on both stores."""
        real = "DOUBLE PRECISION" if self.pg else "REAL"
        return f"((CAST({self.h(x, draw)} AS {real}) + 0.5) / {P2})"

    def ifloor(self, e: str) -> str:
        """floor() of a non-negative number, as an integer."""
        return f"CAST(floor({e}) AS BIGINT)" if self.pg else f"CAST({e} AS INTEGER)"

    def pow(self, a: str, b: str) -> str:
        return f"power({a}, {b})" if self.pg else f"pow({a}, {b})"

    def greatest(self, *e: str) -> str:
        return f"{'greatest' if self.pg else 'max'}({', '.join(e)})"

    def least(self, *e: str) -> str:
        return f"{'least' if self.pg else 'min'}({', '.join(e)})"

    def ts(self, sec: str) -> str:
        """Epoch seconds as the store keeps a timestamp (SQLite: UTCDateTime's text)."""
        if self.pg:
            return f"to_timestamp({sec})"
        return f"(strftime('%Y-%m-%d %H:%M:%S', {sec}, 'unixepoch') || '.000000')"

    def plus_seconds(self, moment: str, seconds: float) -> str:
        if self.pg:
            return f"({moment} + interval '{seconds:g} seconds')"
        return f"(strftime('%Y-%m-%d %H:%M:%S', {moment}, '{seconds:+g} seconds') || substr({moment}, 20))"

    def day_of(self, moment: str) -> str:
        """The UTC day of a stored timestamp."""
        return f"CAST(timezone('UTC', {moment}) AS DATE)" if self.pg else f"substr({moment}, 1, 10)"

    def pad(self, e: str) -> str:
        if self.pg:
            return f"lpad(CAST({e} AS TEXT), 10, '0')"
        return f"substr('0000000000' || {e}, -10, 10)"

    def rows(self, count: str, alias: str = "n") -> str:
        """``{alias}.i`` = 0 … count − 1 for each row of the preceding FROM item."""
        if self.pg:
            return f"CROSS JOIN LATERAL generate_series(0, {count} - 1) AS {alias}(i)"
        return f"JOIN bench_numbers {alias} ON {alias}.i < {count}"

    def scratch(self, name: str, body: str) -> str:
        kind = "UNLOGGED TABLE" if self.pg else "TEMP TABLE"
        return f"CREATE {kind} {name} {body}"

    def prop(self, name: str, table: str = "") -> str:
        doc = f"{table}.properties" if table else "properties"
        return f"({doc} ->> '{name}')" if self.pg else f"json_extract({doc}, '$.{name}')"

    def is_text(self, name: str) -> str:
        if self.pg:
            return f"jsonb_typeof(properties -> '{name}') = 'string'"
        return f"json_type(properties, '$.{name}') = 'text'"

    def text_prop(self, name: str, table: str = "") -> str:
        """A property as fold_message_events keeps it: text, at most 100 characters."""
        return f"substr(CAST({self.prop(name, table)} AS TEXT), 1, 100)"


# ---------------------------------------------------------------------------------- plan


@dataclass
class Send:
    """Messages sent together: one campaign, or one scenario step on one day."""

    kind: str  # c | s
    campaign_id: str | None
    scenario_id: str | None
    step: str | None
    template_id: str
    channel: str
    ab: int
    t0: int
    spread: int
    n: int
    pool: int
    stride: int
    offset: int
    bounce: float
    send_id: int = 0
    first_m: int = 0


def plan(shape: Shape, now_s: int) -> list[Send]:
    """Every send of the year, in time order, with the range of message numbers it uses."""
    rng = random.Random(shape.seed)
    n_cust = shape.customers
    target = shape.messages_per_customer * n_cust
    today = datetime.fromtimestamp(now_s, UTC).date()
    origin = now_s - SPAN_S

    def pool(t: int) -> int:
        return max(1, min(n_cust, (t - origin) * n_cust // SPAN_S))

    def stride(p: int) -> int:
        return next(q for q in rng.sample(BIG_PRIMES, len(BIG_PRIMES)) if p % q)

    campaigns: list[Send] = []
    scenario_sends: list[Send] = []
    for d in range(365):
        day = today - timedelta(days=364 - d)
        start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
        weekday = day.weekday()
        yesterday = d == 363
        if weekday in (1, 3) or (weekday == 5 and rng.random() < 0.3):
            t0 = start + rng.randint(8, 17) * 3600
            channel = rng.choices([c for c, _ in CHANNELS], [w for _, w in CHANNELS])[0]
            ab = int(rng.random() < 0.4)
            share = rng.uniform(0.03, 0.12)
            if t0 + 3600 <= now_s - 3600:
                p = pool(t0)
                bounce = (
                    BOUNCE_YESTERDAY_EMAIL if yesterday and channel == "email" else BOUNCE[channel]
                )
                campaigns.append(
                    Send(
                        kind="c",
                        campaign_id=None,
                        scenario_id=None,
                        step=None,
                        template_id="",
                        channel=channel,
                        ab=ab,
                        t0=t0,
                        spread=3600,
                        n=int(share * p),
                        pool=p,
                        stride=stride(p),
                        offset=rng.randrange(p),
                        bounce=bounce,
                    )
                )
        elapsed = min(DAY_S, now_s - 3600 - start)
        if elapsed <= 0:
            continue
        factor = (1.1 if weekday < 5 else 0.75) * elapsed / DAY_S
        per_day = (1 - CAMPAIGN_SHARE) * target / 365
        number = 0
        for sid, (_, steps) in enumerate(SCENARIOS, start=1):
            for step, channel, share in steps:
                number += 1
                n = int(share * per_day * factor + rng.random())  # unbiased at any size
                if n <= 0:
                    continue
                bounce = (
                    BOUNCE_YESTERDAY_EMAIL if yesterday and channel == "email" else BOUNCE[channel]
                )
                scenario_sends.append(
                    Send(
                        kind="s",
                        campaign_id=None,
                        scenario_id=str(sid),
                        step=step,
                        template_id=str(100 + number),
                        channel=channel,
                        ab=0,
                        t0=start,
                        spread=elapsed,
                        n=n,
                        pool=pool(start),
                        stride=0,
                        offset=0,
                        bounce=bounce,
                    )
                )
    # Campaign sizes scaled so campaigns are their share of the messages.
    raw = sum(s.n for s in campaigns) or 1
    scale = CAMPAIGN_SHARE * target / raw
    for number, s in enumerate(campaigns, start=1):
        s.n = max(1, min(s.pool, round(s.n * scale)))
        s.campaign_id = str(number)
        s.template_id = str(1000 + number)
    sends = sorted(campaigns + scenario_sends, key=lambda s: (s.t0, s.kind, s.step or ""))
    first = 1
    for number, s in enumerate(sends, start=1):
        s.send_id, s.first_m = number, first
        first += s.n
    return sends


# ---------------------------------------------------------------------------------- build


class Builder:
    def __init__(
        self, conn: sa.Connection, shape: Shape, now: datetime, say: Callable[[str], None]
    ) -> None:
        self.conn = conn
        self.shape = shape
        self.now = now
        self.now_s = int(now.timestamp())
        self.sql = Sql(conn.dialect.name, shape.seed)
        self.say = say
        self.built = Built()

    def run(self, sql: str) -> int:
        return int(self.conn.exec_driver_sql(sql).rowcount or 0)

    def scalar(self, sql: str) -> Any:
        return self.conn.exec_driver_sql(sql).scalar()

    def stage(self, name: str, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = fn()
        self.conn.commit()
        seconds = time.perf_counter() - started
        self.built.seconds[name] = round(seconds, 2)
        count = f"{result:,} rows" if isinstance(result, int) else "done"
        self.say(f"  {name}: {count} in {seconds:.1f} s")
        return result

    # -- indexes

    def without_indexes(self, table: str, fn: Callable[[], int], *, primary: bool = False) -> int:
        """Run a bulk load with the table's secondary indexes (and unique constraints; with
        ``primary`` its primary key too) dropped, then build them again as they were."""
        again: list[str] = []
        if self.sql.pg:
            kinds = "('u', 'p')" if primary else "('u')"
            cons = self.conn.exec_driver_sql(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                f"WHERE conrelid = '{table}'::regclass AND contype IN {kinds}"
            ).all()
            owned = {name for name, _ in cons}
            pk = self.scalar(
                f"SELECT conname FROM pg_constraint WHERE conrelid = '{table}'::regclass "
                "AND contype = 'p'"
            )
            indexes = [
                (name, sql)
                for name, sql in self.conn.exec_driver_sql(
                    f"SELECT indexname, indexdef FROM pg_indexes WHERE tablename = '{table}'"
                ).all()
                if name not in owned and name != pk
            ]
            for name, definition in cons:
                self.run(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
                again.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        else:
            indexes = self.conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                f"AND tbl_name = '{table}' AND sql IS NOT NULL"
            ).all()
        for name, definition in indexes:
            self.run(f'DROP INDEX "{name}"')
            again.append(definition)
        rows = fn()
        for statement in again:
            self.run(statement)
        return rows

    # -- stages

    def prepare(self) -> int:
        s, n = self.sql, self.shape.customers
        sends = plan(self.shape, self.now_s)
        self.sends = sends
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
            biggest = max([n, MAX_ORDERS, *(x.n for x in sends)]) + 1
            self.run("CREATE TEMP TABLE bench_numbers (i INTEGER PRIMARY KEY)")
            self.run(
                f"WITH RECURSIVE r(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM r WHERE i < "
                f"{biggest}) INSERT INTO bench_numbers SELECT i FROM r"
            )
        self.run(
            s.scratch(
                "bench_sends",
                "(send_id BIGINT PRIMARY KEY, kind TEXT, campaign_id TEXT, scenario_id TEXT, "
                "step TEXT, template_id TEXT, channel TEXT, ab BIGINT, t0 BIGINT, spread BIGINT, "
                "n BIGINT, first_m BIGINT, pool BIGINT, stride BIGINT, off BIGINT, "
                "bounce DOUBLE PRECISION)",
            )
        )
        cols = [
            *("send_id", "kind", "campaign_id", "scenario_id", "step", "template_id"),
            *("channel", "ab", "t0", "spread", "n", "first_m", "pool", "stride", "offset"),
            "bounce",
        ]
        marks = ", ".join(["%s" if s.pg else "?"] * len(cols))
        self.conn.exec_driver_sql(
            f"INSERT INTO bench_sends VALUES ({marks})",
            [tuple(getattr(x, c) for c in cols) for x in sends],
        )
        # Per customer: sign-up time, the start of their ordering window, orders in the year.
        u_signup, u_k = s.u("c", "signup"), s.u("c", "k")
        signup = f"{self.now_s - SPAN_S} + " + s.ifloor(f"(c - 1 + {u_signup}) * {SPAN_S} / {n}")
        mean = f"(CASE WHEN {s.u('c', 'heavy')} < 0.2 THEN 60 ELSE 2 END)"
        base = "(1 + " + s.ifloor(f"-ln({u_k}) * {mean}") + ")"
        window = s.greatest("signup", str(self.now_s - YEAR_S))
        scaled = s.ifloor(f"{base} * ({self.now_s} - w) / {YEAR_S}.0 + 0.5")
        k = (
            f"CASE WHEN {s.u('c', 'buyer')} < 0.85 THEN "
            f"{s.least(str(MAX_ORDERS), s.greatest('1', scaled))} ELSE 0 END"
        )
        numbers = (
            f"generate_series(1, {n}) AS g(c)"
            if s.pg
            else f"(SELECT i AS c FROM bench_numbers WHERE i BETWEEN 1 AND {n})"
        )
        self.run(
            s.scratch(
                "bench_customers",
                f"AS SELECT c, signup, w, {k} AS k FROM (SELECT c, signup, {window} AS w FROM "
                f"(SELECT c, {signup} AS signup FROM {numbers}) a) b",
            )
        )
        if s.pg:
            self.run("ALTER TABLE bench_customers ADD PRIMARY KEY (c)")
            self.run("ANALYZE bench_sends")
            self.run("ANALYZE bench_customers")
        return len(sends)

    def customers(self) -> int:
        """The customer rows, written once with the computed fields folded from their own
        orders (as computed.recompute_orders keeps them) and events (count, last seen)."""
        s = self.sql
        done = "status = 'completed'"
        latest = s.greatest("b.s", "coalesce(o.any_at, b.s)", "coalesce(e.l, b.s)")
        made = self.run(
            "INSERT INTO customers (id, created_at, updated_at, traits, first_name, email, "
            "events_count, first_seen_at, last_seen_at, orders_count, revenue, first_order_at, "
            "last_order_at) "
            f"SELECT b.c, b.s, {latest}, '{{}}', 'Customer ' || CAST(b.c AS TEXT), "
            "'customer' || CAST(b.c AS TEXT) || '@example.com', coalesce(e.n, 0), b.s, "
            f"{latest}, coalesce(o.n, 0), coalesce(o.rev, 0), o.f, o.l "
            f"FROM (SELECT c, {s.ts('signup')} AS s FROM bench_customers) b "
            f"LEFT JOIN (SELECT customer_id, sum(CASE WHEN {done} THEN 1 ELSE 0 END) AS n, "
            f"sum(CASE WHEN {done} THEN total - refunded END) AS rev, "
            f"min(CASE WHEN {done} THEN occurred_at END) AS f, "
            f"max(CASE WHEN {done} THEN occurred_at END) AS l, max(occurred_at) AS any_at "
            "FROM orders GROUP BY customer_id) o ON o.customer_id = b.c "
            "LEFT JOIN (SELECT customer_id, count(*) AS n, max(occurred_at) AS l FROM events "
            "GROUP BY customer_id) e ON e.customer_id = b.c ORDER BY b.c"
        )
        if s.pg:
            self.run(
                f"SELECT setval(pg_get_serial_sequence('customers', 'id'), {self.shape.customers})"
            )
        self.conn.execute(
            scenarios.insert(),
            [
                {
                    "id": sid,
                    "name": name,
                    "status": "active",
                    "version": 1,
                    "definition": {"name": name, "steps": [{"id": step} for step, _, _ in steps]},
                    "created_at": self.now - timedelta(days=400),
                    "updated_at": self.now - timedelta(days=400),
                }
                for sid, (name, steps) in enumerate(SCENARIOS, start=1)
            ],
        )
        if s.pg:
            self.run(f"SELECT setval(pg_get_serial_sequence('scenarios', 'id'), {len(SCENARIOS)})")
        return made

    def orders(self) -> int:
        s = self.sql
        x = "(c * 1024 + j)"
        total = f"floor(exp(2.7 + 1.25 * ({s.u(x, 't1')} + {s.u(x, 't2')})) * 100 + 0.5) / 100.0"
        u_ot = s.u(x, "ot")
        at = s.ifloor(f"{u_ot} * ({self.now_s} - 60 - w)")
        gen = (
            f"SELECT c, j, w + {at} AS t, "
            f"{s.u(x, 'st')} AS us, {s.u(x, 'pr')} AS up, {s.u(x, 'och')} AS uc, {total} AS total "
            f"FROM (SELECT b.c, b.w, n.i AS j FROM bench_customers b {s.rows('b.k')} "
            "WHERE b.k > 0) q"
        )
        status = "CASE WHEN us < 0.95 THEN 'completed' WHEN us < 0.98 THEN 'refunded' ELSE 'cancelled' END"
        refunded = (
            "CASE WHEN us >= 0.95 AND us < 0.98 THEN total "
            "WHEN us < 0.95 AND up < 0.03 THEN floor(total * 30) / 100.0 ELSE 0 END"
        )
        insert = (
            "INSERT INTO orders (order_id, customer_id, status, total, refunded, discount, "
            "shipping, tax, currency, channel, occurred_at, updated_at) "
            f"SELECT 'o' || CAST(c AS TEXT) || '-' || CAST(j AS TEXT), c, {status}, total, "
            f"{refunded}, 0, 0, 0, 'RUB', CASE WHEN uc < 0.85 THEN 'online' ELSE 'offline' END, "
            f"{s.ts('t')}, {s.ts('t')} FROM ({gen}) o ORDER BY t, c, j"
        )
        return self.without_indexes("orders", lambda: self.run(insert))

    def messages(self) -> int:
        s = self.sql
        m = "m"
        u = {name: s.u(m, name) for name in DRAWS}
        inner = (
            "SELECT x.send_id, x.first_m + n.i AS m, n.i AS i, x.kind, x.channel, x.ab, x.t0, "
            "x.spread, x.pool, x.stride, x.off, x.bounce "
            f"FROM bench_sends x {s.rows('x.n')}"
        )
        flags = (
            f"SELECT m, send_id, kind, channel, "
            f"CASE WHEN kind = 'c' THEN {s.mod('off + i * stride', 'pool')} + 1 "
            f"ELSE {s.mod(s.h(m, 'cust'), 'pool')} + 1 END AS c, "
            f"CASE WHEN ab = 1 AND {s.mod('i', '2')} = 0 THEN 'A' WHEN ab = 1 THEN 'B' END AS variant, "
            f"t0 + {s.ifloor(u['tq'] + ' * spread')} AS t_q, "
            f"5 + {s.ifloor(u['ts'] + ' * 115')} AS d_s, "
            f"CASE WHEN {u['b']} < bounce THEN 1 ELSE 0 END AS b, "
            f"CASE WHEN channel = 'email' AND {u['o']} < 0.35 THEN 1 "
            f"WHEN channel = 'push' AND {u['o']} < 0.12 THEN 1 ELSE 0 END AS o, "
            f"CASE WHEN channel = 'email' AND {u['c']} < 0.2286 THEN 1 "
            f"WHEN channel = 'push' AND {u['c']} < 0.4 THEN 1 "
            f"WHEN channel = 'sms' AND {u['c']} < 0.03 THEN 1 ELSE 0 END AS k, "
            f"{u['tb']} AS utb, {u['d']} AS ud, {u['td']} AS utd, {u['to']} AS uto, "
            f"{u['o2']} AS uo2, {u['to2']} AS uto2, {u['o3']} AS uo3, {u['to3']} AS uto3, "
            f"{u['tc']} AS utc, {u['c2']} AS uc2, {u['tc2']} AS utc2, {u['u']} AS uu, "
            f"{u['tu']} AS utu FROM ({inner}) q"
        )
        opened = "(b = 0 AND o = 1)"
        cube = s.pow("uto", "3")
        o1 = f"(d_s + 60 + {s.ifloor(cube + ' * 259200')})"
        o2 = f"({o1} + 600 + {s.ifloor('uto2 * 172800')})"
        clicked = "(b = 0 AND k = 1 AND (channel = 'sms' OR o = 1))"
        c1 = (
            f"(CASE WHEN channel = 'sms' THEN d_s + 60 + {s.ifloor('utc * 3540')} "
            f"ELSE {o1} + 5 + {s.ifloor('utc * 595')} END)"
        )
        select = (
            "SELECT m, c, send_id, variant, t_q, d_s, "
            f"CASE WHEN channel = 'sms' AND b = 0 AND ud < 0.98 THEN d_s + 2 + {s.ifloor('utd * 58')} END AS d_d, "
            f"CASE WHEN b = 1 THEN d_s + 10 + {s.ifloor('utb * 590')} END AS d_b, "
            f"CASE WHEN {opened} THEN {o1} END AS d_o1, "
            f"CASE WHEN {opened} AND uo2 < 0.4 THEN {o2} END AS d_o2, "
            f"CASE WHEN {opened} AND uo2 < 0.4 AND uo3 < 0.375 THEN {o2} + 600 + {s.ifloor('uto3 * 86400')} END AS d_o3, "
            f"CASE WHEN {clicked} THEN {c1} END AS d_c1, "
            f"CASE WHEN {clicked} AND uc2 < 0.2 THEN {c1} + 60 + {s.ifloor('utc2 * 86400')} END AS d_c2, "
            f"CASE WHEN channel = 'email' AND {opened} AND uu < 0.00857 THEN {o1} + 30 + {s.ifloor('utu * 870')} END AS d_u "
            f"FROM ({flags}) f"
        )
        offsets = ", ".join(f"x.{column}" for _, _, column in SLOTS if column)
        self.run(
            s.scratch(
                "bench_messages",
                "(m BIGINT PRIMARY KEY, c BIGINT, t_q BIGINT, d_s BIGINT, d_d BIGINT, d_b BIGINT, "
                "d_o1 BIGINT, d_o2 BIGINT, d_o3 BIGINT, d_c1 BIGINT, d_c2 BIGINT, d_u BIGINT, "
                f"props {'JSONB' if s.pg else 'TEXT'})",
            )
        )
        made = self.run(
            f"INSERT INTO bench_messages SELECT x.m, x.c, x.t_q, {offsets}, {self.properties()} "
            f"FROM ({select}) x JOIN bench_sends s ON s.send_id = x.send_id ORDER BY x.m"
        )
        self.run("CREATE INDEX bench_messages_t_q ON bench_messages (t_q)")
        if s.pg:
            self.run("ANALYZE bench_messages")
        return made

    def properties(self) -> str:
        """A message's status-event properties as event_for writes them: ``message_id`` (the
        outbox idempotency key), ``channel`` and the origin that applies."""
        key = (
            "CASE WHEN s.kind = 'c' THEN 'campaign:' || s.campaign_id || ':customer:' || "
            "CAST(x.c AS TEXT) ELSE 'run:' || CAST(x.m AS TEXT) || ':step:' || s.step END"
        )
        if self.sql.pg:
            return (
                f"jsonb_strip_nulls(jsonb_build_object('message_id', {key}, 'channel', s.channel, "
                "'campaign_id', s.campaign_id, 'scenario_id', s.scenario_id, 'template_id', "
                "s.template_id, 'step', s.step, 'variant', x.variant))"
            )
        # The outbox leaves out what does not apply, as jsonb_strip_nulls does.
        return (
            f"CASE WHEN s.kind = 's' THEN json_object('message_id', {key}, 'channel', "
            "s.channel, 'scenario_id', s.scenario_id, 'template_id', s.template_id, 'step', "
            "s.step) WHEN x.variant IS NULL THEN json_object('message_id', "
            f"{key}, 'channel', s.channel, 'campaign_id', s.campaign_id, 'template_id', "
            f"s.template_id) ELSE json_object('message_id', {key}, 'channel', s.channel, "
            "'campaign_id', s.campaign_id, 'template_id', s.template_id, 'variant', "
            "x.variant) END"
        )

    def events(self) -> int:
        s = self.sql
        first = self.now_s - YEAR_S - DAY_S
        per_day = 30 * self.shape.customers / 365
        chunk_days = max(7, min(400, int(2_500_000 / max(per_day, 1))))
        total = 0

        def load() -> int:
            nonlocal total
            t1 = first
            while t1 <= self.now_s:
                t2 = t1 + chunk_days * DAY_S
                branches = []
                for slot, name, column in SLOTS:
                    at = "t_q" if column is None else f"t_q + {column}"
                    present = "" if column is None else f" AND {column} IS NOT NULL"
                    branches.append(
                        f"SELECT m, c, props, {slot} AS slot, '{name}' AS name, "
                        f"{at} AS t FROM bench_messages WHERE t_q >= {t1 - MAX_LAG_S} "
                        f"AND t_q < {t2}{present}"
                    )
                total += self.run(
                    "INSERT INTO events (customer_id, message_id, type, name, properties, "
                    "context, occurred_at, received_at, source) "
                    f"SELECT x.c, 'sys-' || {s.pad('x.m')} || '-' || CAST(x.slot AS TEXT), "
                    f"'system', x.name, x.props, '{{}}', {s.ts('x.t')}, {s.ts('x.t')}, 'system' "
                    f"FROM ({' UNION ALL '.join(branches)}) x "
                    f"WHERE x.t >= {t1} AND x.t < {t2} AND x.t <= {self.now_s} "
                    "ORDER BY x.t, x.m, x.slot"
                )
                self.conn.commit()
                t1 = t2
            return total

        return self.without_indexes("events", load)

    def facts(self) -> int:
        return self.without_indexes(
            "message_facts", lambda: self.run(facts_sql(self.sql)), primary=True
        )

    def daily(self) -> int:
        return rebuild_daily(self.conn)

    def order_rollups(self) -> int:
        """``order_sequence``, ``order_days`` and ``order_nth_days`` by Rapport's own
        set-based ``rebuild`` (what migration 0014 fills an existing store with)."""
        return self.without_indexes(
            "order_sequence", lambda: rebuild_orders(self.conn), primary=True
        )

    def attribution(self) -> int:
        s = self.sql
        settings = load_attribution(self.conn)
        if settings.channels:
            raise RuntimeError("the benchmark credits with one window for every channel")
        origin = "message_key, channel, campaign_id, scenario_id, step, variant, day"
        self.run(
            s.scratch(
                "bench_touches",
                f"AS SELECT customer_id, {origin}, opened_at, clicked_at FROM message_facts "
                "WHERE opened_at IS NOT NULL OR clicked_at IS NOT NULL",
            )
        )
        self.run(
            s.scratch(
                "bench_orders",
                "AS SELECT id, customer_id, occurred_at FROM orders WHERE status = 'completed'",
            )
        )
        self.run("CREATE INDEX bench_orders_customer ON bench_orders (customer_id, occurred_at)")
        if s.pg:
            self.run("ANALYZE bench_touches")
            self.run("ANALYZE bench_orders")
        branches = []
        for model, column, days in (
            (1, "clicked_at", settings.click_days),
            (0, "opened_at", settings.open_days),
        ):
            if days <= 0:
                continue
            branches.append(
                f"SELECT o.id AS order_pk, o.customer_id, o.occurred_at, {model} AS is_click, "
                f"t.{column} AS touch_at, t.message_key, t.channel, t.campaign_id, t.scenario_id, "
                "t.step, t.variant, t.day FROM bench_touches t JOIN bench_orders o "
                f"ON o.customer_id = t.customer_id AND o.occurred_at >= t.{column} "
                f"AND o.occurred_at <= {s.plus_seconds(f't.{column}', days * DAY_S)} "
                f"WHERE t.{column} IS NOT NULL"
            )
        ranked = (
            "SELECT c.*, row_number() OVER (PARTITION BY order_pk ORDER BY is_click DESC, "
            f"touch_at DESC, message_key DESC) AS rn FROM ({' UNION ALL '.join(branches)}) c"
        )
        return self.run(
            "INSERT INTO order_attributions (order_pk, customer_id, occurred_at, message_key, "
            "channel, campaign_id, scenario_id, step, variant, message_day, model, touch_at) "
            "SELECT order_pk, customer_id, occurred_at, message_key, channel, campaign_id, "
            "scenario_id, step, variant, day, CASE WHEN is_click = 1 THEN 'click' ELSE 'open' "
            f"END, touch_at FROM ({ranked}) r WHERE rn = 1 ORDER BY order_pk"
        )

    def drop_scratch(self) -> None:
        for name in (
            "bench_touches",
            "bench_orders",
            "bench_messages",
            "bench_customers",
            "bench_sends",
        ):
            self.run(f"DROP TABLE IF EXISTS {name}")
        if not self.sql.pg:
            self.run("DROP TABLE IF EXISTS bench_numbers")
        else:
            self.run("RESET ALL")


def facts_sql(s: Sql) -> str:
    """message_facts from the status events in one statement: per message key, the first
    time of each outcome, opens and clicks; the customer, the origin and the day from the
    message's first event — what ``fold_message_events`` makes of events stored in time
    order. Only the key is read from every event's JSON; the origin from one per message."""
    names = ", ".join(f"'{n}'" for n in sorted(OUTCOME_OF_EVENT))
    outcome = {v: k for k, v in OUTCOME_OF_EVENT.items()}
    times = [f"{o}_at" for o in MESSAGE_OUTCOMES]
    firsts = ", ".join(
        f"min(CASE WHEN name = '{outcome[o]}' THEN occurred_at END) AS {o}_at"
        for o in MESSAGE_OUTCOMES
    )
    origin = ("channel", "campaign_id", "scenario_id", "step", "template_id", "variant")
    per_message = (
        f"SELECT k, min(id) AS first_id, {firsts}, "
        "sum(CASE WHEN name = 'Message Opened' THEN 1 ELSE 0 END) AS opens, "
        "sum(CASE WHEN name = 'Message Clicked' THEN 1 ELSE 0 END) AS clicks "
        f"FROM (SELECT id, name, occurred_at, {s.prop('message_id')} AS k FROM events "
        f"WHERE name IN ({names}) AND {s.is_text('message_id')} "
        f"AND {s.prop('message_id')} <> '' AND {s.is_text('channel')}) e GROUP BY k"
    )
    return (
        f"INSERT INTO message_facts (message_key, customer_id, {', '.join(origin)}, day, "
        f"{', '.join(times)}, opens, clicks) "
        "SELECT g.k, f.customer_id, "
        + ", ".join(s.text_prop(n, "f") for n in origin)
        + f", {s.day_of('f.occurred_at')}, {', '.join(f'g.{c}' for c in times)}, g.opens, "
        f"g.clicks FROM ({per_message}) g JOIN events f ON f.id = g.first_id"
    )


def build(
    engine: sa.Engine,
    shape: Shape,
    now: datetime,
    say: Callable[[str], None] = lambda _: None,
) -> Built:
    """Fill a freshly migrated, empty store; returns row counts and seconds per stage."""
    with engine.connect() as conn:
        b = Builder(conn, shape, now, say)
        b.stage("plan", b.prepare)
        b.built.counts["orders"] = b.stage("orders", b.orders)
        b.built.counts["messages"] = b.stage("messages (scratch)", b.messages)
        b.built.counts["events"] = b.stage("events", b.events)
        b.built.counts["customers"] = b.stage("customers", b.customers)
        b.built.counts["message_facts"] = b.stage("message_facts", b.facts)
        b.built.counts["message_daily"] = b.stage("message_daily", b.daily)
        b.built.counts["order_attributions"] = b.stage("order_attributions", b.attribution)
        b.built.counts["order_sequence"] = b.stage("order roll-ups", b.order_rollups)
        b.stage("drop scratch", b.drop_scratch)
        seconds = b.built.seconds
    started = time.perf_counter()
    # Statistics first: without them PostgreSQL reads each customer's previous order
    # backwards through the orders-by-time index (minutes at 100,000 customers).
    analyze(engine, vacuum=False)
    recompute_rfm(engine, now)
    recompute_lifecycle(engine, Pipeline(engine, SimulatedClock(now)), now)
    seconds["rfm + lifecycle"] = round(time.perf_counter() - started, 2)
    say(f"  rfm + lifecycle: done in {seconds['rfm + lifecycle']:.1f} s")
    started = time.perf_counter()
    analyze(engine)
    seconds["analyze"] = round(time.perf_counter() - started, 2)
    say(f"  analyze: done in {seconds['analyze']:.1f} s")
    with engine.connect() as conn:
        counts = b.built.counts
        counts["completed_orders"] = int(
            conn.exec_driver_sql(
                "SELECT count(*) FROM orders WHERE status = 'completed'"
            ).scalar_one()
        )
        counts["buyers"] = int(
            conn.exec_driver_sql(
                "SELECT count(*) FROM customers WHERE orders_count > 0"
            ).scalar_one()
        )
        t = current_thresholds(conn)
        b.built.thresholds = {
            "active_days": t.active_days,
            "lapsed_days": t.lapsed_days,
            "median_gap_days": t.median_gap_days,
            "source": t.source,
        }
    return b.built


def analyze(engine: sa.Engine, *, vacuum: bool = True) -> None:
    """Planner statistics (and on PostgreSQL the visibility map), as autovacuum would have
    left them long before anyone opened the dashboard."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "VACUUM (ANALYZE)" if vacuum else "ANALYZE"
            )
        else:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
