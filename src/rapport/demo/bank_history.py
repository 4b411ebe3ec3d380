"""The demo bank's time as one message stream, and the loader that stores it.

``BankHistory`` is the shop's ``History`` with the bank's parts: the bank's catalog and
customers, every visit planned by ``bank_schedule``, acted out by ``bank.Bank``. The
stream, the injected visits (what messages cause) and their second random stream work as
the shop's do, so the simulation, the response model and the report run on it unchanged.

``BankLoader`` stores the stream as the shop's loader does, and hands each app's push
token to the same functions ``POST /v1/push/subscriptions`` calls: a ``Push Subscribed``
event through the pipeline, and the subscription with its consent in that transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import sqlalchemy as sa

from rapport.demo.bank import PUSH_SUBSCRIPTION, Bank
from rapport.demo.bank_catalog import BankProduct, build_bank_catalog, category_records
from rapport.demo.bank_people import BankCustomer, build_clients
from rapport.demo.bank_response import ResponseBank
from rapport.demo.bank_schedule import (
    ACTIVATE,
    APPLY,
    BIG_PURCHASE,
    BROWSE,
    CALL,
    DECIDE,
    LOGIN,
    PURCHASE,
    RESCORE,
    STRANGER_CALL,
    SYNC,
    Application,
    BankRates,
    plan_bank,
)
from rapport.demo.catalog import Product
from rapport.demo.generator import DemoConfig, GenerationResult, History, Loader, Sent
from rapport.demo.people import Person
from rapport.demo.schedule import RESPONSE, Visit
from rapport.demo.shop import Outbox
from rapport.ingest.incoming import Incoming
from rapport.messaging.push_subscriptions import (
    SUBSCRIBED_EVENT,
    Subscription,
    SubscriptionIn,
    subscribe,
)
from rapport.pipeline import IngestResult, Pipeline
from rapport.settings import Settings
from rapport.store.engine import writing


class BankHistory(History):
    """The planned bank: products, customers and every visit, acted out on iteration.

    It sets up everything ``History``'s methods use itself instead of calling
    ``History.__init__``, which would plan a shop.
    """

    def __init__(self, config: DemoConfig, rates: BankRates | None = None) -> None:
        self.config = config
        self.rates = rates or BankRates()
        start, end = config.period()
        self.start, self.end = start, end
        self.rng = np.random.default_rng(config.seed)
        t0, t1 = start.timestamp(), end.timestamp()
        days = int((t1 - t0) // 86400)
        self.products: list[BankProduct] = build_bank_catalog(days)
        self.clients: list[BankCustomer] = build_clients(self.rng, config.customers, t0, t1)
        self.catalog: list[Product] = [p for p in self.products]
        self.people: list[Person] = [c for c in self.clients]
        self.visits: list[Visit]
        self.visits, self.applications = plan_bank(
            self.rng, self.clients, self.products, t0, t1, self.rates
        )
        self.outbox = Outbox()
        self.bank = Bank(self.rng, self.products, t0, config.seed, self.outbox)
        # What messages cause: another stream, other message, application and order ids.
        self.response_bank = ResponseBank(
            np.random.default_rng([config.seed, 1]),
            self.products,
            t0,
            config.seed,
            self.outbox,
            tag="r",
        )
        self.shop = self.bank
        self.response_shop = self.response_bank
        self._next = 0
        self._injected: list[Visit] = []
        self._injected_seq = len(self.visits)
        self._categories: dict[int, str | None] = {}

    def category_records(self) -> list[dict[str, Any]]:
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
        return BankLoader(engine, self, result, settings, progress, pipeline=pipeline)

    def _act(self, visit: Visit) -> None:
        bank = self.bank
        if visit.kind == RESPONSE:
            category = self._categories.pop(visit.seq)
            self.response_bank.respond(self.clients[visit.who], visit.at, category)
            return
        if visit.kind == STRANGER_CALL:
            bank.support_call(None, visit.at)
            return
        client = self.clients[visit.who]
        app: Application | None = self.applications.get(visit.seq)
        if visit.kind == SYNC:
            bank.existing(client, visit.at, app)
        elif visit.kind == BROWSE:
            bank.look(client, visit.at, app)
        elif visit.kind == LOGIN:
            bank.login(client, visit.at)
        elif visit.kind in (PURCHASE, BIG_PURCHASE):
            bank.purchase(client, visit.at, visit.kind == BIG_PURCHASE)
        elif visit.kind == CALL:
            bank.support_call(client, visit.at)
        elif visit.kind == RESCORE:
            bank.rescore(client, visit.at)
        elif app is not None and visit.kind == APPLY:
            bank.apply(client, visit.at, app)
        elif app is not None and visit.kind == DECIDE:
            bank.decide(client, visit.at, app)
        elif app is not None and visit.kind == ACTIVATE:
            bank.activate(client, visit.at, app)


class BankLoader(Loader):
    """The shop's loader; an app's push token is stored as ``POST /v1/push/subscriptions``
    stores it: its ``Push Subscribed`` event through the pipeline, in order with the rest,
    and the subscription (with its push consent) in the same transaction."""

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
        super().__init__(engine, history, result, settings, progress, pipeline=pipeline)
        self.pending: dict[str, Subscription] = {}  # by the message id of its event
        self.subscriptions = 0

    def add(self, sent: Sent) -> None:
        raw = sent.raw
        if raw.get("type") != PUSH_SUBSCRIPTION:
            super().add(sent)
            return
        sub = SubscriptionIn.model_validate({"fcm": raw["fcm"]}).subscription()
        track = {
            "type": "track",
            "event": SUBSCRIBED_EVENT,
            "messageId": f"push-{raw['messageId']}",
            "userId": raw["userId"],
            "timestamp": raw["timestamp"],
            "properties": {"kind": sub.kind, "platform": sub.platform},
        }
        self.pending[track["messageId"]] = sub
        super().add(Sent(sent.at, track, sent.duplicate))

    def ingest(self, group: list[Incoming]) -> IngestResult:
        if not any(msg.message_id in self.pending for msg in group):
            return super().ingest(group)
        with writing(self.engine) as conn:
            outcome = self.pipeline.ingest_in(conn, group)
            events = []
            for msg, customer_id in zip(group, outcome.customer_ids, strict=True):
                sub = self.pending.pop(msg.message_id, None)
                if sub is not None and customer_id is not None:  # None: an SDK retry
                    events += subscribe(conn, customer_id, sub, self.clock.now())
                    self.subscriptions += 1
            if events:
                self.pipeline.record_many(conn, events)
        return outcome
