"""The segment benchmark's store: a year of a shop's history, written straight into the tables.

This is a benchmark fixture, not the ingest path (bench/ingest.py measures that): building a
million customers and twenty million events through the pipeline would take hours, and
what the segment benchmark needs is a store in the state the pipeline leaves behind. So
the rows are generated with NumPy and written in bulk (COPY on PostgreSQL, executemany in
large transactions on SQLite) into a schema created by the migrations, indexes included,
with every computed field consistent with the events:

* customers: ``events_count``, first/last seen, orders count, revenue and first/last order
  folded from their own events; birthdays, cities, email for logged-in visitors; RFM cells
  and lifecycle stages then computed by Rapport's own ``recompute_rfm`` and
  ``recompute_lifecycle`` from the orders;
* events in arrival (time) order, as a live store holds them, with the properties a shop's
  tracking plan sends (category on product events, order id and total on orders, campaign
  on message outcomes); ``event_counters`` per customer, name and UTC day; orders;
  identities (``anon-N``/``user-N``, the ids ``bench/workload.py`` sends); consents.

Generation goes by chunks of customers and keeps only compact NumPy columns of all events
(11 bytes an event, and an 8-byte sort index while they are written), which the events are
written from in time order and which the pandas baseline reads; no Python object lives
longer than one chunk.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import sqlalchemy as sa

from rapport.clock import SimulatedClock
from rapport.pipeline import Pipeline
from rapport.segments.lifecycle import recompute_lifecycle
from rapport.segments.rfm import recompute_rfm
from rapport.store.engine import create_engine
from rapport.store.migrate import upgrade

DAYS = 365
EPOCH_DAY = date(1970, 1, 1)

# Event names with their share of a shop's traffic (messages are the outcomes the
# messaging side records; Page Viewed is what /v1/page stores).
MIX: list[tuple[str, float]] = [
    ("Page Viewed", 0.24),
    ("Product Viewed", 0.30),
    ("Product List Filtered", 0.06),
    ("Product Added", 0.09),
    ("Cart Viewed", 0.05),
    ("Checkout Started", 0.04),
    ("Order Completed", 0.03),
    ("Message Sent", 0.10),
    ("Message Opened", 0.05),
    ("Message Clicked", 0.015),
    ("Signed In", 0.025),
]
NAMES = [name for name, _ in MIX]
CODE = {name: i for i, name in enumerate(NAMES)}
PRODUCT_EVENTS = ("Product Viewed", "Product Added", "Cart Viewed", "Checkout Started")
MESSAGE_EVENTS = ("Message Sent", "Message Opened", "Message Clicked")
CATEGORIES = ["shoes", "sneakers", "boots", "jeans", "t-shirts", "jackets", "socks", "belts"]
PRODUCTS = 2000  # product k is in category k % 8, as in bench/workload.py
CITIES = [
    "Moscow",
    "Saint Petersburg",
    "Novosibirsk",
    "Yekaterinburg",
    "Kazan",
    "Nizhny Novgorod",
    "Chelyabinsk",
    "Samara",
    "Omsk",
    "Rostov-on-Don",
    "Ufa",
    "Krasnoyarsk",
    "Voronezh",
    "Perm",
    "Volgograd",
]
CONSENT_STATUSES = ("subscribed", "unsubscribed")
# channel → (share subscribed, share unsubscribed); the rest never decided.
CONSENT_SHARES = {"email": (0.55, 0.10), "sms": (0.25, 0.05), "push": (0.20, 0.05)}
CONTEXT = '{"ip":"10.0.0.1","library":{"name":"analytics.js","version":"4.1.0"},"locale":"ru-RU"}'


def now_hour() -> datetime:
    """The run's "now": this hour, so a server on the system clock sees the same store."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass
