"""Applies the ingest inbox: the half of queued ingest that runs after the answer.

The endpoints validated each request before it was appended, as the messages it was
validated into (``inbox.encode``), so applying reads those back and runs them through the
pipeline in groups far larger than one request: the pipeline's fixed cost per transaction
is paid once for thousands of events. The group's rows are deleted in the transaction that
applies them.

It sits beside the pipeline, not in ``ingest/``, because it drives the pipeline, which
imports ``ingest``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
import sqlalchemy as sa

from rapport.errors import InvalidInput
from rapport.ingest import inbox
from rapport.ingest.incoming import Incoming
from rapport.ingest.lanes import share
from rapport.ingest.requests import messages_of
from rapport.pipeline import IngestResult, Pipeline
from rapport.settings import Settings
from rapport.store.engine import writing
from rapport.store.tables import ingest_inbox

log = logging.getLogger("rapport.ingest")

Decode = Callable[[inbox.Entry], list[Incoming]]

# Errors that say the store is unreachable or busy, not that the request is bad: the
# request keeps its place and its attempts, and the applier tries again later.
TRANSIENT = (sa.exc.OperationalError, sa.exc.InterfaceError)


@dataclass
class Applied:
    requests: int = 0
    stored: int = 0  # events stored
    duplicates: int = 0  # messages whose messageId was already stored
    parked: int = 0  # requests set aside after failing (see ``inbox.MAX_ATTEMPTS``)

    def add(self, other: Applied) -> None:
        self.requests += other.requests
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.parked += other.parked


def decoder(settings: Settings) -> Decode:
    """Read an inbox entry: the messages validated on arrival, or a raw body (rows from
    before that form) as its endpoint read it when it arrived."""

    def decode(entry: inbox.Entry) -> list[Incoming]:
        body = orjson.loads(entry.body)
        if isinstance(body, list):  # the validated messages (every body is an object)
            return inbox.decode(body)
        return messages_of(
            entry.kind,
            body,
            received_at=entry.received_at,
            phone_region=settings.default_phone_region,
            max_message_bytes=settings.max_message_bytes,
        )

    return decode


def apply_once(
    pipeline: Pipeline, decode: Decode, max_messages: int, lanes: Sequence[int] | None = None
) -> Applied:
    """Apply the oldest pending requests (of ``lanes``, or of any lane), up to
    ``max_messages`` messages, in one transaction. If that fails, each request of the
    group is applied alone, so a request that cannot be applied holds back no other; a
    transient error is raised."""
    ids: list[int] = []
    try:
        return _apply(pipeline, decode, max_messages, None, ids, lanes)
    except TRANSIENT:
        raise
    except Exception as exc:
        if len(ids) <= 1:
            return _failed(pipeline, ids, exc)
        log.warning(
            "an ingest group of %d requests failed (%s); applying one by one", len(ids), exc
        )
    done = Applied()
    for row_id in list(ids):
        try:
            done.add(_apply(pipeline, decode, max_messages, row_id, []))
        except TRANSIENT:
            raise
        except Exception as exc:
            done.add(_failed(pipeline, [row_id], exc))
    return done


def _apply(
    pipeline: Pipeline,
    decode: Decode,
    max_messages: int,
    only: int | None,
    ids: list[int],
    lanes: Sequence[int] | None = None,
) -> Applied:
    applied = Applied()

    def work(conn: sa.Connection) -> IngestResult:
        applied.requests = applied.parked = 0
        claimed = inbox.claim(conn, max_messages, only=only, lanes=lanes)
        ids[:] = [c.id for c in claimed]
        batch: list[Incoming] = []
        readable: list[int] = []
        for c in claimed:
            try:
                batch.extend(decode(c.entry))
            except (InvalidInput, orjson.JSONDecodeError) as exc:
                # Validated on arrival, so only a changed setting or a damaged row gets
                # here; retrying cannot help.
                why = f"cannot be read: {exc}"
                inbox.record_failure(conn, c.id, why, pipeline.clock.now(), park=True)
                log.error("ingest request %d parked: %s", c.id, why)
                applied.parked += 1
                continue
            readable.append(c.id)
        result = pipeline.ingest_in(conn, batch) if batch else IngestResult()
        inbox.remove(conn, readable)
        applied.requests = len(claimed)
        return result

    result = pipeline.transact(work)
    applied.stored, applied.duplicates = result.stored, result.duplicates
    return applied


def _failed(pipeline: Pipeline, ids: list[int], exc: Exception) -> Applied:
    if not ids:
        raise exc
    with writing(pipeline.engine) as conn:
        parked = inbox.record_failure(conn, ids[0], repr(exc), pipeline.clock.now())
    log.error("ingest request %d failed%s: %r", ids[0], " and is parked" if parked else "", exc)
    return Applied(requests=0, parked=int(parked))


def apply_all(
    pipeline: Pipeline,
    decode: Decode,
    max_messages: int,
    progress: Callable[[Applied], None] = lambda _: None,
    lanes: Sequence[int] | None = None,
) -> Applied:
    """Apply until nothing is pending (parked requests stay parked); ``progress`` hears
    of each group."""
    total = Applied()
    while True:
        applied = apply_once(pipeline, decode, max_messages, lanes)
        total.add(applied)
        progress(applied)
        if applied.requests == 0 and applied.parked == 0:
            return total


def has_pending(engine: sa.Engine, lanes: Sequence[int] | None = None) -> bool:
    """A plain read, so an idle applier never takes the write lock."""
    pending = sa.select(ingest_inbox.c.id).where(ingest_inbox.c.failed_at.is_(None))
    if lanes is not None:
        pending = pending.where(ingest_inbox.c.lane.in_(list(lanes)))
    with engine.connect() as conn:
        return conn.execute(pending.limit(1)).first() is not None


class InboxApplier:
    """A thread that applies the inbox while it has requests and otherwise waits for a
    wake-up (an append in this process) or the poll interval (appends by other processes).

    ``applier`` (number, count) makes it one of several appliers side by side, taking only
    its share of the lanes (``rapport.ingest.lanes.share``); its pipeline then bumps the
    roll-up stripe of its number."""

    def __init__(
        self, pipeline: Pipeline, settings: Settings, applier: tuple[int, int] | None = None
    ) -> None:
        self.pipeline = pipeline
        self.lanes = share(*applier) if applier is not None else None
        if applier is not None:
            pipeline.lane = applier[0]
        self.decode = decoder(settings)
        self.max_messages = settings.ingest_apply_max_messages
        self.interval = settings.ingest_poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="rapport-inbox", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join(timeout=60)
            self._thread = None

    def _run(self) -> None:
        backoff = self.interval
        while not self._stop.is_set():
            self._wake.clear()
            try:
                busy = False
                if has_pending(self.pipeline.engine, self.lanes):
                    applied = apply_once(self.pipeline, self.decode, self.max_messages, self.lanes)
                    busy = applied.requests > 0 or applied.parked > 0
                backoff = self.interval
            except TRANSIENT as exc:
                log.warning("applying the ingest inbox: %s; trying again in %.1f s", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            except Exception:
                log.exception("applying the ingest inbox failed")
                busy = False
            if not busy:
                self._wake.wait(self.interval)
