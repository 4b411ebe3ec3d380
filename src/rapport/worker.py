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
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.messaging.channels.base import Backend
from rapport.messaging.dispatcher import Dispatcher, DispatchReport, RecordEvents, Route
from rapport.messaging.outbox import Event
from rapport.pipeline import Pipeline
from rapport.segments.lifecycle import recompute_lifecycle
from rapport.segments.rfm import recompute_rfm
from rapport.segments.sweep import sweep
from rapport.store.engine import writing

log = logging.getLogger("rapport.worker")


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
    """RFM cells and lifecycle stages move with time; segments reading them follow."""
    now = now or pipeline.clock.now()
    recompute_rfm(pipeline.engine, now)
    recompute_lifecycle(pipeline.engine, pipeline, now)
    with writing(pipeline.engine) as conn:
        index = pipeline.segment_index.current(conn)
        readers = [
            i.segment.id
            for i in index.items
            if i.deps.customer_fields
            & {"rfm_cell", "rfm_recency", "rfm_frequency", "rfm_monetary", "lifecycle_stage"}
        ]
        moves = sweep(conn, index, now, readers) if readers else []
        pipeline.record_many(
            conn, [(m.customer_id, m.name, m.properties) for m in moves], react=False
        )


class Sweeper:
    """Runs ``sweep_segments`` every ``interval`` seconds and ``daily`` once a day."""

    def __init__(self, pipeline: Pipeline, interval: float, daily_interval: float = 86400) -> None:
        self.pipeline = pipeline
        self.interval = interval
        self.daily_interval = daily_interval
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
            self._stop.wait(self.interval)
            since_daily += self.interval


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


class DispatchLoop:
    """Runs a dispatcher in its own thread: drains what is due, then waits ``interval``."""

    def __init__(self, dispatcher: Dispatcher, interval: float = 1.0) -> None:
        self.dispatcher = dispatcher
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rapport-dispatch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                report = DispatchReport()
                try:
                    report = self.dispatcher.run_once()
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
                    self._stop.wait(self.interval)
        finally:
            self.dispatcher.close()