class Events:
    """Compact columns of every generated event, in generation (customer) order.

    ``t`` is seconds since ``start``; ``day`` the day index 0..364 (364 is today); ``item``
    the product (product events), category (list filters) or campaign week (messages).
    Orders keep their event position, total and the order id ``o<position>``.
    """

    customer: list[np.ndarray] = field(default_factory=list)
    name: list[np.ndarray] = field(default_factory=list)
    t: list[np.ndarray] = field(default_factory=list)
    item: list[np.ndarray] = field(default_factory=list)
    order_pos: list[np.ndarray] = field(default_factory=list)
    order_total: list[np.ndarray] = field(default_factory=list)

    def frozen(self) -> dict[str, np.ndarray]:
        return {
            "customer": np.concatenate(self.customer),
            "name": np.concatenate(self.name),
            "t": np.concatenate(self.t),
            "item": np.concatenate(self.item),
            "order_pos": np.concatenate(self.order_pos),
            "order_total": np.concatenate(self.order_total),
        }


@dataclass
class Customers:
    """Compact columns of the customers (and their consents) for the pandas baseline."""

    id: list[np.ndarray] = field(default_factory=list)
    birthday: list[np.ndarray] = field(default_factory=list)  # days since 1970, -1 unknown
    city: list[np.ndarray] = field(default_factory=list)  # index into CITIES, -1 unknown
    consent: dict[str, list[np.ndarray]] = field(
        default_factory=lambda: {ch: [] for ch in CONSENT_SHARES}
    )  # 0 none, 1 subscribed, 2 unsubscribed

    def frozen(self) -> dict[str, np.ndarray]:
        out = {
            "id": np.concatenate(self.id),
            "birthday": np.concatenate(self.birthday),
            "city": np.concatenate(self.city),
        }
        for ch, parts in self.consent.items():
            out[f"consent_{ch}"] = np.concatenate(parts)
        return out


