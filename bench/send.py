"""Sending benchmark: personalised e-mails rendered and delivered to a local SMTP server.

Rapport's path, per message: ``compose_many`` (the stored, compiled MJML template rendered
for each customer's card with three catalog products, click tracking, the open pixel, the
unsubscribe and preference links), ``enqueue`` into the outbox in chunks of 500 as a
campaign does, then the dispatcher claims the rows, ``SmtpBackend`` builds the MIME (and
the DKIM signature) and sends, and the outcome is written back to the outbox. Timed from
the first compose to the last status written, for 1 and 4 SMTP connections, without DKIM
and with an RSA-2048 key, and once more (4 connections) with the status events recorded
on every card through the pipeline, as a running server does.

Two baselines, measured in the same run next to every Rapport run, sending the same
messages to the same server over the same number of connections: a plain aiosmtplib loop
of ``sendmail`` with the messages flattened to bytes before the clock starts (the
transport alone: the limit), and one of ``send_message`` with pre-built ``EmailMessage``
objects (which flattens each message in the loop).

The server is aiosmtpd in its own process (on its own core when there are two), so it does
not share the sender's interpreter lock. Its handler only finds each message's Message-ID
and counts it, which is how duplicates and losses are detected; its CPU time is reported
so a saturated server would show.

Last, a real campaign (``create_campaign``, ``start_campaign``, ``send_campaign``) to a
segment of 100,000 customers (``--quick``: 2,000), sent while a dispatch loop drains the
outbox in another thread; at the end the server must have seen exactly one copy of every
message and every outbox row must be ``sent``.

Prints tables and writes bench/results/send.json.

    python bench/send.py                 # full run (~30 minutes, a third of it the campaigns)
    python bench/send.py --quick         # under a minute
    python bench/send.py --stores sqlite --messages 3000 --reps 5 --recipients 0
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import html as html_lib
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiosmtplib
import numpy as np
import orjson
import psycopg
import sqlalchemy as sa
import uvloop
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.postgres_server import server_url  # noqa: E402

from rapport.catalog.products import upsert_categories, upsert_products  # noqa: E402
from rapport.clock import SystemClock  # noqa: E402
from rapport.demo.catalog import build_catalog, category_records  # noqa: E402
from rapport.messaging.campaign_send import send_campaign  # noqa: E402
from rapport.messaging.campaign_start import start_campaign  # noqa: E402
from rapport.messaging.campaigns import create_campaign  # noqa: E402
from rapport.messaging.channels.base import OutgoingMessage  # noqa: E402
from rapport.messaging.channels.email_mime import (  # noqa: E402
    DkimKey,
    build_email,
    message_id,
    unsubscribe_headers,
)
from rapport.messaging.channels.smtp import SmtpBackend, SmtpSettings  # noqa: E402
from rapport.messaging.compose import (  # noqa: E402
    Origin,
    Recipient,
    Tracking,
    compose_many,
)
from rapport.messaging.dispatcher import Dispatcher, RecordEvents  # noqa: E402
from rapport.messaging.outbox import Event, counts_by_status, enqueue  # noqa: E402
from rapport.messaging.templates.render import product_list  # noqa: E402
from rapport.messaging.templates.store import StoredTemplate, create_template  # noqa: E402
from rapport.messaging.tracking import Links  # noqa: E402
from rapport.pipeline import Pipeline  # noqa: E402
from rapport.segments.definitions import create_segment  # noqa: E402
from rapport.segments.membership import SegmentIndex  # noqa: E402
from rapport.segments.sweep import sweep  # noqa: E402
from rapport.store.engine import create_engine, writing  # noqa: E402
from rapport.store.migrate import upgrade  # noqa: E402
from rapport.store.tables import consents, customers, identities, outbox  # noqa: E402
from rapport.worker import DispatchLoop  # noqa: E402

console = Console(width=max(140, Console().width))

TARGET_RATIO = 0.5  # of the plain loop, without DKIM
SENDER = "Shop <news@shop.example>"
SENDER_ADDRESS = "news@shop.example"
LINKS = Links("https://crm.shop.example", b"bench-signing-key-0123456789abcdef")
CHUNK = 500  # customers composed and queued per transaction, as a campaign does

TEMPLATE_RU = """<mjml>
<mj-head>
  <mj-title>{{ customer.first_name }}, подборка для вас</mj-title>
  <mj-attributes><mj-all font-family="Helvetica, Arial, sans-serif" /></mj-attributes>
  <mj-style>.price div { color: #c0392b !important; font-weight: bold }</mj-style>
</mj-head>
<mj-body background-color="#f4f4f4">
  <mj-section background-color="#ffffff"><mj-column>
    <mj-image src="https://shop.example/img/logo.png" href="https://shop.example/" width="120px" alt="Shop" />
    <mj-text font-size="18px">{{ customer.first_name }}, мы подобрали для вас {{ products|length }} {{ products|length|plural("вещь", "вещи", "вещей") }}</mj-text>
  </mj-column></mj-section>
  {% for p in products %}
  <mj-section background-color="#ffffff"><mj-column width="40%">
    <mj-image src="{{ p.image_url }}" alt="{{ p.name }}" href="{{ p.url }}" />
  </mj-column><mj-column width="60%">
    <mj-text font-size="16px">{{ p.name }}</mj-text>
    <mj-text css-class="price">{{ p.price|money(p.currency, 0) }}</mj-text>
    <mj-button href="{{ p.url }}" background-color="#222222">Купить</mj-button>
  </mj-column></mj-section>
  {% endfor %}
  <mj-section><mj-column>
    <mj-text font-size="11px" color="#888888">Вы получили это письмо, потому что подписаны на новости магазина{% if customer.city %} ({{ customer.city }}){% endif %}.
      <a href="{{ preferences_url }}">Настройки рассылок</a> · <a href="{{ unsubscribe_url }}">Отписаться</a></mj-text>
  </mj-column></mj-section>
</mj-body>
</mjml>"""

TEMPLATE_EN = (
    TEMPLATE_RU.replace("подборка для вас", "picked for you")
    .replace(
        'мы подобрали для вас {{ products|length }} {{ products|length|plural("вещь", "вещи", '
        '"вещей") }}',
        'we picked {{ products|length }} {{ products|length|plural("item", "items") }} for you',
    )
    .replace("Купить", "Buy")
    .replace(
        "Вы получили это письмо, потому что подписаны на новости магазина",
        "You get this because you subscribed to the shop's news",
    )
    .replace("Настройки рассылок", "Preferences")
    .replace("Отписаться", "Unsubscribe")
)


_LOOP = re.compile(r"\{% for p in products %\}(.*?)\{% endfor %\}", re.DOTALL)


def featured(source: str, chosen: Sequence[dict[str, Any]]) -> str:
    """The template with three fixed product blocks, for a broadcast: a campaign sends
    everyone the same featured products (and gives templates no ``products``)."""
    block = _LOOP.search(source)
    assert block is not None
    blocks = []
    for product in chosen:
        body = block.group(1)
        for field in ("image_url", "name", "url"):
            body = body.replace(f"{{{{ p.{field} }}}}", html_lib.escape(str(product[field])))
        body = body.replace("p.price|money(p.currency, 0)", f"{product['price']}|money('RUB', 0)")
        blocks.append(body)
    whole = source[: block.start()] + "".join(blocks) + source[block.end() :]
    return whole.replace("products|length", str(len(chosen)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _two_cores() -> bool:
    return hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2


# ------------------------------------------------------------------------------ the server

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


class Sink:
    """An aiosmtpd handler that keeps nothing but a count per Message-ID.

    Finding the header is all it parses, so the server costs as little as aiosmtpd allows
    and the count at the end shows lost and duplicated messages.
    """

    def __init__(self) -> None:
        self.seen: dict[bytes, int] = {}
        self.received = 0
        self.without_id = 0

    def reset(self) -> None:
        self.seen, self.received, self.without_id = {}, 0, 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content or b""
        end = data.find(b"\r\n\r\n")
        found = _MESSAGE_ID.search(data, 0, end if end >= 0 else len(data))
        self.received += 1
        if found is None:
            self.without_id += 1
        else:
            key = found.group(1)
            self.seen[key] = self.seen.get(key, 0) + 1
        return "250 2.0.0 Ok: queued"

    def stats(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "distinct": len(self.seen),
            "duplicates": sum(n - 1 for n in self.seen.values() if n > 1),
            "without_id": self.without_id,
            "cpu_s": time.process_time(),
        }


def _serve(port: int, commands: Connection, pin: bool, uv: bool = True) -> None:
    """The server process: aiosmtpd on its own event loop thread, commands on the pipe."""
    from aiosmtpd.controller import Controller

    if pin:
        os.sched_setaffinity(0, {0})
    sink = Sink()
    # uvloop: the server's own event loop costs less, which keeps the server further from
    # being the limit it is there to measure.
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=port,
        loop=uvloop.new_event_loop() if uv else None,
        decode_data=False,
    )
    controller.start()
    commands.send("ready")
    while True:
        command = commands.recv()
        if command == "stats":
            # Read on the loop's thread, so the counts are never half-updated.
            fut = asyncio.run_coroutine_threadsafe(_stats(sink), controller.loop)
            commands.send(fut.result())
        elif command == "reset":
            controller.loop.call_soon_threadsafe(sink.reset)
            commands.send("ok")
        else:
            controller.stop()
            commands.send("stopped")
            return


async def _stats(sink: Sink) -> dict[str, Any]:
    return sink.stats()


class SinkServer:
    """The counting SMTP server in a separate process (spawned: no inherited state)."""

    def __init__(self, uv: bool = True) -> None:
        self.port = _free_port()
        ctx = mp.get_context("spawn")
        self._pipe, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve, args=(self.port, child, _two_cores(), uv), daemon=True
        )

    def __enter__(self) -> SinkServer:
        self._proc.start()
        if not self._pipe.poll(60) or self._pipe.recv() != "ready":
            raise RuntimeError("the SMTP server process did not start")
        return self

    def _ask(self, command: str) -> Any:
        self._pipe.send(command)
        return self._pipe.recv()

    def stats(self) -> dict[str, Any]:
        return dict(self._ask("stats"))

    def reset(self) -> None:
        self._ask("reset")

    def __exit__(self, *exc: object) -> None:
        try:
            self._ask("stop")
        finally:
            self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.terminate()


# ------------------------------------------------------------------------------ the store


@dataclass
class Store:
    name: str
    engine: sa.Engine
    customer_ids: list[int]
    products: list[dict[str, Any]]
    template: StoredTemplate
    broadcast: StoredTemplate  # the campaign's: the same three featured products for all


_FIRST = ("Анна", "Мария", "Ольга", "Иван", "Дмитрий", "Сергей", "Emma", "Oliver", "Sophie")
_LAST = ("Иванова", "Смирнов", "Кузнецова", "Попов", "Соколова", "Brown", "Taylor", "Wilson")
_CITIES = (
    ("Москва", "Europe/Moscow", "ru-RU"),
    ("Санкт-Петербург", "Europe/Moscow", "ru-RU"),
    ("Казань", "Europe/Moscow", "ru-RU"),
    ("Новосибирск", "Asia/Novosibirsk", "ru-RU"),
    ("Владивосток", "Asia/Vladivostok", "ru-RU"),
    ("London", "Europe/London", "en-GB"),
)


def build_store(name: str, url: str, n: int, now: datetime) -> Store:
    """A store with the demo catalog, ``n`` customers with e-mail, consent and history
    fields (a fixture written straight into the tables), and the template, compiled."""
    engine = create_engine(url)
    upgrade(engine)
    rng = np.random.default_rng(7)
    catalog = [p.record() for p in build_catalog(rng, 1)]
    with writing(engine) as conn:
        upsert_categories(conn, category_records())
        upsert_products(conn, catalog, now)
        template = create_template(
            conn,
            name="picked for you",
            channel="email",
            kind="mjml",
            default_locale="ru",
            variants={
                "ru": {
                    "subject": "{{ customer.first_name }}, подборка для вас",
                    "body": TEMPLATE_RU,
                },
                "en": {"subject": "{{ customer.first_name }}, picked for you", "body": TEMPLATE_EN},
            },
            now=now,
        )
        products = product_list(conn, [p["id"] for p in catalog])
        chosen = products[:3]
        broadcast = create_template(
            conn,
            name="featured",
            channel="email",
            kind="mjml",
            default_locale="ru",
            variants={
                "ru": {
                    "subject": "{{ customer.first_name }}, новинки недели",
                    "body": featured(TEMPLATE_RU, chosen),
                },
                "en": {
                    "subject": "{{ customer.first_name }}, this week's picks",
                    "body": featured(TEMPLATE_EN, chosen),
                },
            },
            now=now,
        )
    for start in range(0, n, 10_000):
        rows = []
        for i in range(start, min(n, start + 10_000)):
            city, tz, locale = _CITIES[i % len(_CITIES)]
            orders = int(rng.poisson(1.5))
            last_order = now - timedelta(days=int(rng.integers(1, 400))) if orders else None
            rows.append(
                {
                    "created_at": now - timedelta(days=400),
                    "updated_at": now,
                    "first_name": _FIRST[i % len(_FIRST)],
                    "last_name": _LAST[(i // 7) % len(_LAST)],
                    "email": f"customer{i + 1}@example.com",
                    "birthday": date(1970 + i % 40, 1 + i % 12, 1 + i % 28),
                    "city": city,
                    "country": "GB" if locale == "en-GB" else "RU",
                    "timezone": tz,
                    "locale": locale,
                    "traits": {"plan": "basic"},
                    "events_count": 20,
                    "first_seen_at": now - timedelta(days=400),
                    "last_seen_at": now - timedelta(days=int(rng.integers(0, 60))),
                    "orders_count": orders,
                    "revenue": float(orders * 4990),
                    "first_order_at": last_order,
                    "last_order_at": last_order,
                }
            )
        with writing(engine) as conn:
            ids = conn.execute(customers.insert().returning(customers.c.id), rows).scalars().all()
            conn.execute(
                identities.insert(),
                [
                    {"customer_id": cid, "kind": "email", "value": r["email"], "created_at": now}
                    for cid, r in zip(ids, rows, strict=True)
                ],
            )
            conn.execute(
                consents.insert(),
                [
                    {
                        "customer_id": cid,
                        "channel": "email",
                        "status": "subscribed",
                        "source": "bench",
                        "updated_at": now,
                    }
                    for cid in ids
                ],
            )
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
        all_ids = list(conn.execute(sa.select(customers.c.id).order_by(customers.c.id)).scalars())
    return Store(name, engine, [int(i) for i in all_ids], products, template, broadcast)


def _drop_database(admin: str, db: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


@contextmanager
def stores(names: Sequence[str], n: int, tmp: str, now: datetime) -> Iterator[list[Store]]:
    """A fresh database per store; the PostgreSQL one is dropped at the end."""
    made: list[Store] = []
    drops: list[Callable[[], None]] = []
    try:
        for name in names:
            started = time.perf_counter()
            if name == "sqlite":
                url = f"sqlite:///{tmp}/send.db"
            else:
                admin = server_url().replace("+psycopg", "")
                db = f"rapport_bench_send_{os.getpid()}"
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
                    conn.execute(f'CREATE DATABASE "{db}"')

                drops.append(functools.partial(_drop_database, admin, db))
                url = f"{admin.rpartition('/')[0]}/{db}"
            made.append(build_store(name, url, n, now))
            console.print(
                f"[bold]{name}[/bold]: {n:,} customers, {len(made[-1].products)} products "
                f"({time.perf_counter() - started:.1f} s to build)"
            )
        yield made
    finally:
        for store in made:
            store.engine.dispose()
        for drop in drops:
            drop()


def clear_outbox(store: Store) -> None:
    """An empty outbox, and the previous run's garbage gone before the clock starts: a WAL
    checkpoint or an autovacuum of ~100 MB of deleted rows landing inside the next timed
    run was most of the run-to-run noise."""
    with writing(store.engine) as conn:
        conn.execute(outbox.delete())
    with store.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "VACUUM ANALYZE outbox"
            )


# ------------------------------------------------------------------------------ Rapport


def picks(store: Store, customer_id: int) -> list[dict[str, Any]]:
    """Three catalog products for a customer (a recommender's answer, chosen by id here)."""
    n = len(store.products)
    return [store.products[(customer_id * 7 + k * 31) % n] for k in range(3)]


def compose_and_queue(
    store: Store,
    ids: Sequence[int],
    prefix: str,
    now: datetime,
    record: RecordEvents | None = None,
) -> None:
    """What a campaign does: compose each recipient's message and queue them in chunks
    (and, with ``record``, store ``Message Queued`` on each card in the same transaction)."""
    tracking = Tracking(LINKS)
    origin = Origin(campaign_id=prefix)
    for start in range(0, len(ids), CHUNK):
        with writing(store.engine) as conn:
            batch = [
                Recipient(cid, f"{prefix}:customer:{cid}", products=picks(store, cid))
                for cid in ids[start : start + CHUNK]
            ]
            messages = compose_many(
                conn, store.template, batch, now=now, tracking=tracking, origin=origin
            )
            events = enqueue(conn, messages, now)
            if record is not None:
                record(conn, events)


def smtp_settings(port: int, connections: int, keys: tuple[DkimKey, ...]) -> SmtpSettings:
    return SmtpSettings(
        host="127.0.0.1",
        port=port,
        security="plain",
        sender=SENDER,
        pool_size=connections,
        timeout=30,
        dkim=keys,
    )


def dispatch_all(dispatcher: Dispatcher) -> int:
    """Until the outbox is empty, as the dispatch loop of ``rapport serve`` runs it."""
    sent = 0
    while True:
        report = dispatcher.run_batches()
        if not report.claimed:
            return sent
        if report.retrying or report.dead or report.rejected:
            raise RuntimeError(f"dispatch went wrong: {report}")
        sent += report.sent


def event_recorder(store: Store) -> RecordEvents:
    """Statuses as events on the customers' cards, through the pipeline, as a worker does."""
    pipeline = Pipeline(store.engine)

    def record(conn: sa.Connection, events: list[Event]) -> None:
        pipeline.record_many(conn, events)

    return record


def rapport_run(
    store: Store,
    server: SinkServer,
    n: int,
    config: Config,
    keys: tuple[DkimKey, ...],
    run_id: str,
) -> dict[str, Any]:
    clear_outbox(store)
    server.reset()
    ids = store.customer_ids[:n]
    now = datetime.now(UTC)
    record = event_recorder(store) if config.events else None
    dispatcher = Dispatcher(
        store.engine,
        {"email": SmtpBackend(smtp_settings(server.port, config.connections, keys))},
        record=record,
    )
    try:
        started, cpu = time.perf_counter(), time.process_time()
        compose_and_queue(store, ids, run_id, now, record)
        composed = time.perf_counter()
        before = server.stats()
        sent = dispatch_all(dispatcher)
    finally:
        dispatcher.close()  # QUIT on the pooled sessions: part of the run, as in the loop
    finished, cpu = time.perf_counter(), time.process_time() - cpu
    after = server.stats()
    check(after, n, f"{store.name} Rapport {config.label}")
    with store.engine.connect() as conn:
        statuses = counts_by_status(conn)
    if statuses != {"sent": n} or sent != n:
        raise RuntimeError(f"outbox after the run: {statuses}")
    total = finished - started
    return {
        "messages": n,
        "seconds": round(total, 3),
        "per_s": n / total,
        "compose_per_s": n / (composed - started),
        "dispatch_per_s": n / (finished - composed),
        "server_busy": (after["cpu_s"] - before["cpu_s"]) / (finished - composed),
        # The sender's own CPU per message: far less sensitive than msg/s to other load.
        "cpu_ms": cpu * 1000 / n,
    }


def check(stats: dict[str, Any], n: int, what: str) -> None:
    if stats["distinct"] != n or stats["duplicates"] or stats["without_id"]:
        raise RuntimeError(f"{what}: the server saw {stats}, expected {n} distinct messages")


# ------------------------------------------------------------------------------ baseline


@dataclass
class Prebuilt:
    """The same messages Rapport sends, made before the clock starts, in both forms."""

    to: list[str]
    raw: list[bytes]  # flattened by Rapport's MIME writer: the transport alone
    objects: list[EmailMessage]  # built with the standard library, flattened when sent


def prebuilt(store: Store, n: int, now: datetime) -> Prebuilt:
    ids = store.customer_ids[:n]
    with store.engine.connect() as conn:
        batch = [Recipient(cid, f"plain:customer:{cid}", picks(store, cid)) for cid in ids]
        composed = compose_many(conn, store.template, batch, now=now, tracking=Tracking(LINKS))
    out = Prebuilt([], [], [])
    for msg in composed:
        outgoing = OutgoingMessage(
            id=msg.idempotency_key,
            channel="email",
            to=msg.recipient,
            body_text=msg.body_text,
            subject=msg.subject,
            body_html=msg.body_html,
            data=msg.data,
        )
        out.to.append(msg.recipient)
        out.raw.append(build_email(outgoing, sender=SENDER, id_domain="shop.example"))
        email = EmailMessage(policy=policy.SMTP)
        email["From"] = SENDER
        email["To"] = msg.recipient
        email["Subject"] = msg.subject or ""
        email["Date"] = format_datetime(now)
        email["Message-ID"] = message_id(msg.idempotency_key, "shop.example")
        for name, value in unsubscribe_headers(outgoing).items():
            email[name] = value
        email.set_content(msg.body_text, subtype="plain", charset="utf-8")
        email.add_alternative(msg.body_html or "", subtype="html", charset="utf-8")
        out.objects.append(email)
    return out


async def _plain(port: int, messages: Prebuilt, connections: int, flat: bool) -> None:
    queue = list(reversed(range(len(messages.to))))

    async def worker() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=30)
        await client.connect()
        try:
            while queue:
                i = queue.pop()
                if flat:
                    await client.sendmail(SENDER_ADDRESS, [messages.to[i]], messages.raw[i])
                else:
                    await client.send_message(
                        messages.objects[i], sender=SENDER_ADDRESS, recipients=[messages.to[i]]
                    )
        finally:
            await client.quit()

    await asyncio.gather(*(worker() for _ in range(connections)))


def plain_run(server: SinkServer, messages: Prebuilt, connections: int, flat: bool) -> dict:
    """The plain loop: ``send_message`` of EmailMessage objects, or ``sendmail`` of bytes."""
    server.reset()
    before = server.stats()
    started, cpu = time.perf_counter(), time.process_time()
    asyncio.run(_plain(server.port, messages, connections, flat))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    after = server.stats()
    check(after, len(messages.to), f"plain loop {connections} conn")
    return {
        "messages": len(messages.to),
        "seconds": round(elapsed, 3),
        "per_s": len(messages.to) / elapsed,
        "server_busy": (after["cpu_s"] - before["cpu_s"]) / elapsed,
        "cpu_ms": cpu * 1000 / len(messages.to),
    }


# ------------------------------------------------------------------------------ campaign


def campaign_run(store: Store, server: SinkServer, n: int, connections: int) -> dict[str, Any]:
    """A real campaign to a segment of ``n`` customers while the server's dispatch loop
    drains the outbox in another thread, as ``rapport serve`` runs them; then every message
    must have reached the server exactly once and every outbox row be ``sent``.

    Timed from ``start_campaign`` (freezing the audience) to the last row ``sent``.
    ``send_campaign`` composes and queues in its chunks of 1,000 with the policy asked for
    each chunk; the card events it hands to ``record`` are not stored here (their cost is
    what the "events" configuration measures). How much the dispatcher gets done while the
    campaign is still composing is reported too: on SQLite a chunk holds the write lock.
    """
    clear_outbox(store)
    server.reset()
    now = datetime.now(UTC)
    with writing(store.engine) as conn:
        segment = create_segment(
            conn,
            f"bench audience {now.timestamp()}",
            "every customer with an e-mail address",
            {"attribute": "email", "op": "exists"},
            now,
        )
        sweep(conn, SegmentIndex().current(conn), now, [segment.id], backfill=True)
        campaign = create_campaign(
            conn,
            {
                "name": f"bench {now.timestamp()}",
                "channel": "email",
                "segment_id": segment.id,
                "variants": [{"name": "A", "template_id": store.broadcast.id}],
            },
            now,
        )
    dispatcher = Dispatcher(
        store.engine, {"email": SmtpBackend(smtp_settings(server.port, connections, ()))}
    )
    loop = DispatchLoop(dispatcher, interval=0.05)
    started = time.perf_counter()
    loop.start()
    try:
        with writing(store.engine) as conn:
            start_campaign(conn, campaign.id, datetime.now(UTC))
        outcome = send_campaign(
            store.engine,
            campaign.id,
            clock=SystemClock(),
            record=lambda conn, events: None,
            tracking=Tracking(LINKS),
        )
        composed = time.perf_counter()
        with store.engine.connect() as conn:
            while_composing = counts_by_status(conn).get("sent", 0)
        while True:  # until every row is final (or an hour has passed)
            with store.engine.connect() as conn:
                statuses = counts_by_status(conn)
            waiting = set(statuses) & {"queued", "sending", "failed"}
            if not waiting or time.perf_counter() - started > 3600:
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
    finally:
        loop.stop()
    stats = server.stats()
    ok = (
        outcome.status == "sent"
        and outcome.queued == n
        and stats["distinct"] == n
        and not stats["duplicates"]
        and not stats["without_id"]
        and statuses == {"sent": n}
    )
    return {
        "store": store.name,
        "recipients": n,
        "connections": connections,
        "seconds": round(elapsed, 1),
        "per_s": round(n / elapsed, 1),
        "compose_seconds": round(composed - started, 1),
        "sent_while_composing": while_composing,
        "campaign_status": outcome.status,
        "campaign_queued": outcome.queued,
        "campaign_skipped": outcome.skipped,
        "server_received": stats["received"],
        "server_distinct": stats["distinct"],
        "server_duplicates": stats["duplicates"],
        "outbox": statuses,
        "exactly_once": ok,
    }


# ------------------------------------------------------------------------------ main


def rsa_key() -> DkimKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return DkimKey("shop.example", "bench", pem, "rsa")


@dataclass(frozen=True)
class Config:
    connections: int
    dkim: bool = False
    # Message Queued / Message Sent recorded on every card through the pipeline, as
    # ``rapport serve`` does; the other configurations write the outbox status only.
    events: bool = False

    @property
    def label(self) -> str:
        extra = (", DKIM" if self.dkim else "") + (", events" if self.events else "")
        return f"{self.connections} conn{extra}"


CONFIGS = (Config(1), Config(4), Config(1, dkim=True), Config(4, dkim=True), Config(4, events=True))


def _median(runs: list[dict[str, Any]], part: str, field: str) -> float:
    return statistics.median(r[part][field] for r in runs)


def _paired(runs: list[dict[str, Any]], baseline: str) -> float:
    return statistics.median(r["rapport"]["per_s"] / r[baseline]["per_s"] for r in runs)


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for store in dict.fromkeys(r["store"] for r in runs):
        for config in CONFIGS:
            mine = [r for r in runs if r["store"] == store and r["config"] == config.label]
            if not mine:
                continue
            rapport = _median(mine, "rapport", "per_s")
            flat = _median(mine, "plain_bytes", "per_s")
            objects = _median(mine, "plain_objects", "per_s")
            out.append(
                {
                    "store": store,
                    "connections": config.connections,
                    "dkim": "RSA-2048" if config.dkim else None,
                    "events": config.events,
                    "repetitions": len(mine),
                    "rapport_per_s": round(rapport, 1),
                    "plain_bytes_per_s": round(flat, 1),
                    "plain_objects_per_s": round(objects, 1),
                    # Each Rapport run against the baselines run just before it, then the
                    # median: a machine whose load drifts moves both sides of a pair alike.
                    "ratio_to_bytes": round(_paired(mine, "plain_bytes"), 3),
                    "ratio_to_objects": round(_paired(mine, "plain_objects"), 3),
                    "cpu_ms_rapport": round(_median(mine, "rapport", "cpu_ms"), 3),
                    "cpu_ms_plain_bytes": round(_median(mine, "plain_bytes", "cpu_ms"), 3),
                    "compose_per_s": round(_median(mine, "rapport", "compose_per_s"), 1),
                    "dispatch_per_s": round(_median(mine, "rapport", "dispatch_per_s"), 1),
                    "server_busy_rapport": round(_median(mine, "rapport", "server_busy"), 2),
                    "server_busy_plain_bytes": round(
                        _median(mine, "plain_bytes", "server_busy"), 2
                    ),
                }
            )
    return out


def _ratio(value: float, other_config: object) -> str:
    """Coloured against the target for the configuration the target is about."""
    if other_config:
        return f"{value:.2f}"
    colour = "green" if value >= TARGET_RATIO else "red"
    return f"[{colour}]{value:.2f}[/{colour}]"


def report(summary: list[dict[str, Any]], campaigns: list[dict[str, Any]]) -> None:
    table = Table(
        title="Sending: personalised MJML e-mails to a local SMTP server (msg/s, medians)"
    )
    for col in (
        "store",
        "conns",
        "DKIM",
        "events",
        "Rapport",
        "plain bytes (ratio)",
        "plain EmailMessage (ratio)",
        "compose+queue",
        "dispatch",
        "CPU ms/msg",
        "server CPU",
    ):
        table.add_column(col, justify="right")
    for s in summary:
        other = s["dkim"] or s["events"]
        table.add_row(
            s["store"],
            str(s["connections"]),
            "RSA" if s["dkim"] else "no",
            "yes" if s["events"] else "no",
            f"{s['rapport_per_s']:,.0f}",
            f"{s['plain_bytes_per_s']:,.0f} ({_ratio(s['ratio_to_bytes'], other)})",
            f"{s['plain_objects_per_s']:,.0f} ({_ratio(s['ratio_to_objects'], other)})",
            f"{s['compose_per_s']:,.0f}",
            f"{s['dispatch_per_s']:,.0f}",
            f"{s['cpu_ms_rapport']:.2f}/{s['cpu_ms_plain_bytes']:.2f}",
            f"{s['server_busy_rapport']:.0%}/{s['server_busy_plain_bytes']:.0%}",
        )
    console.print(table)
    console.print(
        f"Target: Rapport ≥ {TARGET_RATIO:.0%} of the plain loop without DKIM. 'ratio': the "
        "median over repetitions of each Rapport run divided by the baseline run just before "
        "it. 'plain bytes': "
        "sendmail() of messages flattened before the clock starts (the transport alone); "
        "'plain EmailMessage': send_message() of pre-built EmailMessage objects, which "
        "flattens each one in the loop. 'events': Message Queued/Sent recorded on every card "
        "through the pipeline, as a running server does. 'CPU ms/msg': the sending "
        "process's CPU time per message, Rapport / the plain bytes loop. 'server CPU': the "
        "SMTP server process's CPU time over the sending time, Rapport's dispatch / the plain "
        "bytes loop (100% = the server is the limit).",
        highlight=False,
    )
    table = Table(title="Campaign: every message delivered exactly once (counted at the server)")
    for col in ("store", "recipients", "conns", "seconds", "msg/s", "composing s",
                "sent meanwhile", "server distinct", "duplicates", "outbox",
                "exactly once"):  # fmt: skip
        table.add_column(col, justify="right")
    for c in campaigns:
        table.add_row(
            c["store"],
            f"{c['recipients']:,}",
            str(c["connections"]),
            f"{c['seconds']:,.1f}",
            f"{c['per_s']:,.0f}",
            f"{c['compose_seconds']:,.1f}",
            f"{c['sent_while_composing']:,}",
            f"{c['server_distinct']:,}",
            str(c["server_duplicates"]),
            ", ".join(f"{k} {v:,}" for k, v in c["outbox"].items()),
            "[green]yes[/green]" if c["exactly_once"] else "[red]NO[/red]",
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small run, under a minute")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--messages", type=int, help="messages per timed run")
    parser.add_argument("--reps", type=int, help="repetitions of each configuration")
    parser.add_argument("--recipients", type=int, help="recipients of the campaign run")
    parser.add_argument(
        "--campaign-stores", help="stores for the campaign run (default: all; --quick: sqlite)"
    )
    args = parser.parse_args()
    n = args.messages or (250 if args.quick else 2000)
    reps = args.reps or (1 if args.quick else 3)
    recipients = (
        args.recipients if args.recipients is not None else (2000 if args.quick else 100_000)
    )
    names = args.stores.split(",")
    # --quick sends its campaign on the embedded store only: the minute is the limit.
    campaign_names = (args.campaign_stores or ("sqlite" if args.quick else args.stores)).split(",")

    # Stopped with SIGTERM, still drop the PostgreSQL database and remove the files.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if _two_cores():
        os.sched_setaffinity(0, {1})  # the server process takes core 0
    key = rsa_key()
    now = datetime.now(UTC)
    load_start = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="rapport-bench-send-")
    runs: list[dict[str, Any]] = []
    campaigns: list[dict[str, Any]] = []
    try:
        with SinkServer() as server, stores(names, max(n, recipients), tmp, now) as made:
            for store in made:
                messages = prebuilt(store, n, now)
                for rep in range(reps):
                    for config in CONFIGS:
                        flat = plain_run(server, messages, config.connections, flat=True)
                        objects = plain_run(server, messages, config.connections, flat=False)
                        keys = (key,) if config.dkim else ()
                        run_id = f"r{rep}-{config.label}"
                        ours = rapport_run(store, server, n, config, keys, run_id)
                        runs.append(
                            {
                                "store": store.name,
                                "repetition": rep,
                                "config": config.label,
                                "load_1min": os.getloadavg()[0],
                                "rapport": ours,
                                "plain_bytes": flat,
                                "plain_objects": objects,
                            }
                        )
                        console.print(
                            f"  {store.name} rep {rep + 1}/{reps}, {config.label}: Rapport "
                            f"{ours['per_s']:,.0f} msg/s; plain loop {flat['per_s']:,.0f} "
                            f"(bytes), {objects['per_s']:,.0f} (EmailMessage)",
                            highlight=False,
                        )
                if recipients and store.name in campaign_names:
                    console.print(f"  {store.name}: campaign of {recipients:,} recipients…")
                    campaigns.append(campaign_run(store, server, recipients, 4))
                    console.print(
                        f"  {store.name}: {campaigns[-1]['seconds']:,.0f} s, exactly once: "
                        f"{campaigns[-1]['exactly_once']}",
                        highlight=False,
                    )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    summary = summarise(runs)
    report(summary, campaigns)
    load_end = os.getloadavg()
    console.print(
        "Load average (1/5/15 min) at the start: "
        + " ".join(f"{x:.2f}" for x in load_start)
        + "; at the end: "
        + " ".join(f"{x:.2f}" for x in load_end),
        highlight=False,
    )
    out = ROOT / "bench" / "results" / "send.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        orjson.dumps(
            {
                "quick": args.quick,
                "at": datetime.now(UTC).isoformat(),
                "cpus": os.cpu_count(),
                "load_average": {"start": load_start, "end": load_end},
                "messages_per_run": n,
                "repetitions": reps,
                "summary": summary,
                "campaigns": campaigns,
                "runs": runs,
            },
            option=orjson.OPT_INDENT_2,
        ).decode()
    )
    console.print(f"written {out.relative_to(ROOT)}")
    if any(not c["exactly_once"] for c in campaigns):
        raise SystemExit("a campaign did not deliver every message exactly once")


if __name__ == "__main__":
    main()
