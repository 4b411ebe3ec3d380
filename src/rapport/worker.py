"""Work that time alone makes necessary: segment sweeps, the daily RFM and lifecycle runs,
and delivering the outbox.

``rapport serve`` runs one ``Sweeper`` thread beside the API; ``rapport worker`` runs it on
its own. Each run is one transaction, so two sweepers on PostgreSQL at once at worst do the
same work twice; membership rows cannot duplicate (a partial unique index guards them).

``dispatcher_for`` and ``DispatchLoop`` are the glue between messaging and the pipeline:
messaging may not import the pipeline, so the dispatcher gets a callback that records
message statuses through it, in the transaction that changes the status.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rapport.access.signing import signing_key
from rapport.analytics.clv.errors import ClvError
from rapport.analytics.clv.scoring import SCORED_FIELDS, score_store
from rapport.errors import InvalidInput
from rapport.loyalty.daily import run_daily as run_loyalty_daily
from rapport.messaging.backends import routes_from_config
from rapport.messaging.campaign_send import SendReport, start_due_campaigns
from rapport.messaging.channel_config import ChannelsConfig, dump, load_channels
from rapport.messaging.channels.base import CHANNELS, Backend
from rapport.messaging.compose import Tracking
from rapport.messaging.delivery_reports import receipt_events
from rapport.messaging.dispatcher import Dispatcher, DispatchReport, RecordEvents, Route
from rapport.messaging.event_subscriptions import signing_lookup
from rapport.messaging.outbox import QUEUED, Event
from rapport.messaging.tracking import Links
from rapport.pipeline import Pipeline
from rapport.recommend.build import build_daily as build_recommendations_daily
from rapport.scenarios.time_triggers import scan_time_triggers
from rapport.segments.lifecycle import recompute_lifecycle
from rapport.segments.rfm import recompute_rfm
from rapport.segments.sweep import sweep
from rapport.settings import Settings
from rapport.store.engine import writing
from rapport.store.tables import outbox

log = logging.getLogger("rapport.worker")

# Records SMPP delivery receipts, (provider message id, stat) pairs, in a transaction.
ReceiptsHandler = Callable[[sa.Connection, list[tuple[str, str]]], None]


@dataclass
class SweepResult:
    entered: int
    exited: int


def sweep_segments(pipeline: Pipeline, now: datetime | None = None) -> SweepResult:
    """Re-check time-dependent segments (and their readers); entries and exits are events."""
    now = now or pipeline.clock.now()
    with writing(pipeline.engine) as conn:
        moves = sweep(conn, pipeline.segment_index.current(conn), now)
        pipeline.record_many(
            conn, [(m.customer_id, m.name, m.properties) for m in moves], react=False
        )
    entered = sum(1 for m in moves if m.name == "Segment Entered")
    return SweepResult(entered, len(moves) - entered)


def daily(pipeline: Pipeline, now: datetime | None = None) -> None:
    """RFM cells, lifecycle stages and the CLV scores move with time; segments reading
    them follow. A store with too little history for the CLV models keeps no scores (the
    models refuse rather than guess) and the rest of the day's work still runs."""
    now = now or pipeline.clock.now()
    recompute_rfm(pipeline.engine, now)
    recompute_lifecycle(pipeline.engine, pipeline, now)
    try:
        score_store(pipeline.engine, now)
    except ClvError as exc:
        log.info("CLV scores not refreshed: %s", exc)
    run_loyalty_daily(pipeline.engine, now, event_recorder(pipeline))  # scenarios react
    with writing(pipeline.engine) as conn:
        index = pipeline.segment_index.current(conn)
        readers = [
            i.segment.id
            for i in index.items
            if i.deps.customer_fields
            & {
                "rfm_cell",
                "rfm_recency",
                "rfm_frequency",
                "rfm_monetary",
                "lifecycle_stage",
                *SCORED_FIELDS,
            }
        ]
        moves = sweep(conn, index, now, readers) if readers else []
        pipeline.record_many(
            conn, [(m.customer_id, m.name, m.properties) for m in moves], react=False
        )
    build_recommendations_daily(pipeline.engine, now)  # last: the longest, and it stands alone


