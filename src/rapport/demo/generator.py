"""The demo shop's history, sent through the real ingest path in time order.

Messages are Segment-spec dicts, exactly what a site's SDK, a till or a telephony system
would post. They are validated by ``parse_batch`` in small "requests" (what an SDK flushes
within a minute), and requests are stored by ``Pipeline.ingest`` in groups, the way the
API's group-commit writer does, with a simulated clock set to the moment each group
arrives. Nothing is written to the tables directly except the catalog, which a shop
loads through the catalog module before the first visitor comes.
"""

from __future__ import annotations

import heapq
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
    RESPONSE,
    SYNC,
    VISITOR,
    Rates,
    Visit,
    plan_all,
)
from rapport.demo.shop import Outbox, Shop, ShopStats, Visitor
from rapport.ingest.incoming import Incoming
from rapport.ingest.messages import TYPE_EVENT_NAMES, parse_batch
from rapport.pipeline import IngestResult, Pipeline
from rapport.settings import Settings
from rapport.store.engine import writing
from rapport.store.tables import products

VERTICALS = ("shop", "bank")


@dataclass(frozen=True)
class DemoConfig:
    customers: int = 3000
    # Months of history before the simulated days.
    months: int = 6
    seed: int = 42
    # When the shop's time ends ("now"); default: the start of today, UTC.
    end: datetime | None = None
    # Days at the end of that time that the simulation (demo/simulate.py) plays on the
    # clock with scenarios running; 0: the whole time is generated history.
    days: int = 0
    rates: Rates = field(default_factory=Rates)
    # Messages one SDK "request" holds, and how long it collects them.
    request_size: int = 100
    request_window: float = 60.0
    # Requests stored in one transaction: at most this many messages, this much sim time.
    # The history is stored before any scenario exists, so a day's requests can share a
    # transaction (measured: 2.7x faster than hourly groups of 1,000); the simulated days
    # flush every hour anyway (demo/simulate.py), so reactions keep their timing there.
    group_size: int = 5000
    group_window: float = 86400.0
    # What is simulated: "shop" (a clothing and footwear shop) or "bank" (demo/bank*.py;
    # its knobs are ``bank_schedule.BankRates``, ``rates`` is the shop's).
    vertical: str = "shop"

    def __post_init__(self) -> None:
        if self.vertical not in VERTICALS:
            choices = ", ".join(VERTICALS)
            raise ValueError(f"vertical: one of {choices}, not {self.vertical!r}")

    def period(self) -> tuple[datetime, datetime]:
        """The shop's whole time: the history, then the simulated days."""
        end = self.end or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return end - timedelta(days=self.days) - relativedelta(months=self.months), end

    def history_end(self) -> datetime:
        """Where the generated history stops and the simulation (if any) starts."""
        return self.period()[1] - timedelta(days=self.days)


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
    """The planned shop: catalog, people and every visit, acted out on iteration.

    Visits are planned over the shop's whole time (history and simulated days alike), so
    the baseline buying process runs on through a simulation whatever the messages do.
    What messages add (a purchase after a click) is injected as extra visits acted out by
    a second shop with its own random stream: the baseline's draws never depend on the
    messages, so two strategies run on one seed see the same baseline customers.
    """

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
        # Purchases that messages caused: another stream, other message and order ids.
        self.response_shop = Shop(
            np.random.default_rng([config.seed, 1]),
            self.catalog,
            t0,
            config.seed,
            self.outbox,
            tag="r",
        )
        self._visitors: dict[int, Visitor] = {}
        self._next = 0  # the next planned visit
        self._injected: list[Visit] = []
        self._injected_seq = len(self.visits)
        self._categories: dict[int, str | None] = {}  # what an injected purchase is for

    def category_records(self) -> list[dict[str, Any]]:
        """The catalog's categories, loaded before the first visitor comes."""
        return category_records()

    def loader(
        self,
        engine: sa.Engine,
        result: GenerationResult,
        settings: Settings,
        progress: Callable[[float, GenerationResult], None] | None = None,
        *,
        pipeline: Pipeline | None = None,
    ) -> Loader:
        """What stores this history's messages (the bank's also registers push tokens)."""
        return Loader(engine, self, result, settings, progress, pipeline=pipeline)

    def messages(self) -> Iterator[Sent]:
        """Every message in the order it is sent, up to the end of the history."""
        yield from self.until(self.config.history_end().timestamp())

    def until(self, moment: float) -> Iterator[Sent]:
        """The messages sent up to ``moment`` that were not yielded before, in time order."""
        while (visit := self._due(moment)) is not None:
            for at, raw, duplicate in self.outbox.pop_until(visit.at):
                yield Sent(at, raw, duplicate)
            self._act(visit)
        for at, raw, duplicate in self.outbox.pop_until(moment):
            yield Sent(at, raw, duplicate)

    def inject_purchase(self, person: Person, moment: float, category: str | None) -> None:
        """A purchase the baseline did not plan (a message's effect), at ``moment``."""
        self._injected_seq += 1
        heapq.heappush(self._injected, Visit(moment, self._injected_seq, RESPONSE, person.index))
        self._categories[self._injected_seq] = category

    def _due(self, moment: float) -> Visit | None:
        """The next visit (planned or injected) at or before ``moment``, taken off its queue."""
        planned = self.visits[self._next] if self._next < len(self.visits) else None
        injected = self._injected[0] if self._injected else None
        if injected is not None and (planned is None or injected < planned):
            return heapq.heappop(self._injected) if injected.at <= moment else None
        if planned is None or planned.at > moment:
            return None
        self._next += 1
        return planned

    def _act(self, visit: Visit) -> None:
        shop = self.shop
        if visit.kind == RESPONSE:
            category = self._categories.pop(visit.seq)
            self.response_shop.response_purchase(self.people[visit.who], visit.at, category)
            return
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


