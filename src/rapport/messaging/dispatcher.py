"""The dispatcher: claims due outbox rows, sends them through their channel's backend, and
records what happened.

One tick is three steps, so that no database transaction stays open across network I/O:

1. **claim** (one transaction): due rows of each channel are marked ``sending`` with a
   lease (``claimed_by``, ``claimed_until``) and one more attempt. On PostgreSQL the rows
   are picked with ``FOR UPDATE SKIP LOCKED``, so any number of dispatchers share the
   queue without waiting for or double-claiming each other's rows; on SQLite the write
   transaction is ``BEGIN IMMEDIATE`` (one writer at a time) and the UPDATE re-checks that
   the row is still due. Rows whose customer unsubscribed from the channel meanwhile, or
   whose address is on the suppression list (a hard bounce, a complaint, an operator's
   block), are not sent: they become ``skipped`` and their fallback chain moves on.
2. **send**: each channel's batch goes to its backend; channels go concurrently.
3. **finish** (one transaction): each row we still hold the lease on becomes ``sent``,
   ``rejected``, ``failed`` (retry later, exponential backoff with jitter) or ``dead`` (no
   attempts left); rejected, skipped and dead rows enqueue the next channel of their
   fallback chain; the status events go to ``record`` in the same transaction.

**Exactly once, and the one window where it is at least once.** A row is claimed by one
dispatcher at a time, and its result is written only by the dispatcher holding the lease,
so a message is handed to a provider once, except in one case: the provider accepted it
and the dispatcher died (or lost the database) before step 3 committed. The lease then
expires and another dispatcher sends the row again. Nothing on our side can tell "sent,
result lost" from "never sent". The duplicate carries the same message id — e-mail's
``Message-ID`` header, the webhook's ``Idempotency-Key`` header and body ``id`` — because
the id is the idempotency key, so providers and receivers that de-duplicate drop it.
A lease therefore must outlast any send (``lease_seconds``, 5 minutes by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from rapport.clock import Clock, SystemClock
from rapport.messaging.channels.base import Backend, SendResult
from rapport.messaging.limits import CircuitBreaker, TokenBucket
from rapport.messaging.outbox import (
    BOUNCED,
    FAILED,
    SENT,
    SKIPPED,
    Event,
    QueuedMessage,
    claim_due,
    enqueue,
    event_for,
    next_in_chain,
    outgoing,
    release,
    unsubscribed,
)
from rapport.messaging.suppressions import suppressed_reasons
from rapport.store.engine import writing
from rapport.store.fast import db_time, update_rows
from rapport.store.tables import outbox

log = logging.getLogger("rapport.dispatcher")

RecordEvents = Callable[[sa.Connection, list[Event]], None]


@dataclass(frozen=True)
class Retry:
    """Exponential backoff: ``base × 2^(attempt-1)`` seconds, capped, minus up to ``jitter``
    of it at random, so messages that failed together do not come back together."""

    max_attempts: int = 5
    base_seconds: float = 30.0
    max_seconds: float = 3600.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")

    def delay(self, attempt: int, rng: random.Random) -> timedelta:
        raw = min(self.max_seconds, self.base_seconds * 2 ** (attempt - 1))
        return timedelta(seconds=raw * (1 - self.jitter * rng.random()))


@dataclass(frozen=True)
class Route:
    """A channel's backend and the limits around it (``rate`` in messages per second)."""

    backend: Backend
    rate: float | None = None
    burst: float | None = None
    breaker_failures: int = 5
    breaker_seconds: float = 60.0


@dataclass(frozen=True)
class Outcome:
    status: str  # sent | rejected | failed | skipped | exhausted
    provider_id: str | None = None
    error: str | None = None


@dataclass
class Claim:
    """Rows this dispatcher holds the lease on: those to send, and those decided already."""

    to_send: dict[str, list[Any]] = field(default_factory=dict)
    decided: list[tuple[Any, Outcome]] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.to_send.values()) + len(self.decided)


@dataclass
class _Claimed:
    """What a claim transaction read: the rows, and what decides whether each is sent."""

    rows: list[Any]
    said_no: set[tuple[int, str]]
    blocked: dict[int, str]
    previous: dict[int, dict[str, Any]]


