"""The outbox: messages to send, written in the sender's own transaction.

Whoever decides that a message goes out (a scenario step, a campaign) calls
:func:`enqueue` inside the transaction that records that decision. The row's
``idempotency_key`` ("run:9:step:3", "campaign:12:customer:345") is unique, and enqueueing
an existing key does nothing, so a step that is retried after a crash, or a campaign that
is started twice, still produces one row, and the dispatcher sends each row once.

Status of a row::

    queued ──claim──► sending ──► sent
      ▲                  │ ├────► rejected   (permanent; fallback chain continues)
      │                  │ └────► skipped    (unsubscribed or suppressed meanwhile;
      │                  │                      fallback continues)
      └── failed ◄───────┘ failed, attempts left (retried at next_attempt_at)
                         └──────► dead       (no attempts left; fallback continues)

A row enqueued with ``skip_reason`` is stored as ``skipped`` straight away: the policy
decided not to send, the decision is on record, and the fallback chain moves on.

Every transition a customer should see is returned as an event tuple
``(customer_id, name, properties)``; messaging never records them itself (it must not
import the pipeline), its caller does, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from rapport.messaging.channels.base import CHANNELS, OutgoingMessage
from rapport.store.engine import upsert
from rapport.store.tables import consents, outbox

Event = tuple[int, str, dict[str, Any]]

STATUSES = ("queued", "sending", "sent", "failed", "dead", "skipped", "rejected")
# Statuses a row never leaves.
FINAL = ("sent", "dead", "skipped", "rejected")

QUEUED = "Message Queued"
SENT = "Message Sent"
FAILED = "Message Failed"
BOUNCED = "Message Bounced"
SKIPPED = "Message Skipped"
# Later states, reported by tracking, provider webhooks, receipts and bounce intake.
DELIVERED = "Message Delivered"
OPENED = "Message Opened"
CLICKED = "Message Clicked"
COMPLAINED = "Message Complained"
UNSUBSCRIBED = "Message Unsubscribed"

Ident = str | int | None


class OutboxError(ValueError):
    """A message that cannot be queued as given (unknown channel, empty key)."""


@dataclass(frozen=True)
class Fallback:
    """The next channel to try, with its own recipient; content left None is inherited."""

    channel: str
    recipient: str
    subject: str | None = None
    body_text: str | None = None
    body_html: str | None = None
    data: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"channel": self.channel, "recipient": self.recipient}
        for name in ("subject", "body_text", "body_html", "data"):
            if getattr(self, name) is not None:
                doc[name] = getattr(self, name)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Fallback:
        return cls(
            channel=doc["channel"],
            recipient=doc["recipient"],
            subject=doc.get("subject"),
            body_text=doc.get("body_text"),
            body_html=doc.get("body_html"),
            data=doc.get("data"),
        )


@dataclass(frozen=True)
class QueuedMessage:
    """A rendered message for the outbox, with where it came from and what to try next."""

    idempotency_key: str
    channel: str
    recipient: str
    body_text: str
    customer_id: int | None = None
    subject: str | None = None
    body_html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    campaign_id: Ident = None
    scenario_id: Ident = None
    step: Ident = None
    template_id: Ident = None
    variant: str | None = None
    fallback: tuple[Fallback, ...] = ()
    # Not before this moment (a scheduled campaign, a customer's local hour).
    send_at: datetime | None = None
    # The policy decided not to send on this channel: stored as skipped, fallback follows.
    skip_reason: str | None = None


def _str(value: Ident) -> str | None:
    return None if value is None else str(value)


def _row(msg: QueuedMessage, now: datetime) -> dict[str, Any]:
    if not msg.idempotency_key:
        raise OutboxError("a message needs an idempotency key")
    for channel in (msg.channel, *(f.channel for f in msg.fallback)):
        if channel not in CHANNELS:
            raise OutboxError(f"unknown channel {channel!r} (one of {', '.join(CHANNELS)})")
    return {
        "idempotency_key": msg.idempotency_key,
        "customer_id": msg.customer_id,
        "channel": msg.channel,
        "recipient": msg.recipient,
        "subject": msg.subject,
        "body_text": msg.body_text,
        "body_html": msg.body_html,
        "headers": dict(msg.headers),
        "data": dict(msg.data),
        "campaign_id": _str(msg.campaign_id),
        "scenario_id": _str(msg.scenario_id),
        "step": _str(msg.step),
        "template_id": _str(msg.template_id),
        "variant": msg.variant,
        "fallback": [f.as_json() for f in msg.fallback],
        "status": "skipped" if msg.skip_reason is not None else "queued",
        "attempts": 0,
        "next_attempt_at": msg.send_at or now,
        "last_error": msg.skip_reason,
        "created_at": now,
        "updated_at": now,
    }


def enqueue(conn: sa.Connection, messages: Sequence[QueuedMessage], now: datetime) -> list[Event]:
    """Queue messages in the caller's transaction; keys already present are left alone.

    Returns the events for the rows actually inserted (``Message Queued``, or ``Message
    Skipped`` and the fallback's ``Message Queued`` for a message the policy skipped).
    """
    rows: dict[str, dict[str, Any]] = {}
    for msg in messages:
        rows.setdefault(msg.idempotency_key, _row(msg, now))  # validate all before writing
    if not rows:
        return []
    # The inserted rows' ids and what their events carry, not the bodies just written
    # (~45 KB for a campaign e-mail, copied back for nothing).
    inserted = sorted(
        conn.execute(_insert(conn), list(rows.values())).all(),
        key=lambda r: r.id,
    )
    events: list[Event] = []
    follow: list[QueuedMessage] = []
    for row in inserted:
        if row.status == "skipped":
            events.extend(event_for(row, SKIPPED, reason=row.last_error))
            if row.fallback:
                nxt = next_in_chain(SimpleNamespace(**rows[row.idempotency_key]))
                if nxt is not None:
                    follow.append(nxt)
        else:
            events.extend(event_for(row, QUEUED))
    if follow:
        events.extend(enqueue(conn, follow, now))
    return events


# What :func:`event_for` reads, and whether a fallback follows.
_EVENT_COLUMNS = (
    outbox.c.id,
    outbox.c.idempotency_key,
    outbox.c.customer_id,
    outbox.c.channel,
    outbox.c.campaign_id,
    outbox.c.scenario_id,
    outbox.c.template_id,
    outbox.c.step,
    outbox.c.variant,
    outbox.c.status,
    outbox.c.last_error,
    outbox.c.fallback,
)


_INSERTS: dict[str, Any] = {}


def _insert(conn: sa.Connection) -> Any:
    """The outbox's INSERT ... ON CONFLICT DO NOTHING RETURNING, built once per store."""
    stmt = _INSERTS.get(conn.dialect.name)
    if stmt is None:
        stmt = _INSERTS[conn.dialect.name] = (
            upsert(conn, outbox)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(*_EVENT_COLUMNS)
        )
    return stmt


def next_in_chain(row: Any) -> QueuedMessage | None:
    """The message for the next fallback channel of an outbox row, or None at the end."""
    if not row.fallback:
        return None
    first, rest = Fallback.from_json(row.fallback[0]), row.fallback[1:]
    return QueuedMessage(
        idempotency_key=f"{row.idempotency_key}:fallback:{first.channel}",
        channel=first.channel,
        recipient=first.recipient,
        body_text=first.body_text if first.body_text is not None else row.body_text,
        customer_id=row.customer_id,
        subject=first.subject if first.subject is not None else row.subject,
        body_html=first.body_html if first.body_html is not None else row.body_html,
        headers=dict(row.headers or {}),
        data=first.data if first.data is not None else dict(row.data or {}),
        campaign_id=row.campaign_id,
        scenario_id=row.scenario_id,
        step=row.step,
        template_id=row.template_id,
        variant=row.variant,
        fallback=tuple(Fallback.from_json(doc) for doc in rest),
    )


def event_for(row: Any, name: str, **extra: Any) -> list[Event]:
    """The status event for a row, with the properties docs/segments.md promises.

    ``campaign_id``, ``scenario_id``, ``template_id`` and ``channel`` are strings and are
    left out when not applicable; ``message_id`` is the idempotency key. A row with no
    customer (a webhook to a partner) has no card to land on, so it yields nothing.
    """
    if row.customer_id is None:
        return []
    props: dict[str, Any] = {"message_id": row.idempotency_key, "channel": row.channel}
    for name_ in ("campaign_id", "scenario_id", "template_id", "step", "variant"):
        value = getattr(row, name_)
        if value is not None:
            props[name_] = str(value)
    props.update({k: v for k, v in extra.items() if v is not None})
    return [(int(row.customer_id), name, props)]


def outgoing(row: Any) -> OutgoingMessage:
    """What a backend gets: the idempotency key as the message id (Message-ID, headers)."""
    return OutgoingMessage(
        id=row.idempotency_key,
        channel=row.channel,
        to=row.recipient,
        body_text=row.body_text,
        customer_id=row.customer_id,
        subject=row.subject,
        body_html=row.body_html,
        headers=dict(row.headers or {}),
        data=dict(row.data or {}),
    )


# -- claiming (the dispatcher's side) --------------------------------------------------

# What a claim changes, kept to undo it.
_CLAIM_UNDO = (
    outbox.c.status,
    outbox.c.attempts,
    outbox.c.claimed_by,
    outbox.c.claimed_until,
    outbox.c.updated_at,
)

# What makes a row of each status due: its time has come, or its lease expired.
_DUE: tuple[tuple[str, Callable[[Any], sa.ColumnElement[bool]]], ...] = (
    ("queued", lambda now: outbox.c.next_attempt_at <= now),
    ("failed", lambda now: outbox.c.next_attempt_at <= now),
    ("sending", lambda now: outbox.c.claimed_until < now),
)


def claim_due(
    conn: sa.Connection,
    channel: str,
    limit: int,
    now: datetime,
    worker_id: str,
    lease_until: datetime,
    previous: dict[int, dict[str, Any]] | None = None,
) -> list[Any]:
    """Take up to ``limit`` due rows of ``channel`` under a lease, counting one attempt.

    ``previous``, when given, receives each claimed row's state before the claim, so that
    :func:`release` can undo it.

    Due means queued or failed with ``next_attempt_at`` passed, or ``sending`` under a
    lease that expired (its worker died). PostgreSQL skips rows another dispatcher has
    locked; the UPDATE re-checks dueness, which is what guards SQLite (and any dialect
    where the SELECT did not lock).

    The oldest ``limit`` due rows are found one status at a time, each an ordered range
    of ``ix_outbox_due`` (channel, status, next_attempt_at) read no further than
    ``limit`` rows, then merged. Asked as one query with an OR, both stores read every
    row of the channel (sent ones included) and sorted all the due ones on every claim,
    and ordering by ``id`` after ``next_attempt_at`` (which the index does not hold on
    PostgreSQL) made PostgreSQL sort every queued row whenever its statistics lagged
    behind a campaign's inserts: with a 100,000-message campaign in the outbox that was
    most of a dispatcher's time. Rows due at the same instant come in the index's order:
    by id on SQLite (the rowid ends every index entry), by storage position on PostgreSQL.
    """
    found: list[Any] = []
    for select in _DUE_SELECTS:
        found += conn.execute(select, {"channel": channel, "now": now, "limit": limit}).all()
    if not found:
        return []
    found.sort(key=lambda r: (r.next_attempt_at, r.id))
    ids = [r.id for r in found[:limit]]
    if previous is not None:
        for r in found[:limit]:
            previous[r.id] = {c.name: getattr(r, c.name) for c in _CLAIM_UNDO}
    values = {"ids": ids, "now": now, "worker": worker_id, "lease": lease_until}
    return list(conn.execute(_CLAIM, values).all())


# The statements of a claim, built once: a claim runs every tick of every dispatcher, and
# building and keying the statements cost more than SQLite took to run them.
_NOW = sa.bindparam("now", type_=outbox.c.next_attempt_at.type)
_DUE_SELECTS = tuple(
    sa.select(outbox.c.id, outbox.c.next_attempt_at, *_CLAIM_UNDO)
    .where(outbox.c.channel == sa.bindparam("channel"), outbox.c.status == status, due_now(_NOW))
    .order_by(outbox.c.next_attempt_at)
    .limit(sa.bindparam("limit", type_=sa.Integer))
    .with_for_update(skip_locked=True)
    for status, due_now in _DUE
)
_CLAIM = (
    outbox.update()
    .where(
        outbox.c.id.in_(sa.bindparam("ids", expanding=True)),
        sa.or_(*(sa.and_(outbox.c.status == status, due_now(_NOW)) for status, due_now in _DUE)),
    )
    .values(
        status="sending",
        attempts=outbox.c.attempts + 1,
        claimed_by=sa.bindparam("worker", type_=outbox.c.claimed_by.type),
        claimed_until=sa.bindparam("lease", type_=outbox.c.claimed_until.type),
        updated_at=_NOW,
    )
    .returning(*outbox.c)
)


def release(
    conn: sa.Connection,
    ids: Sequence[int],
    previous: dict[int, dict[str, Any]],
    worker_id: str,
) -> None:
    """Undo :func:`claim_due` for rows that were not sent: each goes back to the status,
    attempts and lease it had (only while ``worker_id`` still holds it)."""
    if not ids:
        return
    conn.execute(
        outbox.update()
        .where(
            outbox.c.id == sa.bindparam("b_id"),
            outbox.c.status == "sending",
            outbox.c.claimed_by == worker_id,
        )
        .values({c: sa.bindparam(f"b_{c.name}") for c in _CLAIM_UNDO}),
        [{"b_id": i, **{f"b_{k}": v for k, v in previous[i].items()}} for i in ids],
    )


def unsubscribed(conn: sa.Connection, rows: Sequence[Any]) -> set[tuple[int, str]]:
    """(customer, channel) pairs whose owner said no after the message was queued.

    The policy checked consent when the message was queued, but retries and scheduled
    sends can go out hours later; an unsubscribe must take effect at once.
    """
    customers = {r.customer_id for r in rows if r.customer_id is not None}
    if not customers:
        return set()
    found = conn.execute(
        _UNSUBSCRIBED,
        {"customers": sorted(customers), "channels": sorted({r.channel for r in rows})},
    )
    return {(int(cid), str(channel)) for cid, channel in found}


_UNSUBSCRIBED = sa.select(consents.c.customer_id, consents.c.channel).where(
    consents.c.customer_id.in_(sa.bindparam("customers", expanding=True)),
    consents.c.channel.in_(sa.bindparam("channels", expanding=True)),
    consents.c.status == "unsubscribed",
)


# -- operator queries ----------------------------------------------------------------


def dead_letters(conn: sa.Connection, limit: int = 100) -> list[dict[str, Any]]:
    """Messages that ran out of attempts, newest first: what an operator looks at."""
    rows = conn.execute(
        sa.select(outbox)
        .where(outbox.c.status == "dead")
        .order_by(outbox.c.updated_at.desc(), outbox.c.id.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows]


def requeue_dead(conn: sa.Connection, ids: Sequence[int], now: datetime) -> int:
    """Give dead messages a fresh set of attempts (after the provider outage is fixed)."""
    result = conn.execute(
        outbox.update()
        .where(outbox.c.id.in_(list(ids)), outbox.c.status == "dead")
        .values(status="queued", attempts=0, next_attempt_at=now, updated_at=now)
    )
    return int(result.rowcount or 0)


def counts_by_status(conn: sa.Connection) -> dict[str, int]:
    rows = conn.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status))
    return {status: int(n) for status, n in rows}


def get_message(conn: sa.Connection, idempotency_key: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(outbox).where(outbox.c.idempotency_key == idempotency_key)).first()
    return None if row is None else dict(row._mapping)