class Loader:
    """Parses requests, groups them and stores each group with the clock at its arrival.

    The generator makes one with its own clock; the simulation hands it the pipeline whose
    clock the worker's jobs read too. The clock only moves forward.
    """

    def __init__(
        self,
        engine: sa.Engine,
        history: History,
        result: GenerationResult,
        settings: Settings,
        progress: Callable[[float, GenerationResult], None] | None = None,
        *,
        pipeline: Pipeline | None = None,
    ) -> None:
        self.engine = engine
        self.config = history.config
        self.result = result
        self.settings = settings
        self.progress = progress
        self.pipeline = pipeline or Pipeline(engine, SimulatedClock(history.start))
        self.clock = self.pipeline.clock
        self.t0 = history.start.timestamp()
        self.arrivals = sorted(
            (p for p in history.catalog if p.arrives_day > 0), key=lambda p: p.arrives_day
        )
        with engine.connect() as conn:  # a store generated earlier has some on sale already
            on_sale = set(conn.execute(sa.select(products.c.id)).scalars())
        self.arrivals = [p for p in self.arrivals if p.id not in on_sale]
        self.span = history.config.history_end().timestamp() - self.t0
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
        if isinstance(self.clock, SimulatedClock):
            self.clock.set(max(self.clock.now(), _moment(self.group_last)))
        self._release_arrivals(self.group_last)
        began = time.perf_counter()
        outcome = self.ingest(self.group)
        self.result.ingest_seconds += time.perf_counter() - began
        self.result.stored += outcome.stored
        self.result.duplicates_dropped += outcome.duplicates
        self.group = []
        if self.progress is not None:
            self.progress(min(1.0, (self.group_last - self.t0) / self.span), self.result)

    def finish(self) -> None:
        self.close_request()
        self.store_group()

    def ingest(self, group: list[Incoming]) -> IngestResult:
        """Store one group in one transaction (the bank's loader adds its push tokens)."""
        return self.pipeline.ingest(group)

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
    history: History | None = None,
) -> GenerationResult:
    """Build the catalog (the shop's or the bank's, after ``config.vertical``), then replay
    its whole history into the store.

    ``history`` (made from ``config`` when not given) is left where the history ends, so a
    simulation can go on with it.
    """
    began = time.perf_counter()
    if history is None:
        from rapport.demo.verticals import make_history  # the bank imports this module

        history = make_history(config)
    result = GenerationResult(config, history.start, config.history_end())
    result.products = len(history.catalog)
    result.people = len(history.people)
    result.shop = history.shop.stats
    with writing(engine) as conn:
        upsert_categories(conn, history.category_records())
        upsert_products(
            conn, [p.record() for p in history.catalog if p.arrives_day == 0], history.start
        )
    loader = history.loader(engine, result, settings or Settings(), progress)
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
