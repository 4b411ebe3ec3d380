"""The per-event flow, in one readable place.

Every event, whatever its source, enters here: it is de-duplicated, its customer resolved,
stored on the timeline, folded into the computed fields, and applied to carts, orders and
views, all in one transaction. Later stages (segments, scenarios) hang off the same flow,
and events partners subscribed to are queued for delivery in that transaction too.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from rapport.analytics.attribution import attribute_new_orders
from rapport.analytics.message_facts import fold_message_events
from rapport.catalog.products import ProductCache
from rapport.clock import Clock, SystemClock
from rapport.customers.computed import ROLLUP_STRIPE, Changes, apply_changes, bump_counters
from rapport.customers.consents import ConsentChange, set_consents
from rapport.customers.timeline import existing_message_ids, store_events
from rapport.ingest import ecommerce
from rapport.ingest.identity import resolve
from rapport.ingest.incoming import Incoming
from rapport.loyalty.hooks import LoyaltyHooks
from rapport.loyalty.ledger import (
    ACTIVATED,
    ADJUSTED,
    EARNED,
    EXPIRED,
    REDEEMED,
    RETURNED,
    REVERSED,
    TIER_CHANGED,
)
from rapport.loyalty.reactions import on_events as loyalty_on_events
from rapport.messaging.compose import Tracking
from rapport.messaging.event_subscriptions import SubscriptionIndex, notify
from rapport.messaging.outbox import QUEUED
from rapport.messaging.tracking import Links
from rapport.scenarios.engine import Engine, Observed
from rapport.scenarios.index import ScenarioIndex
from rapport.scenarios.steps import StepContext
from rapport.segments.lifecycle import EVENT as STAGE_EVENT
from rapport.segments.lifecycle import update_stages
from rapport.segments.membership import ENTERED, EXITED, SegmentIndex, Touched, refresh
from rapport.store.engine import upsert, writing
from rapport.store.tables import customer_groups

# From this many events a transaction plans its statements for the arrays it sends
# (see ``Pipeline.ingest_in``); smaller ones keep the prepared plans, cheaper to run.
CUSTOM_PLANS_FROM = 64


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    customer_ids: list[int | None] = field(default_factory=list)
    queued: int = 0  # outbox messages the batch queued (scenario sends, subscriptions)


class Pipeline:
    """Holds what lives longer than one batch: the engine, the clock, the product cache."""

    def __init__(self, engine: sa.Engine, clock: Clock | None = None) -> None:
        self.engine = engine
        self.clock = clock or SystemClock()
        self.products = ProductCache()
        self.segment_index = SegmentIndex()
        self.subscriptions = SubscriptionIndex()
        # Public links for scenario messages (tracking, unsubscribe), asked for when a
        # message is composed; a server or worker sets it, None sends plain messages.
        self.links: Callable[[], Links | None] = lambda: None
        self.scenarios = Engine(
            ScenarioIndex(),
            StepContext(
                tracking=lambda: Tracking(self.links()), recorder=self, hooks=LoyaltyHooks()
            ),
        )
        # Set after a commit that queued outbox messages: a dispatch loop of this process
        # waits on it, so a triggered message leaves at once rather than at its next poll.
        self.outbox_queued = threading.Event()
        # The ingest lane this pipeline applies (rapport.ingest.lanes); its transactions
        # bump the roll-ups' stripe of that number, so appliers side by side do not wait.
        self.lane = 0

    def ingest(self, batch: list[Incoming], *, retries: int = 3) -> IngestResult:
        """One transaction; retried when a concurrent writer claimed the same identifier."""
        return self.transact(lambda conn: self.ingest_in(conn, batch), retries=retries)

    def transact(
        self, work: Callable[[sa.Connection], IngestResult], *, retries: int = 3
    ) -> IngestResult:
        """Run ``work`` (which ingests through :meth:`ingest_in`) in one write transaction,
        retried when a concurrent writer claimed the same identifier."""
        for attempt in range(retries + 1):
            try:
                with writing(self.engine) as conn:
                    result = work(conn)
                if result.queued:
                    self.outbox_queued.set()
                return result
            except (sa.exc.IntegrityError, sa.exc.OperationalError) as exc:
                self.products.clear()  # it may remember writes that were rolled back
                if attempt == retries or not _retryable(exc):
                    raise
                time.sleep(0.005 * (attempt + 1))
            except Exception:
                self.products.clear()
                raise
        raise AssertionError("unreachable")

    def ingest_in(self, conn: sa.Connection, batch: list[Incoming]) -> IngestResult:
        now = self.clock.now()
        conn.info[ROLLUP_STRIPE] = self.lane
        result = IngestResult(customer_ids=[None] * len(batch))
        known = existing_message_ids(conn, [m.message_id for m in batch])
        if len(batch) >= CUSTOM_PLANS_FROM and conn.dialect.name == "postgresql":
            # The hot path's lookups take one array of keys. The driver prepares a statement
            # after a few runs, and the server then tends to keep a generic plan, made for a
            # short array: for hundreds of keys it scanned (the identity lookup took 31 ms
            # for 800 events instead of 4). Planned for this batch's arrays instead, after the
            # messageId lookup, whose generic plan (the unique index) is the right one.
            conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
        fresh: list[Incoming] = []
        positions: list[int] = []
        for i, msg in enumerate(batch):
            if msg.message_id in known:
                result.duplicates += 1
                continue
            known.add(msg.message_id)
            fresh.append(msg)
            positions.append(i)
        if not fresh:
            return result

        ids = resolve(conn, fresh, now)
        for pos, cid in zip(positions, ids, strict=True):
            result.customer_ids[pos] = cid
        result.queued = self._apply(conn, fresh, ids, now)
        result.stored = len(fresh)
        return result

    def record(
        self,
        conn: sa.Connection,
        customer_id: int,
        name: str,
        properties: dict[str, Any],
        *,
        source: str = "system",
    ) -> None:
        """An event Rapport itself observed (a consent change, a stage change, a list entry)."""
        self.record_many(conn, [(customer_id, name, properties)], source=source)

    def _apply(
        self,
        conn: sa.Connection,
        fresh: list[Incoming],
        ids: list[int],
        now: datetime,
        *,
        react: bool = True,
    ) -> int:
        """Store and fold in the events; how many outbox messages that queued."""
        rows: list[dict[str, Any]] = []
        changes: dict[int, Changes] = {}
        counters: Counter[tuple[int, str, date]] = Counter()
        consent_changes: list[ConsentChange] = []
        groups: dict[tuple[int, str], dict[str, Any]] = {}
        for msg, cid in zip(fresh, ids, strict=True):
            rows.append(
                {
                    "customer_id": cid,
                    "message_id": msg.message_id,
                    "type": msg.type,
                    "name": msg.name,
                    "properties": msg.properties,
                    "context": msg.context,
                    "occurred_at": msg.occurred_at,
                    "received_at": msg.received_at,
                    "source": msg.source,
                }
            )
            ch = changes.get(cid)
            if ch is None:
                ch = changes[cid] = Changes()
            if msg.type != "system":  # Rapport's own observations are not the customer's activity
                ch.saw(msg.occurred_at)
            counters[(cid, msg.name, msg.occurred_at.date())] += 1
            if msg.attributes is not None:
                ch.columns.update(msg.attributes.columns)
                ch.traits.update(msg.attributes.traits)
                consent_changes.extend(
                    ConsentChange(cid, channel, status, f"{msg.source}:identify", msg.occurred_at)
                    for channel, status in msg.attributes.consents.items()
                )
            if msg.emails and msg.type == "identify":
                ch.columns["email"] = msg.emails[-1]
            if msg.phones and msg.type == "identify":
                ch.columns["phone"] = msg.phones[-1]
            if msg.group_id is not None:
                groups[(cid, msg.group_id)] = msg.traits

        store_events(conn, rows)
        # Partners subscribed to these events get them through the outbox, queued in this
        # transaction so a rolled-back batch sends nothing.
        queued = notify(conn, self.subscriptions.current(conn), rows, now)
        outcome = ecommerce.apply(conn, fresh, ids, now, self.products)
        # Analytics: what became of each message, then which message each new order owes.
        fold_message_events(conn, rows)
        attribute_new_orders(
            conn,
            (
                str(ecommerce.order_id(m.properties))
                for m in fresh
                if m.name == "Order Completed" and m.type == "track"
            ),
        )
        for cid in outcome.orders_changed:
            changes.setdefault(cid, Changes()).orders_changed = True
        apply_changes(conn, changes, now)
        bump_counters(conn, counters)
        set_consents(conn, consent_changes)
        _store_groups(conn, groups, now)
        # Loyalty: points for the orders just written, bonuses, tiers; its events (tier
        # changes, points earned) are recorded like any other, so scenarios can react.
        points_events = loyalty_on_events(conn, fresh, ids, now)
        if points_events:
            self.record_many(conn, points_events, react=react)
        if react:
            queued += self._react(conn, fresh, ids, changes, consent_changes, now)
        else:
            self._refresh_loyalty_segments(conn, fresh, ids, now)
        return queued

    def _refresh_loyalty_segments(
        self, conn: sa.Connection, fresh: list[Incoming], ids: list[int], now: datetime
    ) -> None:
        """Points moved by events recorded without reactions (a scenario's ``add_points``,
        whose events the engine hands back): segments with loyalty conditions still follow
        the ledger in this transaction. Their moves start no scenario here."""
        touched = {
            cid: Touched(loyalty=True)
            for msg, cid in zip(fresh, ids, strict=True)
            if msg.name in LEDGER_EVENTS
        }
        if not touched:
            return
        moves = refresh(conn, self.segment_index.current(conn), touched, now)
        if moves:
            self.record_many(
                conn, [(m.customer_id, m.name, m.properties) for m in moves], react=False
            )

    def _react(
        self,
        conn: sa.Connection,
        fresh: list[Incoming],
        ids: list[int],
        changes: dict[int, Changes],
        consent_changes: list[ConsentChange],
        now: datetime,
    ) -> int:
        """What the stored batch sets in motion: lifecycle stages, segment membership, then
        scenarios (which see the batch's events and the segment moves they caused)."""
        touched: dict[int, Touched] = {}
        ordered = [c for c, ch in changes.items() if ch.orders_changed]
        stage_moves = update_stages(conn, ordered, now)
        if stage_moves:
            self.record_many(
                conn,
                [(cid, STAGE_EVENT, {"from": a, "to": b}) for cid, a, b in stage_moves],
                react=False,  # the segments they affect are re-checked with this batch below
            )
            for cid, _, _ in stage_moves:
                touched.setdefault(cid, Touched()).events.add(STAGE_EVENT)
        for msg, cid in zip(fresh, ids, strict=True):
            t = touched.setdefault(cid, Touched())
            t.events.add(msg.name)
            if msg.type == "system":
                _system_touches(msg, t)
        for cid, ch in changes.items():
            t = touched.setdefault(cid, Touched())
            t.fields.update(ch.columns)
            t.traits = t.traits or bool(ch.traits)
            if ch.orders_changed:
                t.fields.update(ORDER_FIELDS)
        for consent in consent_changes:
            touched.setdefault(consent.customer_id, Touched()).consents.add(consent.channel)
        moves = refresh(conn, self.segment_index.current(conn), touched, now)
        if moves:
            self.record_many(
                conn, [(m.customer_id, m.name, m.properties) for m in moves], react=False
            )
        observed = [Observed(cid, m.name, m.properties) for m, cid in zip(fresh, ids, strict=True)]
        observed += [Observed(m.customer_id, m.name, m.properties) for m in moves]
        started = self.scenarios.react(conn, observed, now)
        if started:  # message statuses and run entries/exits: no scenario reacts to them
            self.record_many(conn, started, react=False)
        return sum(1 for e in started if e[1] == QUEUED)

    def record_many(
        self,
        conn: sa.Connection,
        items: list[tuple[int, str, dict[str, Any]]],
        *,
        source: str = "system",
        react: bool = True,
    ) -> None:
        """Several events Rapport observed, stored as one batch."""
        now = self.clock.now()
        msgs = [
            Incoming(
                type="system",
                message_id=f"sys-{uuid.uuid4()}",
                name=name,
                user_id=None,
                anonymous_id=None,
                properties=properties,
                context={},
                occurred_at=now,
                received_at=now,
                source=source,
            )
            for _, name, properties in items
        ]
        self._apply(conn, msgs, [cid for cid, _, _ in items], now, react=react)


def _retryable(exc: sa.exc.DBAPIError) -> bool:
    """A concurrent writer won a race (a unique identifier, a deadlock): run again."""
    if isinstance(exc, sa.exc.IntegrityError):
        return True
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in ("40P01", "40001")  # deadlock detected, serialization failure


# Customer columns an order changes (through the recomputed aggregates and the stage).
ORDER_FIELDS = (
    "orders_count",
    "revenue",
    "first_order_at",
    "last_order_at",
    "lifecycle_stage",
    "lifecycle_changed_at",
)


# The programme's events: each comes with a ledger entry (balance, pending, lots) or a tier
# move, in the transaction that records it; segments with loyalty conditions re-check.
LEDGER_EVENTS = frozenset(
    (EARNED, ACTIVATED, REDEEMED, RETURNED, REVERSED, EXPIRED, ADJUSTED, TIER_CHANGED)
)


def _system_touches(msg: Incoming, touched: Touched) -> None:
    """What the events Rapport records itself say changed, beyond their own name."""
    props = msg.properties
    if msg.name in (ENTERED, EXITED) and isinstance(props.get("segment_id"), int):
        touched.segments.add(props["segment_id"])
    elif msg.name == "Consent Changed" and isinstance(props.get("channel"), str):
        touched.consents.add(props["channel"])
    elif msg.name == "Profile Updated" and isinstance(props.get("fields"), list):
        touched.fields.update(f for f in props["fields"] if isinstance(f, str))
        touched.traits = touched.traits or "traits" in props["fields"]
    elif msg.name == "Lifecycle Stage Changed":
        touched.fields.update(("lifecycle_stage", "lifecycle_changed_at"))
    elif msg.name in LEDGER_EVENTS:
        touched.loyalty = True


def _store_groups(
    conn: sa.Connection, groups: dict[tuple[int, str], dict[str, Any]], now: datetime
) -> None:
    if not groups:
        return
    stmt = upsert(conn, customer_groups)
    stmt = stmt.on_conflict_do_update(
        index_elements=["customer_id", "group_id"],
        set_={"traits": stmt.excluded.traits, "updated_at": stmt.excluded.updated_at},
    )
    conn.execute(
        stmt,
        [
            {"customer_id": cid, "group_id": gid, "traits": traits, "updated_at": now}
            for (cid, gid), traits in sorted(groups.items())
        ],
    )
