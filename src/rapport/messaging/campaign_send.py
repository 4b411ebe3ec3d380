"""Sending a started campaign: the frozen audience, a thousand customers per transaction.

Each chunk is one transaction that takes the campaign's pending audience rows, asks the
policy about them (a few queries for the chunk), composes each allowed message, enqueues
the chunk, marks the audience rows ``queued`` or ``skipped`` with the reason, and hands
the outbox's events to the caller's ``record`` callback — all or nothing. A crash loses
at most the chunk in progress, which is still ``pending`` and is done again on resume;
the outbox's idempotency key (``campaign:{id}:customer:{cid}``) makes a message that
somehow was enqueued already a no-op, so no customer gets two.

One process sends a campaign at a time: a lease in the campaign's ``options`` (renewed by
every chunk, taken over when it expires) keeps a worker and an API request from
interleaving, which also keeps the throttle's count of the minutes honest.

Messaging never imports the pipeline: the caller (API route, CLI, worker) passes
``record(conn, events)`` that stores ``Message Queued`` / ``Message Skipped`` on the
customers' cards in the chunk's transaction.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from rapport.clock import Clock
from rapport.errors import InvalidInput
from rapport.messaging.campaign_chunk import Run, compose_chunk
from rapport.messaging.campaign_start import cancel_campaign, start_campaign
from rapport.messaging.campaign_throttle import Throttle, throttle_load
from rapport.messaging.campaigns import Campaign, CampaignConflict, get_campaign, set_options
from rapport.messaging.compose import Tracking
from rapport.messaging.outbox import Event
from rapport.messaging.policy import load_policy
from rapport.store.engine import writing
from rapport.store.tables import campaign_audience, campaigns

log = logging.getLogger("rapport.campaigns")

RecordEvents = Callable[[sa.Connection, list[Event]], None]
Progress = Callable[[int, int], None]
CHUNK = 1000
LEASE = timedelta(minutes=5)


@dataclass
class SendReport:
    campaign_id: int
    status: str
    chunks: int = 0
    queued: int = 0
    skipped: int = 0
    # Audience rows to send (all but the control group) and how many are done.
    total: int = 0
    done: int = 0
    # Another process holds the campaign's lease; it is sending.
    busy: bool = False
    events: int = 0


def _lease_free(campaign: Campaign, me: str, now: datetime) -> bool:
    lease = campaign.options.get("lease")
    if not lease or lease.get("by") == me:
        return True
    return datetime.fromisoformat(str(lease["until"])) <= now


def _audience_counts(conn: sa.Connection, campaign_id: int) -> dict[str, int]:
    a = campaign_audience.c
    rows = conn.execute(
        sa.select(a.status, sa.func.count()).where(a.campaign_id == campaign_id).group_by(a.status)
    )
    return {str(s): int(n) for s, n in rows}


def send_campaign(
    engine: sa.Engine,
    campaign_id: int,
    *,
    clock: Clock,
    record: RecordEvents,
    tracking: Tracking,
    chunk_size: int = CHUNK,
    worker_id: str | None = None,
    progress: Progress | None = None,
) -> SendReport:
    """Work through a ``sending`` campaign's pending audience until none is left.

    Safe to call again after a crash, and from several processes: the one holding the
    lease sends; the others return at once with ``busy``.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    me = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    report = SendReport(campaign_id, status="")
    run: Run | None = None
    try:
        while True:
            now = clock.now()
            with writing(engine) as conn:
                campaign = get_campaign(conn, campaign_id, lock=True)
                report.status = campaign.status
                if campaign.status != "sending":
                    return report
                if not _lease_free(campaign, me, now):
                    report.busy = True
                    return report
                if run is None:
                    counts = _audience_counts(conn, campaign_id)
                    report.total = sum(
                        n for s, n in counts.items() if s not in ("control", "global_control")
                    )
                    report.done = report.total - counts.get("pending", 0)
                    throttle = None
                    if campaign.throttle_per_minute:
                        load = throttle_load(conn, campaign_id, now)
                        throttle = Throttle(campaign.throttle_per_minute, load)
                    run = Run(campaign, now, tracking, load_policy(conn), throttle)
                run.campaign, run.now = campaign, now
                a = campaign_audience.c
                rows = conn.execute(
                    sa.select(a.customer_id, a.variant)
                    .where(a.campaign_id == campaign_id, a.status == "pending")
                    .order_by(a.customer_id)
                    .limit(chunk_size)
                ).all()
                if not rows:
                    conn.execute(
                        campaigns.update()
                        .where(campaigns.c.id == campaign_id)
                        .values(
                            status="sent",
                            finished_at=now,
                            updated_at=now,
                            options={k: v for k, v in campaign.options.items() if k != "lease"},
                        )
                    )
                    report.status = "sent"
                    return report
                messages, events = compose_chunk(run, conn, list(rows))
                if events:
                    events.sort(key=lambda e: e[0])  # one lock order on customer rows
                    record(conn, events)
                set_options(conn, campaign, lease={"by": me, "until": (now + LEASE).isoformat()})
            report.chunks += 1
            report.events += len(events)
            report.done += len(rows)
            skipped = sum(1 for m in messages if m.skip_reason is not None)
            report.skipped += skipped
            report.queued += len(messages) - skipped
            if progress is not None:
                progress(report.done, report.total)
    except BaseException:
        _release(engine, campaign_id, me)
        raise