class Sweeper:
    """Runs ``sweep_segments`` every ``interval`` seconds and ``daily`` once a day, and
    starts the campaigns whose time has come (``run_campaigns``) on the same beat."""

    def __init__(
        self,
        pipeline: Pipeline,
        interval: float,
        daily_interval: float = 86400,
        links: Links | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.interval = interval
        self.daily_interval = daily_interval
        self.links = links  # for campaign messages; made from the settings on first use
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rapport-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        since_daily = self.daily_interval  # run the daily job on start
        while not self._stop.is_set():
            try:
                if since_daily >= self.daily_interval:
                    daily(self.pipeline)
                    since_daily = 0.0
                result = sweep_segments(self.pipeline)
                if result.entered or result.exited:
                    log.info("sweep: %d entered, %d exited", result.entered, result.exited)
            except Exception:  # a failed run is retried at the next tick, never fatal
                log.exception("sweep failed")
            try:
                self.links = self.links or settings_links(self.pipeline)
                run_campaigns(self.pipeline, self.links)
            except Exception:  # a campaign's progress is in the store; the next tick resumes
                log.exception("campaigns failed")
            self._stop.wait(self.interval)
            since_daily += self.interval


def settings_links(pipeline: Pipeline) -> Links:
    """The public links of this deployment (RAPPORT_PUBLIC_URL, the signing key)."""
    settings = Settings()
    key = signing_key(pipeline.engine, settings.secret_key, pipeline.clock.now())
    return Links(settings.public_url, key)


def campaign_recorder(pipeline: Pipeline) -> RecordEvents:
    """Campaign events (``Message Queued`` / ``Skipped``) on the cards, without re-checking
    segments for each customer of a chunk: those events change no segment rule."""

    def record(conn: sa.Connection, events: list[Event]) -> None:
        pipeline.record_many(conn, events, react=False)

    return record


def run_campaigns(pipeline: Pipeline, links: Links) -> list[SendReport]:
    """Start the scheduled campaigns that are due; finish any a stopped process left."""
    return start_due_campaigns(
        pipeline.engine, pipeline.clock, campaign_recorder(pipeline), tracking=Tracking(links)
    )


def event_recorder(pipeline: Pipeline) -> RecordEvents:
    """The dispatcher's ``record`` callback: statuses become events on the customer's card."""

    def record(conn: sa.Connection, events: list[Event]) -> None:
        pipeline.record_many(conn, events)

    return record


def dispatcher_for(
    pipeline: Pipeline, routes: Mapping[str, Backend | Route], **options: Any
) -> Dispatcher:
    """A dispatcher on the pipeline's store and clock whose statuses go through the pipeline."""
    return Dispatcher(
        pipeline.engine, routes, clock=pipeline.clock, record=event_recorder(pipeline), **options
    )


def receipt_recorder(pipeline: Pipeline) -> ReceiptsHandler:
    """SMPP delivery receipts become events on the card (delivered, bounced)."""

    def record(conn: sa.Connection, pairs: list[tuple[str, str]]) -> None:
        now = pipeline.clock.now()
        events = [e for pid, stat in pairs for e in receipt_events(conn, pid, stat, now)]
        if events:
            pipeline.record_many(conn, events)

    return record


class ConfiguredDispatcher:
    """The dispatcher for the channels configured in the store, rebuilt when they change.

    An operator edits the configuration through the API while ``rapport serve`` and any
    ``rapport worker`` keep running, so each of them re-reads the stored configuration
    every ``check_seconds`` (one small row) and, when it differs from what it built, makes
    new backends and closes the old ones. A channel that is not configured, or whose
    backend cannot be made, is simply not claimed: its messages wait in the outbox, and
    the wait is logged once per channel.

    SMPP delivery receipts arrive on the SMPP listener thread; they are put on a queue and
    handed to ``on_receipts`` (by default: recorded as delivery events) between ticks, in
    a transaction, on this thread.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        check_seconds: float = 5.0,
        on_receipts: ReceiptsHandler | None = None,
        **options: Any,
    ) -> None:
        self.pipeline = pipeline
        self.check_seconds = check_seconds
        self.on_receipts = on_receipts or receipt_recorder(pipeline)
        self.options = options
        self.receipts: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._dispatcher: Dispatcher | None = None
        self._built: dict[str, Any] | None = None
        self._checked = -math.inf
        self._told_waiting: set[str] = set()

    def reload_soon(self) -> None:
        """Re-read the configuration at the next tick (the API calls it after a change)."""
        self._checked = -math.inf

    def current(self) -> Dispatcher:
        if self._dispatcher is None or time.monotonic() - self._checked >= self.check_seconds:
            self._checked = time.monotonic()
            self._refresh()
        assert self._dispatcher is not None
        return self._dispatcher

    def run_once(self) -> DispatchReport:
        report = self.current().run_once()
        self.drain_receipts()
        return report

    def run_batches(self, max_batches: int = 10) -> DispatchReport:
        report = self.current().run_batches(max_batches)
        self.drain_receipts()
        return report

    def drain_receipts(self) -> int:
        pairs: list[tuple[str, str]] = []
        while True:
            try:
                pairs.append(self.receipts.get_nowait())
            except queue.Empty:
                break
        if pairs:
            with writing(self.pipeline.engine) as conn:
                self.on_receipts(conn, pairs)
        return len(pairs)

    def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.close()
            self._dispatcher = None
            self._built = None

    def _refresh(self) -> None:
        engine = self.pipeline.engine
        with engine.connect() as conn:
            config: ChannelsConfig | None
            try:
                config = load_channels(conn).config
            except InvalidInput as exc:  # written by hand, or by an older version
                log.error("the stored channel configuration is not valid: %s", exc)
                config = None if self._dispatcher is not None else ChannelsConfig()
            if config is not None and dump(config) != self._built:
                self._rebuild(config)
            self._tell_waiting(conn)

    def _rebuild(self, config: ChannelsConfig) -> None:
        def failed(channel: str, exc: Exception) -> None:
            log.error(
                "the %s channel is configured but its backend cannot be made: %s", channel, exc
            )

        routes = routes_from_config(
            config,
            on_receipt=lambda provider_id, stat: self.receipts.put((provider_id, stat)),
            subscriptions=signing_lookup(self.pipeline.engine),
            on_error=failed,
        )
        old, self._dispatcher = (
            self._dispatcher,
            dispatcher_for(self.pipeline, routes, **self.options),
        )
        self._built = dump(config)
        self._told_waiting = set()
        if old is not None:
            old.close()
        log.info("dispatching %s", ", ".join(sorted(routes)) or "no channel")

    def _tell_waiting(self, conn: sa.Connection) -> None:
        assert self._dispatcher is not None
        for channel in CHANNELS:
            if channel in self._dispatcher.routes or channel in self._told_waiting:
                continue
            waiting = conn.execute(
                sa.select(outbox.c.id)
                .where(outbox.c.channel == channel, outbox.c.status.in_(("queued", "failed")))
                .limit(1)
            ).first()
            if waiting is not None:
                self._told_waiting.add(channel)
                log.warning(
                    "messages on the %s channel wait in the outbox: the channel is not configured",
                    channel,
                )


class ScenarioLoop:
    """Advances due scenario runs in its own thread: a batch per transaction until none
    is due, then waits ``interval``. On PostgreSQL any number of these (in any number of
    ``rapport worker`` processes) share the runs: each claims with SKIP LOCKED."""

    def __init__(self, pipeline: Pipeline, interval: float = 1.0, batch: int = 500) -> None:
        self.pipeline = pipeline
        self.interval = interval
        self.batch = batch
        self._time_scanned: datetime | None = None  # the clock's time of the last scan
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rapport-scenarios", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def run_once(self) -> int:
        """One batch in one transaction; how many runs were advanced."""
        pipeline = self.pipeline
        self.scan_time_triggers()
        with writing(pipeline.engine) as conn:
            n, events = pipeline.scenarios.run_due(conn, pipeline.clock.now(), self.batch)
            if events:
                pipeline.record_many(conn, events, react=False)
        if any(e[1] == QUEUED for e in events):  # committed: the dispatcher may take them
            pipeline.outbox_queued.set()
        return n

    def scan_time_triggers(self) -> dict[int, int]:
        """Date, inactivity and schedule triggers, at most once a minute of the clock: a
        scan reads the customers table, which a one-second tick must not; a failed scan
        is logged and must not stop due runs from advancing."""
        now = self.pipeline.clock.now()
        if self._time_scanned is not None and now - self._time_scanned < timedelta(minutes=1):
            return {}
        self._time_scanned = now
        try:
            return scan_time_triggers(self.pipeline, now)
        except Exception:  # retried at the next minute
            log.exception("time-trigger scan failed")
            return {}

    def _run(self) -> None:
        while not self._stop.is_set():
            n = 0
            try:
                n = self.run_once()
            except Exception:  # the batch rolled back whole; the next tick redoes it
                log.exception("scenario step failed")
            if n < self.batch:
                self._stop.wait(self.interval)


class DispatchLoop:
    """Runs a dispatcher in its own thread: drains what is due, then waits ``interval``
    or until ``wake`` is set, whichever comes first.

    ``wake`` defaults to the pipeline's ``outbox_queued`` for a ``ConfiguredDispatcher``:
    the pipeline sets it after committing a batch that queued messages (a triggered
    scenario's send), so they leave within milliseconds, not at the next poll. Messages
    queued by other processes are still found by polling.
    """

    def __init__(
        self,
        dispatcher: Dispatcher | ConfiguredDispatcher,
        interval: float = 1.0,
        wake: threading.Event | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.interval = interval
        if wake is None and isinstance(dispatcher, ConfiguredDispatcher):
            wake = dispatcher.pipeline.outbox_queued
        self.wake = wake or threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rapport-dispatch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                report = DispatchReport()
                try:
                    # Several batches, each recorded while the next is on the wire.
                    report = self.dispatcher.run_batches()
                    if report.dead or report.rejected:
                        log.info(
                            "dispatch: %d sent, %d rejected, %d dead",
                            report.sent,
                            report.rejected,
                            report.dead,
                        )
                except Exception:  # retried at the next tick; leases cover a lost batch
                    log.exception("dispatch failed")
                if not report.claimed:
                    # Cleared before the next claim, so a set that comes during it is
                    # not lost: it only makes the claim after it come at once.
                    self.wake.wait(self.interval)
                    self.wake.clear()
        finally:
            self.dispatcher.close()