class Clocks:
    """Timestamps as the stores keep them, built from lookup tables rather than per row.

    SQLite keeps UTC text in SQLAlchemy's format; PostgreSQL accepts the same text for
    ``timestamptz`` in a session whose time zone is UTC.
    """

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.today = now.date()
        self.start_day = self.today - timedelta(days=DAYS - 1)
        self.start = datetime.combine(self.start_day, datetime.min.time(), tzinfo=UTC)
        self.start_s = int(self.start.timestamp())
        self.now_t = int((now - self.start).total_seconds())
        self.day_text = np.array(
            [(self.start_day + timedelta(days=d)).isoformat() + " " for d in range(DAYS)],
            dtype=object,
        )
        self.time_text = np.array(
            [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.000000" for s in range(86400)],
            dtype=object,
        )

    def text(self, t: np.ndarray) -> np.ndarray:
        """Seconds since ``start`` → timestamp text (an object array)."""
        return self.day_text[t // 86400] + self.time_text[t % 86400]

    def text_or_none(self, t: np.ndarray) -> list[str | None]:
        out = self.text(np.where(t >= 0, t, 0))
        out[t < 0] = None
        return out.tolist()


class Generator:
    """Deterministic chunks of customers with their history (one seed per chunk)."""

    def __init__(self, clocks: Clocks, seed: int = 20260301) -> None:
        self.clocks = clocks
        self.seed = seed
        self.events = Events()
        self.customers = Customers()
        self.generated = 0  # events so far (order ids are event positions)

    def chunk(self, first_id: int, n: int, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, index])
        ids = np.arange(first_id, first_id + n, dtype=np.int64)
        # ~20 events a customer, overdispersed: many light visitors, a few heavy ones.
        n_events = np.minimum(1 + rng.negative_binomial(1.2, 1.2 / 20.2, n), 600)
        first_day = rng.integers(0, DAYS, n)
        # Recent activity is likelier than old: a shop keeps some of its customers.
        span = DAYS - first_day
        last_day = DAYS - 1 - np.floor(span * rng.random(n) ** 1.5).astype(np.int64)
        last_day = np.maximum(last_day, first_day)
        # Events come in sessions of ~6 on a few days between the first and the last.
        sessions = np.maximum(1, np.round(n_events / 6)).astype(np.int64)
        s_owner = np.repeat(np.arange(n), sessions)
        s_start = np.concatenate(([0], np.cumsum(sessions)[:-1]))
        s_day = first_day[s_owner] + np.floor(
            rng.random(len(s_owner)) * (last_day - first_day + 1)[s_owner]
        ).astype(np.int64)
        s_day[s_start] = first_day
        s_day[s_start + sessions - 1] = last_day
        e_owner = np.repeat(np.arange(n), n_events)
        e_sess = s_start[e_owner] + np.floor(rng.random(len(e_owner)) * sessions[e_owner]).astype(
            np.int64
        )
        e_day = s_day[e_sess]
        today_limit = max(1, self.clocks.now_t - (DAYS - 1) * 86400)
        limit = np.where(e_day == DAYS - 1, today_limit, 86400)
        e_t = e_day * 86400 + np.floor(rng.random(len(e_day)) * limit).astype(np.int64)
        probs = np.array([p for _, p in MIX])
        e_name = rng.choice(len(NAMES), size=len(e_owner), p=probs / probs.sum()).astype(np.int8)
        # Sorted by customer, then time: reduceat below needs runs per customer.
        order = np.lexsort((e_t, e_owner))
        e_owner, e_t, e_name, e_day = e_owner[order], e_t[order], e_name[order], e_day[order]
        e_item = np.zeros(len(e_owner), dtype=np.int16)
        product = np.isin(e_name, [CODE[x] for x in PRODUCT_EVENTS])
        e_item[product] = rng.integers(0, PRODUCTS, int(product.sum()))
        filt = e_name == CODE["Product List Filtered"]
        e_item[filt] = rng.integers(0, len(CATEGORIES), int(filt.sum()))
        msg = np.isin(e_name, [CODE[x] for x in MESSAGE_EVENTS])
        e_item[msg] = e_day[msg] // 7  # a weekly campaign

        starts = np.concatenate(([0], np.cumsum(n_events)[:-1]))
        first_seen = e_t[starts]
        last_seen = np.maximum.reduceat(e_t, starts)
        is_order = e_name == CODE["Order Completed"]
        o_idx = np.flatnonzero(is_order)
        o_total = np.round(rng.lognormal(4.0, 0.7, len(o_idx)), 2)
        o_owner = e_owner[o_idx]
        orders_count = np.bincount(o_owner, minlength=n)
        revenue = np.round(np.bincount(o_owner, weights=o_total, minlength=n), 2)
        never = np.iinfo(np.int64).max
        first_order = np.full(n, never, dtype=np.int64)
        last_order = np.full(n, -1, dtype=np.int64)
        np.minimum.at(first_order, o_owner, e_t[o_idx])
        np.maximum.at(last_order, o_owner, e_t[o_idx])
        first_order[orders_count == 0] = -1

        birthday = np.where(
            rng.random(n) < 0.85,
            rng.integers(
                (date(1955, 1, 1) - EPOCH_DAY).days, (date(2007, 12, 31) - EPOCH_DAY).days, n
            ),
            -1,
        )
        city_w = 1 / np.arange(1, len(CITIES) + 1)
        city = np.where(
            rng.random(n) < 0.9,
            rng.choice(len(CITIES), size=n, p=city_w / city_w.sum()),
            -1,
        )
        consent = {}
        for ch, (sub, unsub) in CONSENT_SHARES.items():
            u = rng.random(n)
            consent[ch] = np.where(u < sub, 1, np.where(u < sub + unsub, 2, 0)).astype(np.int8)
        # Counters: one row per (customer, name, UTC day) with the count.
        key = (e_owner * len(NAMES) + e_name) * DAYS + e_day
        ukey, counts = np.unique(key, return_counts=True)

        positions = self.generated + np.arange(len(e_owner), dtype=np.int64)
        self.events.customer.append(ids[e_owner].astype(np.int32))
        self.events.name.append(e_name)
        self.events.t.append(e_t.astype(np.int32))
        self.events.item.append(e_item)
        self.events.order_pos.append(positions[o_idx])
        self.events.order_total.append(o_total)
        self.customers.id.append(ids)
        self.customers.birthday.append(birthday)
        self.customers.city.append(city)
        for ch in CONSENT_SHARES:
            self.customers.consent[ch].append(consent[ch])
        self.generated += len(e_owner)
        return {
            "ids": ids,
            "events_count": n_events,
            "first_seen": first_seen,
            "last_seen": last_seen,
            "orders_count": orders_count,
            "revenue": revenue,
            "first_order": first_order,
            "last_order": last_order,
            "birthday": birthday,
            "city": city,
            "consent": consent,
            "counters": (
                ids[ukey // (len(NAMES) * DAYS)],
                (ukey // DAYS) % len(NAMES),
                ukey % DAYS,
                counts,
            ),
            "orders": (positions[o_idx], ids[o_owner], o_total, e_t[o_idx]),
        }


# ------------------------------------------------------------------------------ rows


def customer_rows(c: dict[str, Any], clocks: Clocks) -> Iterator[tuple[Any, ...]]:
    ids = c["ids"]
    v = ids - 1
    email = [f"user{x}@example.com" if x % 3 == 0 else None for x in v.tolist()]
    bday = c["birthday"]
    bday_text = np.datetime_as_string(np.where(bday >= 0, bday, 0).astype("datetime64[D]"))
    bdays = [
        b if ok else None for b, ok in zip(bday_text.tolist(), (bday >= 0).tolist(), strict=True)
    ]
    cities = [CITIES[i] if i >= 0 else None for i in c["city"].tolist()]
    created = clocks.text(c["first_seen"]).tolist()
    updated = clocks.text(np.full(len(ids), clocks.now_t)).tolist()
    return zip(
        ids.tolist(),
        created,
        updated,
        ["{}"] * len(ids),
        email,
        bdays,
        cities,
        ["RU"] * len(ids),
        c["events_count"].tolist(),
        created,
        clocks.text(c["last_seen"]).tolist(),
        c["orders_count"].tolist(),
        c["revenue"].tolist(),
        clocks.text_or_none(c["first_order"]),
        clocks.text_or_none(c["last_order"]),
        strict=True,
    )


CUSTOMER_COLUMNS = (
    "id, created_at, updated_at, traits, email, birthday, city, country, events_count, "
    "first_seen_at, last_seen_at, orders_count, revenue, first_order_at, last_order_at"
)


def identity_rows(c: dict[str, Any], clocks: Clocks) -> list[tuple[Any, ...]]:
    """``anon-N`` for everyone, ``user-N`` and the email for logged-in visitors (N % 3 == 0)."""
    rows: list[tuple[Any, ...]] = []
    created = clocks.text(c["first_seen"]).tolist()
    for cid, at in zip(c["ids"].tolist(), created, strict=True):
        v = cid - 1
        rows.append((cid, "anonymous_id", f"anon-{v}", at))
        if v % 3 == 0:
            rows.append((cid, "user_id", f"user-{v}", at))
            rows.append((cid, "email", f"user{v}@example.com", at))
    return rows


def consent_rows(c: dict[str, Any], clocks: Clocks) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    ids = c["ids"]
    created = clocks.text(c["first_seen"])
    for ch, status in c["consent"].items():
        pick = np.flatnonzero(status > 0)
        for cid, s, at in zip(
            ids[pick].tolist(), status[pick].tolist(), created[pick].tolist(), strict=True
        ):
            rows.append((cid, ch, CONSENT_STATUSES[s - 1], "import", at, "none"))
    return rows


def counter_rows(c: dict[str, Any], clocks: Clocks) -> Iterator[tuple[Any, ...]]:
    cid, name, day, n = c["counters"]
    names = np.array(NAMES, dtype=object)[name]
    days = np.array(
        [(clocks.start_day + timedelta(days=d)).isoformat() for d in range(DAYS)], dtype=object
    )[day]
    return zip(cid.tolist(), names.tolist(), days.tolist(), n.tolist(), strict=True)


def order_rows(c: dict[str, Any], clocks: Clocks) -> Iterator[tuple[Any, ...]]:
    pos, cid, total, t = c["orders"]
    at = clocks.text(t).tolist()
    return zip(
        [f"o{p}" for p in pos.tolist()],
        cid.tolist(),
        ["completed"] * len(pos),
        total.tolist(),
        ["USD"] * len(pos),
        ["online"] * len(pos),
        at,
        at,
        strict=True,
    )


class Properties:
    """Event properties as JSON text, from lookup tables (orders are formatted per row)."""

    def __init__(self) -> None:
        self.product = np.array(
            [
                f'{{"product_id":"p{k}","name":"Product {k}","category":"{CATEGORIES[k % 8]}",'
                f'"price":{5 + (k * 37) % 295}.99}}'
                for k in range(PRODUCTS)
            ],
            dtype=object,
        )
        self.category = np.array(
            [
                f'{{"category":"{c}","filters":[{{"type":"size","value":"42"}}]}}'
                for c in CATEGORIES
            ],
            dtype=object,
        )
        self.campaign = np.array(
            [f'{{"campaign_id":"weekly-{w:02d}","channel":"email"}}' for w in range(60)],
            dtype=object,
        )

    def build(
        self, name: np.ndarray, item: np.ndarray, pos: np.ndarray, orders: dict[str, np.ndarray]
    ) -> np.ndarray:
        out = np.full(len(name), '{"path":"/catalog"}', dtype=object)
        product = np.isin(name, [CODE[x] for x in PRODUCT_EVENTS])
        out[product] = self.product[item[product]]
        filt = name == CODE["Product List Filtered"]
        out[filt] = self.category[item[filt]]
        msg = np.isin(name, [CODE[x] for x in MESSAGE_EVENTS])
        out[msg] = self.campaign[item[msg]]
        out[name == CODE["Signed In"]] = "{}"
        is_order = np.flatnonzero(name == CODE["Order Completed"])
        if len(is_order):
            at = np.searchsorted(orders["order_pos"], pos[is_order])
            totals = orders["order_total"][at]
            out[is_order] = [
                f'{{"order_id":"o{p}","total":{t},"currency":"USD"}}'
                for p, t in zip(pos[is_order].tolist(), totals.tolist(), strict=True)
            ]
        return out


EVENT_COLUMNS = (
    "customer_id, message_id, type, name, properties, context, occurred_at, received_at, source"
)


def event_rows(
    ev: dict[str, np.ndarray],
    idx: np.ndarray,
    rank0: int,
    clocks: Clocks,
    props: Properties,
) -> Iterator[tuple[Any, ...]]:
    """Rows of the events at positions ``idx`` (already in time order)."""
    name = ev["name"][idx]
    at = clocks.text(ev["t"][idx].astype(np.int64)).tolist()
    types = np.where(name == CODE["Page Viewed"], "page", "track").tolist()
    return zip(
        ev["customer"][idx].tolist(),
        [f"m{r:011d}" for r in range(rank0, rank0 + len(idx))],
        types,
        np.array(NAMES, dtype=object)[name].tolist(),
        props.build(name, ev["item"][idx], idx, ev).tolist(),
        [CONTEXT] * len(idx),
        at,
        at,
        ["api"] * len(idx),
        strict=True,
    )


# ------------------------------------------------------------------------------ writers


class Writer:
    """Bulk writes to one store; ``sql`` statements name columns as the COPY lists do."""

    name: str

    def insert(self, table: str, columns: str, rows: Any) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SqliteWriter(Writer):
    def __init__(self, path: str) -> None:
        self.name = "sqlite"
        self.conn = sqlite3.connect(path, isolation_level=None)
        # A fixture build: a crash means building again, so durability is not needed here.
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute("PRAGMA cache_size=-2000000")
        self.conn.execute("BEGIN")

    def insert(self, table: str, columns: str, rows: Any) -> None:
        marks = ",".join("?" * (columns.count(",") + 1))
        self.conn.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)

    def commit(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.execute("BEGIN")

    def close(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()


class PostgresWriter(Writer):
    def __init__(self, url: str) -> None:
        self.name = "postgres"
        self.conn = psycopg.connect(url.replace("+psycopg", ""))
        self.conn.execute("SET TIME ZONE 'UTC'")
        self.conn.execute("SET synchronous_commit = off")

    def insert(self, table: str, columns: str, rows: Any) -> None:
        with self.conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.commit()
        self.conn.execute(
            "SELECT setval(pg_get_serial_sequence('customers', 'id'), "
            "(SELECT max(id) FROM customers))"
        )
        self.conn.commit()
        self.conn.close()


# ------------------------------------------------------------------------------ the build


@dataclass
class Built:
    """What the benchmark keeps from the build: counts and the compact columns."""

    customers: int
    events: int
    counters: int
    orders: int
    seconds: dict[str, float]
    events_columns: dict[str, np.ndarray]
    customer_columns: dict[str, np.ndarray]


Progress = Callable[[str, int, int], None]  # (task, advance, total)


def build(
    urls: dict[str, str],
    n_customers: int,
    now: datetime,
    progress: Progress,
    *,
    chunk: int = 20_000,
    event_chunk: int = 250_000,
) -> Built:
    """Create the schema in every store, load the same history into each, then ANALYZE."""
    import time

    clocks = Clocks(now)
    gen = Generator(clocks)
    for url in urls.values():
        engine = create_engine(url)
        upgrade(engine)
        engine.dispose()
    writers: list[Writer] = []
    for name, url in urls.items():
        if name == "sqlite":
            writers.append(SqliteWriter(sa.make_url(url).database or ""))
        else:
            writers.append(PostgresWriter(url))
    seconds: dict[str, float] = {w.name: 0.0 for w in writers}
    counters = orders = 0
    for index, first in enumerate(range(1, n_customers + 1, chunk)):
        size = min(chunk, n_customers + 1 - first)
        c = gen.chunk(first, size, index)
        counters += len(c["counters"][0])
        orders += len(c["orders"][0])
        for w in writers:
            started = time.perf_counter()
            w.insert("customers", CUSTOMER_COLUMNS, customer_rows(c, clocks))
            w.insert("identities", "customer_id, kind, value, created_at", identity_rows(c, clocks))
            w.insert(
                "consents",
                "customer_id, channel, status, source, updated_at, double_opt_in",
                consent_rows(c, clocks),
            )
            w.insert("event_counters", "customer_id, name, day, count", counter_rows(c, clocks))
            w.insert(
                "orders",
                "order_id, customer_id, status, total, currency, channel, occurred_at, updated_at",
                order_rows(c, clocks),
            )
            w.commit()
            seconds[w.name] += time.perf_counter() - started
        progress("customers", size, n_customers)

    ev = gen.events.frozen()
    total = len(ev["t"])
    order = np.argsort(ev["t"], kind="stable")  # arrival order, as a live store has them
    props = Properties()
    for start in range(0, total, event_chunk):
        idx = order[start : start + event_chunk]
        for w in writers:
            started = time.perf_counter()
            w.insert("events", EVENT_COLUMNS, event_rows(ev, idx, start, clocks, props))
            w.commit()
            seconds[w.name] += time.perf_counter() - started
        progress("events", len(idx), total)
    for w in writers:
        w.close()

    for name, url in urls.items():
        started = time.perf_counter()
        engine = create_engine(url)
        # The RFM cells and lifecycle stages by Rapport's own code, from the orders loaded.
        recompute_rfm(engine, now)
        recompute_lifecycle(engine, Pipeline(engine, SimulatedClock(now)), now)
        analyze(engine)
        engine.dispose()
        seconds[name] += time.perf_counter() - started
        progress("derived", 1, len(urls))
    return Built(
        customers=n_customers,
        events=total,
        counters=counters,
        orders=orders,
        seconds=seconds,
        events_columns=ev,
        customer_columns=gen.customers.frozen(),
    )


def analyze(engine: sa.Engine) -> None:
    """Planner statistics (and, on PostgreSQL, the visibility map) as a running store has:
    autovacuum would have done this long before anyone counted a segment."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("VACUUM (ANALYZE)")
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()


def salt_number(salt: str) -> int:
    """The bucket salt as in docs/segments.md (kept here so the baseline stays independent)."""
    return int.from_bytes(hashlib.sha256(salt.encode()).digest()[:8], "big") % 2_147_483_647
