"""The simulated customers' side of the inbox: read what arrived, answer it later.

Each hour the simulation hands over what the dispatcher sent. E-mails are read from the
mail catcher (``inbox``), each is given to the response model (``response.react``) with
the customer's fatigue, and what they will do is queued for its moment: an open, a click
on one of the message's own tracked links, an unsubscribe through its link, a purchase.
When their moment comes, opens and clicks are recorded exactly as the tracking endpoints
record them (``messaging.engagement.message_event``), unsubscribes through the same
domain function as the one-click unsubscribe (``messaging.unsubscribe.unsubscribe``), all
through the pipeline; purchases become visits of the shop (``History.inject_purchase``),
so they arrive as ``Order Completed`` through the ingest path and attribution credits them.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from rapport.demo.catalog import CATEGORY_BY_ID
from rapport.demo.generator import History
from rapport.demo.inbox import Caught, collect
from rapport.demo.people import Person
from rapport.demo.response import DAY, TEMPLATE_DISCOUNT, Delivered, ResponseModel, react
from rapport.demo.stage import Staged
from rapport.messaging.engagement import NoCustomer, message_event, survivor
from rapport.messaging.outbox import CLICKED, OPENED, Event
from rapport.messaging.unsubscribe import unsubscribe
from rapport.pipeline import Pipeline
from rapport.store.engine import writing
from rapport.store.tables import outbox

OPEN, CLICK, UNSUBSCRIBE = "open", "click", "unsubscribe"
_IN_BATCH = 5000  # ids per IN list, far below both stores' limits on bound parameters


@dataclass(order=True, frozen=True)
class _Action:
    at: float
    seq: int
    kind: str
    key: str
    customer_id: int
    url: str = ""


class Responder:
    """Turns delivered messages into the customers' later actions, and acts them out."""

    def __init__(
        self,
        pipeline: Pipeline,
        history: History,
        staged: Staged,
        maildir: Path,
        model: ResponseModel,
        seed: int,
    ) -> None:
        self.pipeline = pipeline
        self.history = history
        self.staged = staged
        self.maildir = maildir
        self.model = model
        self.rng = np.random.default_rng([seed, 2])
        self.people = {p.email: p for p in history.people}
        self.products = {p.id: p.category for p in history.catalog}
        self._actions: list[_Action] = []
        self._seq = 0
        self._received: dict[int, deque[float]] = defaultdict(deque)
        self.counts: Counter[str] = Counter()

    # -- delivered ---------------------------------------------------------------------

    def read(self, now: datetime, sent_ids: Sequence[int]) -> None:
        """What was sent since the last look (the outbox ids the dispatcher reported
        sent): fatigue for every channel, reactions to e-mails found in the catcher.

        The rows are looked up by primary key: a scan for "sent since the last look"
        read every stored message body (the outbox's largest column comes before
        ``sent_at``), which made reading the mail cost more the longer the demo ran."""
        caught = {c.key: c for c in collect(self.maildir, self.staged.links.key)}
        self.counts["emails caught"] += len(caught)
        o = outbox.c
        columns = (
            o.id,
            o.idempotency_key,
            o.customer_id,
            o.channel,
            o.recipient,
            o.scenario_id,
            o.campaign_id,
            o.template_id,
            o.variant,
        )
        ids = sorted(set(sent_ids))
        rows: list[Any] = []
        with self.pipeline.engine.connect() as conn:
            for i in range(0, len(ids), _IN_BATCH):
                rows += conn.execute(
                    sa.select(*columns).where(o.id.in_(ids[i : i + _IN_BATCH]), o.status == "sent")
                ).all()
        rows.sort(key=lambda row: int(row.id))
        moment = now.timestamp()
        for row in rows:
            self.counts[f"sent by {row.channel}"] += 1
            if row.customer_id is None:
                continue
            fatigue = self._fatigue(int(row.customer_id), moment)
            found = caught.get(row.idempotency_key)
            person = self.people.get(row.recipient)
            if found is not None and person is not None:
                self._answer(person, row, found, fatigue, moment)

    def _fatigue(self, customer_id: int, moment: float) -> int:
        """Messages this customer received in the window before this one (then counts it)."""
        seen = self._received[customer_id]
        while seen and seen[0] <= moment - self.model.fatigue_days * DAY:
            seen.popleft()
        count = len(seen)
        seen.append(moment)
        return count

    def _delivered(self, row: Any, found: Caught, moment: float) -> Delivered:
        template = self.staged.templates.get(str(row.template_id))
        campaign = self.staged.campaigns.get(str(row.campaign_id)) if row.campaign_id else None
        discount = TEMPLATE_DISCOUNT.get(template or "", 0.0)
        if campaign is not None:
            discount = campaign.discounts.get(str(row.variant), 0.0)
        return Delivered(
            key=row.idempotency_key,
            channel=row.channel,
            at=moment,
            playbook=self.staged.playbooks.get(str(row.scenario_id)) if row.scenario_id else None,
            template=template,
            campaign_fit=campaign.fit if campaign is not None else None,
            discount=discount,
            categories=tuple(self.products[p] for p in found.product_ids if p in self.products),
        )

    def _answer(self, person: Person, row: Any, found: Caught, fatigue: int, at: float) -> None:
        message = self._delivered(row, found, at)
        reaction = react(person, message, fatigue, self.model, self.rng)
        cid = int(row.customer_id)
        if reaction.opened_at is not None:
            self._queue(reaction.opened_at, OPEN, message.key, cid)
        if reaction.unsubscribed_at is not None:
            self._queue(reaction.unsubscribed_at, UNSUBSCRIBE, message.key, cid)
        if reaction.clicked_at is None or not found.links:
            return
        self._queue(reaction.clicked_at, CLICK, message.key, cid, _link(found, reaction.category))
        if reaction.buys_at is not None:
            self.history.inject_purchase(person, reaction.buys_at, reaction.category)
            self.counts["purchases caused"] += 1

    def _queue(self, at: float, kind: str, key: str, customer_id: int, url: str = "") -> None:
        self._seq += 1
        heapq.heappush(self._actions, _Action(at, self._seq, kind, key, customer_id, url))

    # -- acted out ---------------------------------------------------------------------

    def act(self, now: datetime) -> None:
        """Record every action due by ``now``, in one transaction, through the pipeline."""
        due: list[_Action] = []
        while self._actions and self._actions[0].at <= now.timestamp():
            due.append(heapq.heappop(self._actions))
        if not due:
            return
        with writing(self.pipeline.engine) as conn:
            events = list(self._events(conn, due, now))
            if events:
                self.pipeline.record_many(conn, events)

    def _events(self, conn: sa.Connection, due: list[_Action], now: datetime) -> Iterable[Event]:
        for action in due:
            if action.kind == UNSUBSCRIBE:
                try:
                    cid = survivor(conn, action.customer_id)
                except NoCustomer:
                    continue
                made = unsubscribe(conn, cid, "email", action.key, now)
            elif action.kind == CLICK:
                made = message_event(conn, action.key, CLICKED, url=action.url)[1]
            else:
                made = message_event(conn, action.key, OPENED)[1]
            if made:
                self.counts[f"{action.kind}s"] += 1
            yield from made


def _link(found: Caught, category: str | None) -> str:
    """The link clicked: a product of the category the customer is after, else the first."""
    if category is not None and category in CATEGORY_BY_ID:
        for link in found.links:
            if f"/p/{category}-" in link:
                return link
    return found.links[0]