def _release(engine: sa.Engine, campaign_id: int, me: str) -> None:
    """Give the lease back after a failure, so a retry need not wait for it to expire."""
    try:
        with writing(engine) as conn:
            campaign = get_campaign(conn, campaign_id, lock=True)
            if (campaign.options.get("lease") or {}).get("by") == me:
                set_options(conn, campaign, lease=None)
    except Exception:  # the lease expires on its own
        log.exception("could not release the lease of campaign %s", campaign_id)


# The worker asks these every tick; built once.
_SCHEDULED = (
    sa.select(campaigns.c.id)
    .where(
        campaigns.c.status == "scheduled",
        sa.or_(
            campaigns.c.send_at.is_(None),
            campaigns.c.send_at <= sa.bindparam("now", type_=campaigns.c.send_at.type),
        ),
    )
    .order_by(campaigns.c.send_at, campaigns.c.id)
)
_SENDING = sa.select(campaigns.c.id).where(campaigns.c.status == "sending").order_by(campaigns.c.id)


def start_due_campaigns(
    engine: sa.Engine,
    clock: Clock,
    record: RecordEvents,
    *,
    tracking: Tracking,
    chunk_size: int = CHUNK,
    worker_id: str | None = None,
) -> list[SendReport]:
    """Start the scheduled campaigns whose time has come, and send every campaign that is
    ``sending`` with nobody at work on it (started by a request that died, or resumed after
    a crash). The worker calls this periodically."""
    now = clock.now()
    with engine.connect() as conn:
        due = list(conn.execute(_SCHEDULED, {"now": now}).scalars())
    for campaign_id in due:
        try:
            with writing(engine) as conn:
                start_campaign(conn, int(campaign_id), now)
        except CampaignConflict:
            continue  # another worker started it first
        except InvalidInput as exc:
            # Its template or segment was deleted while it waited: it can never go out.
            log.warning("campaign %s cannot start: %s", campaign_id, exc)
            with writing(engine) as conn:
                current = get_campaign(conn, int(campaign_id), lock=True)
                set_options(conn, current, error=f"could not start: {exc}")
                _, events = cancel_campaign(conn, int(campaign_id), now)
                record(conn, events)
    with engine.connect() as conn:
        sending = list(conn.execute(_SENDING).scalars())
    return [
        send_campaign(
            engine,
            int(campaign_id),
            clock=clock,
            record=record,
            tracking=tracking,
            chunk_size=chunk_size,
            worker_id=worker_id,
        )
        for campaign_id in sending
    ]