@dataclass
class DispatchReport:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    dead: int = 0
    rejected: int = 0
    skipped: int = 0
    lost: int = 0  # leases that expired and were taken over before we finished
    events: list[Event] = field(default_factory=list)
    # Outbox ids of the rows that became ``sent``, in the order they were recorded: what
    # a reader of the sent mail looks up by primary key instead of scanning for it.
    sent_ids: list[int] = field(default_factory=list)


class Dispatcher:
    """Sends the outbox through a registry of channel → backend. Use from one thread."""

    def __init__(
        self,
        engine: sa.Engine,
        routes: Mapping[str, Backend | Route],
        *,
        clock: Clock | None = None,
        retry: Retry | None = None,
        batch_size: int = 100,
        lease_seconds: float = 300.0,
        record: RecordEvents | None = None,
        worker_id: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.engine = engine
        self.clock = clock or SystemClock()
        self.retry = retry or Retry()
        self.batch_size = batch_size
        self.lease = timedelta(seconds=lease_seconds)
        self.record = record
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.rng = rng or random.Random()
        self.routes = {ch: r if isinstance(r, Route) else Route(r) for ch, r in routes.items()}
        self.buckets = {
            ch: TokenBucket(r.rate, r.burst, self.clock)
            for ch, r in self.routes.items()
            if r.rate is not None
        }
        self.breakers = {
            ch: CircuitBreaker(r.breaker_failures, r.breaker_seconds, self.clock)
            for ch, r in self.routes.items()
        }
        # Backends keep connections bound to an event loop: one loop for the dispatcher's life.
        self._loop = asyncio.new_event_loop()
        self._pool: ThreadPoolExecutor | None = None  # run_batches' database thread

    # -- one tick ----------------------------------------------------------------------

    def run_once(self) -> DispatchReport:
        claim = self.claim()
        if not len(claim):
            return DispatchReport()
        results = self.send(claim)
        return self.finish(claim, results)

    def allowance(self, channel: str) -> int:
        """How many rows of ``channel`` may be claimed now, after the breaker and the bucket."""
        n = self.breakers[channel].allowance(self.batch_size)
        bucket = self.buckets.get(channel)
        if bucket is not None:
            n = min(n, bucket.available())
        return n

    def claim(self) -> Claim:
        limits = self._limits()
        if not limits:
            return Claim()
        return self._sort(self._claim_rows(limits))

    def _limits(self) -> dict[str, int]:
        return {ch: n for ch in self.routes if (n := self.allowance(ch)) > 0}

    def _claim_rows(self, limits: Mapping[str, int]) -> _Claimed:
        """The claim transaction (database work only: it may run on the database thread)."""
        now = self.clock.now()
        previous: dict[int, dict[str, Any]] = {}
        with writing(self.engine) as conn:
            rows: list[Any] = []
            for channel, limit in limits.items():
                rows += claim_due(
                    conn, channel, limit, now, self.worker_id, now + self.lease, previous
                )
            said_no = unsubscribed(conn, rows)
            blocked = suppressed_reasons(conn, rows)
        return _Claimed(rows, said_no, blocked, previous)

    def _sort(self, claimed: _Claimed) -> Claim:
        """Rows to send and rows decided already; the rate limits take what is sent."""
        claim = Claim()
        for row in sorted(claimed.rows, key=lambda r: r.id):
            if row.attempts > self.retry.max_attempts:
                claim.decided.append((row, Outcome("exhausted", error=_EXHAUSTED)))
            elif (row.customer_id, row.channel) in claimed.said_no:
                reason = f"unsubscribed from {row.channel}"
                claim.decided.append((row, Outcome("skipped", error=reason)))
            elif row.id in claimed.blocked:
                reason = f"suppressed: {claimed.blocked[row.id]}"
                claim.decided.append((row, Outcome("skipped", error=reason)))
            else:
                claim.to_send.setdefault(row.channel, []).append(row)
        for channel, batch in claim.to_send.items():
            if channel in self.buckets:
                self.buckets[channel].take(len(batch))
        return claim

    # -- several ticks, overlapped ---------------------------------------------------------

    def run_batches(self, max_batches: int = 10) -> DispatchReport:
        """Up to ``max_batches`` ticks back to back, as :meth:`run_once` would run them,
        with each batch's database work done while the batch before it is on the wire.

        One tick leaves the connections idle while it claims and while it records the
        results: with a batch of 100 that was an eighth to a sixth of the sending time.
        Here a database thread records batch *k-1* and claims batch *k+1* while batch *k* is
        sent, so the connections keep working. Every claimed row is finished when this
        returns, as after :meth:`run_once`; the report is the sum of the ticks'.

        The next batch is claimed ahead only while every circuit breaker is closed; when
        the batch on the wire opens one, the rows claimed ahead for that channel are
        released untouched (status, attempts and lease as they were), as a tick would not
        have claimed them.
        """
        if max_batches < 1:
            raise ValueError("max_batches must be at least 1")
        total = DispatchReport()
        claim = self.claim()
        done: tuple[Claim, dict[str, list[SendResult]]] | None = None
        ticks = 0
        while len(claim):
            ticks += 1
            ahead = (
                self._limits()
                if ticks < max_batches and all(b.state == "closed" for b in self.breakers.values())
                else {}
            )
            work = self._db_thread().submit(self._between, done, ahead)
            try:
                results = self.send(claim)
            except BaseException:
                with contextlib.suppress(Exception):  # the first error is the one to see
                    _, claimed = work.result()
                    if claimed is not None:
                        self._release(claimed, claimed.rows)
                raise
            try:
                report, claimed = work.result()
            except BaseException:
                # The batch before could not be recorded (its rows wait for their lease,
                # as after a failed tick) or the next claim failed: this one was sent, so
                # record it before giving up.
                self.finish(claim, results)
                raise
            if report is not None:
                _add(total, report)
            done = (claim, results)
            claim = Claim() if claimed is None else self._sort(self._keep_closed(claimed))
        if done is not None:
            _add(total, self.finish(*done))
        return total

    def _between(
        self, done: tuple[Claim, Mapping[str, Sequence[SendResult]]] | None, ahead: dict[str, int]
    ) -> tuple[DispatchReport | None, _Claimed | None]:
        """The database thread's part: record the batch sent before, claim the next one."""
        report = None if done is None else self.finish(*done)
        return report, self._claim_rows(ahead) if ahead else None

    def _keep_closed(self, claimed: _Claimed) -> _Claimed:
        """Release the rows claimed ahead for channels whose breaker has opened since."""
        stopped = {ch for ch, breaker in self.breakers.items() if breaker.state != "closed"}
        back = [r for r in claimed.rows if r.channel in stopped]
        if not back:
            return claimed
        self._release(claimed, back)
        claimed.rows = [r for r in claimed.rows if r.channel not in stopped]
        return claimed

    def _release(self, claimed: _Claimed, rows: Sequence[Any]) -> None:
        with writing(self.engine) as conn:
            release(conn, [r.id for r in rows], claimed.previous, self.worker_id)

    def _db_thread(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="rapport-dispatch-db")
        return self._pool

    def send(self, claim: Claim) -> dict[str, list[SendResult]]:
        """Hand each channel's batch to its backend; results feed the circuit breakers."""
        results = self._loop.run_until_complete(self._send_all(claim.to_send))
        for channel, answers in results.items():
            breaker = self.breakers[channel]
            for answer in answers:
                breaker.record(answer.status != "failed")
        return results

    async def _send_all(self, batches: dict[str, list[Any]]) -> dict[str, list[SendResult]]:
        channels = list(batches)
        answers = await asyncio.gather(*(self._send_channel(ch, batches[ch]) for ch in channels))
        return dict(zip(channels, answers, strict=True))

    async def _send_channel(self, channel: str, rows: list[Any]) -> list[SendResult]:
        messages = [outgoing(r) for r in rows]
        try:
            answers = await self.routes[channel].backend.send(messages)
        except Exception as exc:  # a backend bug or outage must not strand the batch
            log.exception("%s backend raised", channel)
            answers = [
                SendResult(m.id, "failed", error=f"backend error: {exc!r}") for m in messages
            ]
        by_id = {a.message_id: a for a in answers}
        return [
            by_id.get(m.id) or SendResult(m.id, "failed", error="the backend gave no result")
            for m in messages
        ]

    def finish(self, claim: Claim, results: Mapping[str, Sequence[SendResult]]) -> DispatchReport:
        """Record the outcomes, retrying the transaction when it loses a lock race.

        If it cannot be written at all the rows stay ``sending`` and are sent again when the
        lease expires: the at-least-once window described above.
        """
        items = list(claim.decided)
        for channel, rows in claim.to_send.items():
            for row, answer in zip(rows, results.get(channel, ()), strict=False):
                items.append((row, Outcome(answer.status, answer.provider_id, answer.error)))
        for attempt in range(4):
            try:
                with writing(self.engine) as conn:
                    return self._finish_in(conn, items, len(claim))
            except sa.exc.DBAPIError as exc:
                if attempt == 3 or not _retryable(exc):
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def _finish_in(
        self, conn: sa.Connection, items: list[tuple[Any, Outcome]], claimed: int
    ) -> DispatchReport:
        now = self.clock.now()
        report = DispatchReport(claimed=claimed)
        ids = [row.id for row, _ in items]
        owned = set(conn.execute(_OWNED, {"ids": ids, "worker": self.worker_id}).scalars())
        changes: list[tuple[Any, ...]] = []  # (id, *the values of _FINISH)
        events: list[Event] = []
        follow: list[QueuedMessage] = []
        at = db_time(conn, now)
        for row, outcome in items:
            if row.id not in owned:
                report.lost += 1
                continue
            status, error = outcome.status, outcome.error
            provider_id, sent_at, next_at = row.provider_id, None, row.next_attempt_at
            if status == "sent":
                provider_id, sent_at = outcome.provider_id, at
                report.sent += 1
                report.sent_ids.append(int(row.id))
                events += event_for(row, SENT, provider_id=outcome.provider_id)
            elif status == "rejected":
                report.rejected += 1
                events += event_for(row, BOUNCED, reason=error)
            elif status == "skipped":
                report.skipped += 1
                events += event_for(row, SKIPPED, reason=error)
            elif status == "failed" and row.attempts < self.retry.max_attempts:
                status = "failed"
                next_at = now + self.retry.delay(row.attempts, self.rng)
                report.retrying += 1
            else:  # failed on the last attempt, or abandoned by dying workers too often
                status = "dead"
                report.dead += 1
                events += event_for(row, FAILED, reason=error, attempts=str(row.attempts))
            next_at = db_time(conn, next_at)
            changes.append((row.id, status, provider_id, error, sent_at, next_at, None, None, at))
            if status in ("rejected", "skipped", "dead"):
                nxt = next_in_chain(row)
                if nxt is not None:
                    follow.append(nxt)
        # Set-based: one statement for the batch on PostgreSQL.
        update_rows(conn, "outbox", "id", _FINISH, changes)
        if follow:
            events += enqueue(conn, follow, now)
        if events and self.record is not None:
            events.sort(key=lambda e: e[0])  # one lock order on customer rows
            self.record(conn, events)
        report.events = events
        return report

    def close(self) -> None:
        """Close the backends' connections, the event loop and the database thread."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        for route in self.routes.values():
            try:
                self._loop.run_until_complete(route.backend.close())
            except Exception:
                log.exception("closing the %s backend failed", route.backend.channel)
        self._loop.close()


_EXHAUSTED = "the workers sending it stopped before recording a result too many times"

_OWNED = (
    sa.select(outbox.c.id)
    .where(
        outbox.c.id.in_(sa.bindparam("ids", expanding=True)),
        outbox.c.status == "sending",
        outbox.c.claimed_by == sa.bindparam("worker"),
    )
    .with_for_update()
)
# What finishing sets on each row: (column, its PostgreSQL type, the expression).
_FINISH = (
    ("status", "text", "{new}"),
    ("provider_id", "text", "{new}"),
    ("last_error", "text", "{new}"),
    ("sent_at", "timestamptz", "{new}"),
    ("next_attempt_at", "timestamptz", "{new}"),
    ("claimed_by", "text", "{new}"),
    ("claimed_until", "timestamptz", "{new}"),
    ("updated_at", "timestamptz", "{new}"),
)


def _add(total: DispatchReport, one: DispatchReport) -> None:
    for name in ("claimed", "sent", "retrying", "dead", "rejected", "skipped", "lost"):
        setattr(total, name, getattr(total, name) + getattr(one, name))
    total.events += one.events
    total.sent_ids += one.sent_ids


def _retryable(exc: sa.exc.DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlstate", None)
    if code in ("40P01", "40001"):  # deadlock, serialization failure
        return True
    return "database is locked" in str(exc.orig)
