"""The demo shop's history, sent through the real ingest path in time order.

Messages are Segment-spec dicts, exactly what a site's SDK, a till or a telephony system
would post. They are validated by ``parse_batch`` in small "requests" (what an SDK flushes
within a minute), and requests are stored by ``Pipeline.ingest`` in groups, the way the
API's group-commit writer does, with a simulated clock set to the moment each group
arrives. Nothing is written to the tables directly except the catalog, which a shop
loads through the catalog module before the first visitor comes.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from dateutil.relativedelta import relativedelta

from rapport.catalog.products import upsert_categories, upsert_products
from rapport.clock import SimulatedClock
from rapport.demo.catalog import Product, build_catalog, category_records
from rapport.demo.people import Person, build_population
from rapport.demo.schedule import (
    BROWSE,
    CALL,
    OFFLINE,
    PURCHASE,
    SYNC,
    VISITOR,
    Rates,
    Visit,
    plan_all,
)
from rapport.demo.shop import Outbox, Shop, ShopStats, Visitor
from rapport.ingest.incoming import Incoming
from rapport.ingest.messages import TYPE_EVENT_NAMES, parse_batch
from rapport.pipeline import Pipeline
from rapport.settings import Settings
from rapport.store.engine import writing


@dataclass(frozen=True)
class DemoConfig:
    customers: int = 3000
    months: int = 6
    seed: int = 42
    # When the history ends ("now" for the shop); default: the start of today, UTC.
    end: datetime | None = None
    rates: Rates = field(default_factory=Rates)
    # Messages one SDK "request" holds, and how long it collects them.
    request_size: int = 100
    request_window: float = 60.0
    # Requests stored in one transaction: at most this many messages, this much sim time.
    group_size: int = 1000
    group_window: float = 3600.0

    def period(self) -> tuple[datetime, datetime]:
        end = self.end or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return end - relativedelta(months=self.months), end


@dataclass
class Sent:
    """One message as the shop sent it."""

    at: float
    raw: dict[str, Any]
    duplicate: bool


@dataclass
class GenerationResult:
    config: DemoConfig
    start: datetime
    end: datetime
    products: int = 0
    people: int = 0
    sent: Counter[str] = field(default_factory=Counter)
    duplicates_sent: int = 0
    stored: int = 0
    duplicates_dropped: int = 0
    shop: ShopStats = field(default_factory=ShopStats)
    parse_seconds: float = 0.0
    ingest_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def messages(self) -> int:
        return sum(self.sent.values()) + self.duplicates_sent

    @property
    def events_per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


class History:
    """The planned shop: catalog, people and every visit, acted out on iteration."""

    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        start, end = config.period()
        self.start, self.end = start, end
        self.rng = np.random.default_rng(config.seed)
        t0, t1 = start.timestamp(), end.timestamp()
        days = int((t1 - t0) // 86400)
        self.catalog: list[Product] = build_catalog(self.rng, days)
        self.people: list[Person] = build_population(self.rng, config.customers, t0, t1)
        self.visits: list[Visit] = plan_all(self.rng, self.people, t0, t1, config.rates)
        self.outbox = Outbox()
        self.shop = Shop(self.rng, self.catalog, t0, config.seed, self.outbox)
        self._visitors: dict[int, Visitor] = {}

    def messages(self) -> Iterator[Sent]:
        """Every message in the order it is sent, up to the end of the history."""
        for visit in self.visits:
            for at, raw, duplicate in self.outbox.pop_until(visit.at):
                yield Sent(at, raw, duplicate)
            self._act(visit)
        for at, raw, duplicate in self.outbox.pop_until(self.end.timestamp()):
            yield Sent(at, raw, duplicate)

    def _act(self, visit: Visit) -> None:
        shop = self.shop
        if visit.kind == VISITOR:
            visitor = self._visitors.get(visit.who)
            if visitor is None:
                weights = self.rng.dirichlet(np.full(len(self.people[0].category_weights), 0.5))
                visitor = self._visitors[visit.who] = Visitor(shop._uuid(), weights)
            shop.visitor(visitor, visit.at)
            return
        if visit.who < 0:
            shop.call(None, visit.at)
            return
        person = self.people[visit.who]
        due = visit.seq >= person.signup_visit
        if visit.kind == SYNC:
            shop.sync(person, visit.at)
        elif visit.kind == CALL:
            shop.call(person, visit.at)
        elif visit.kind == OFFLINE:
            shop.store_purchase(person, visit.at)
        elif visit.kind in (BROWSE, PURCHASE):
            shop.browse(person, visit.at, due, visit.kind == PURCHASE)


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class _Loader:
    """Parses requests, groups them and stores each group with the clock at its arrival."""

    def __init__(
        self,
        engine: sa.Engine,
        history: History,
        result: GenerationResult,
        settings: Settings,
        progress: Callable[[float, GenerationResult], None] | None,
    ) -> None:
        self.engine = engine
        self.config = history.config
        self.result = result
        self.settings = settings
        self.progress = progress
        self.clock = SimulatedClock(history.start)
        self.pipeline = Pipeline(engine, self.clock)
        self.arrivals = sorted(
            (p for p in history.catalog if p.arrives_day > 0), key=lambda p: p.arrives_day
        )
        self.t0 = history.start.timestamp()
        self.span = history.end.timestamp() - self.t0
        self.request: list[dict[str, Any]] = []
        self.request_first = 0.0
        self.request_last = 0.0
        self.group: list[Incoming] = []
        self.group_first = 0.0
        self.group_last = 0.0

    def add(self, sent: Sent) -> None:
        if self.request and (
            len(self.request) >= self.config.request_size
            or sent.at - self.request_first > self.config.request_window
        ):
            self.close_request()
        if not self.request:
            self.request_first = sent.at
        self.request.append(sent.raw)
        self.request_last = sent.at

    def close_request(self) -> None:
        if not self.request:
            return
        received = self.request_last + 0.5
        began = time.perf_counter()
        parsed = parse_batch(
            self.request,
            received_at=_moment(received),
            phone_region=self.settings.default_phone_region,
            max_message_bytes=self.settings.max_message_bytes,
            source="api",
        )
        self.result.parse_seconds += time.perf_counter() - began
        self.request = []
        if not self.group:
            self.group_first = received
        self.group.extend(parsed)
        self.group_last = received
        if (
            len(self.group) >= self.config.group_size
            or self.group_last - self.group_first >= self.config.group_window
        ):
            self.store_group()

    def store_group(self) -> None:
        if not self.group:
            return
        self.clock.set(_moment(self.group_last))
        self._release_arrivals(self.group_last)
        began = time.perf_counter()
        outcome = self.pipeline.ingest(self.group)
        self.result.ingest_seconds += time.perf_counter() - began
        self.result.stored += outcome.stored
        self.result.duplicates_dropped += outcome.duplicates
        self.group = []
        if self.progress is not None:
            self.progress(min(1.0, (self.group_last - self.t0) / self.span), self.result)

    def finish(self) -> None:
        self.close_request()
        self.store_group()

    def _release_arrivals(self, until: float) -> None:
        """New arrivals go on sale (into the catalog) when the clock reaches their day."""
        due: list[Product] = []
        while self.arrivals and self.t0 + self.arrivals[0].arrives_day * 86400 <= until:
            due.append(self.arrivals.pop(0))
        for day in sorted({p.arrives_day for p in due}):
            with writing(self.engine) as conn:
                upsert_products(
                    conn,
                    [p.record() for p in due if p.arrives_day == day],
                    _moment(self.t0) + timedelta(days=day),
                )


def generate(
    engine: sa.Engine,
    config: DemoConfig,
    *,
    settings: Settings | None = None,
    progress: Callable[[float, GenerationResult], None] | None = None,
) -> GenerationResult:
    """Build the shop's catalog, then replay its whole history into the store."""
    began = time.perf_counter()
    history = History(config)
    result = GenerationResult(config, history.start, history.end)
    result.products = len(history.catalog)
    result.people = len(history.people)
    result.shop = history.shop.stats
    with writing(engine) as conn:
        upsert_categories(conn, category_records())
        upsert_products(
            conn, [p.record() for p in history.catalog if p.arrives_day == 0], history.start
        )
    loader = _Loader(engine, history, result, settings or Settings(), progress)
    for sent in history.messages():
        if sent.duplicate:
            result.duplicates_sent += 1
        else:
            kind = sent.raw["type"]
            result.sent[sent.raw.get("event") or TYPE_EVENT_NAMES.get(kind, kind)] += 1
        loader.add(sent)
    loader.finish()
    result.seconds = time.perf_counter() - began
    return result
