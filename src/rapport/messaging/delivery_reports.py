"""What delivery reports do: suppress the address, unsubscribe a complainer, and put the
outcome on the customer's card.

Reports arrive three ways, and all end in :func:`_observe`: bounce and complaint e-mails
(parsed by ``bounces.parse_report``, applied by :func:`apply_report`), a provider's status
webhook (:func:`apply_delivery_events`) and SMPP delivery receipts (:func:`receipt_events`).
Each takes the caller's connection and returns the events, which the caller records
through the pipeline in the same transaction: messaging never imports the pipeline.

**Idempotent.** Mailboxes get re-read and webhooks retried, so a report seen before
changes nothing: an event already on the card for the same message (or, without a known
message, for the same report) is not recorded again, and its suppression and consent
change are not repeated. Reports about addresses that are neither in the outbox nor on a
card are ignored, so backscatter (bounces of spam forged with our address as sender)
cannot suppress anyone.

**Rules.** A hard bounce suppresses an e-mail address at once. A soft bounce is recorded;
the third soft bounce of one address within seven days suppresses it too (a mailbox that
stays full or keeps refusing is as good as gone). A complaint suppresses the address on
its channel and sets the customer's consent for that channel to ``unsubscribed`` (source
``complaint``). Bounces of other channels (SMS receipts, SMS provider webhooks) are
recorded but suppress nothing: carriers recycle numbers, and ``UNDELIV`` also covers a
phone that stayed off for the validity period.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rapport.customers.consents import ConsentChange, set_consents
from rapport.customers.profile import live_id
from rapport.messaging.bounces import Report
from rapport.messaging.message_lookup import (
    address_owners,
    find_by_smsc_id,
    find_email_message,
    find_message,
)
from rapport.messaging.outbox import (
    BOUNCED,
    CLICKED,
    COMPLAINED,
    DELIVERED,
    FAILED,
    OPENED,
    Event,
    event_for,
)
from rapport.messaging.suppressions import normalize_address, suppress
from rapport.store.tables import consents, customers, events

SOFT_BOUNCE_LIMIT = 3
SOFT_BOUNCE_WINDOW = timedelta(days=7)
CONSENT_EVENT = "Consent Changed"

# Outcome → the event on the card.
_NAMES = {
    "hard": BOUNCED,
    "soft": BOUNCED,
    "complaint": COMPLAINED,
    "delivered": DELIVERED,
    "failed": FAILED,
    "opened": OPENED,
    "clicked": CLICKED,
}
# SMPP receipt ``stat`` → outcome. ENROUTE, ACCEPTD and UNKNOWN are not outcomes.
RECEIPT_OUTCOMES = {
    "DELIVRD": "delivered",
    "UNDELIV": "hard",
    "REJECTD": "hard",
    "EXPIRED": "soft",
    "DELETED": "soft",
}
# Provider webhook status → outcome (``bounced`` is hard or soft by its ``bounce_type``).
STATUSES = ("delivered", "bounced", "complained", "failed", "opened", "clicked")
_STATUS_OUTCOMES = {
    "delivered": "delivered",
    "complained": "complaint",
    "failed": "failed",
    "opened": "opened",
    "clicked": "clicked",
}


@dataclass
class Result:
    """What one report said about one recipient, and what was done about it."""

    outcome: str  # hard | soft | complaint | delivered | delayed | failed | opened | clicked
    address: str | None
    message_key: str | None = None  # the outbox idempotency key, when the message is known
    customer_id: int | None = None
    matched: bool = False  # the message or the address is ours; unmatched reports are ignored
    duplicate: bool = False  # seen before: nothing was changed
    suppressed: bool = False  # the address was added to the suppression list now
    unsubscribed: bool = False  # the customer's consent was set to unsubscribed now

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Applied:
    """The events to record, and a result per recipient or webhook item."""

    events: list[Event] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)


@dataclass(frozen=True)
class DeliveryEvent:
    """One item of a provider's status webhook, validated by the caller."""

    message_id: str  # our idempotency key, or the Message-ID we gave the e-mail
    status: str  # one of STATUSES
    recipient: str | None = None
    bounce_type: str | None = None  # hard | soft; a bounce without one counts as hard
    diagnostic: str | None = None
    occurred_at: datetime | None = None
    event_id: str | None = None  # the provider's id for this event: makes retries harmless
    url: str | None = None  # for clicks


@dataclass(frozen=True)
class _Observation:
    outcome: str
    channel: str
    row: Any | None
    address: str | None
    report_id: str
    props: dict[str, Any]


# -- the three ways in --------------------------------------------------------------------


def apply_report(conn: sa.Connection, report: Report, now: datetime) -> Applied:
    """Act on a parsed bounce or complaint; returns the events for the caller to record."""
    addresses = [a for r in report.recipients for a in (r.address, r.original_address) if a]
    row = (
        find_email_message(conn, report.message_id, addresses, report.original_date)
        if report.message_id
        else None
    )
    applied = Applied()
    for rcpt in report.recipients:
        mine = row
        if row is not None and len(report.recipients) > 1:
            ours = normalize_address("email", row.recipient)
            mine = row if ours in (rcpt.address, rcpt.original_address) else None
        props: dict[str, Any] = {}
        if rcpt.outcome in ("hard", "soft"):
            props = {"bounce_type": rcpt.outcome, "status": rcpt.status}
            props["diagnostic"] = rcpt.diagnostic
        elif rcpt.outcome == "complaint":
            props = {"feedback_type": report.feedback_type}
        elif rcpt.outcome == "delivered":
            props = {"status": rcpt.status}
        seen = _Observation(
            rcpt.outcome,
            "email",
            mine,
            rcpt.original_address or rcpt.address,
            report.report_id,
            props,
        )
        _observe(conn, seen, now, applied)
    return applied


def apply_delivery_events(
    conn: sa.Connection, items: Sequence[DeliveryEvent], now: datetime
) -> Applied:
    """Act on a provider's webhook items; items about messages we never sent are ignored."""
    applied = Applied()
    for item in items:
        if item.status not in STATUSES:
            raise ValueError(f"unknown delivery status {item.status!r}")
        row = find_message(conn, item.message_id, [item.recipient] if item.recipient else [])
        if item.status == "bounced":
            outcome = "soft" if item.bounce_type == "soft" else "hard"
            props: dict[str, Any] = {"bounce_type": outcome, "diagnostic": item.diagnostic}
        else:
            outcome = _STATUS_OUTCOMES[item.status]
            props = {"reason" if outcome == "failed" else "diagnostic": item.diagnostic}
        if item.url is not None:
            props["url"] = item.url
        if item.occurred_at is not None:
            props["occurred_at"] = item.occurred_at.isoformat()
        report_id = item.event_id or ":".join(
            [item.message_id, item.status]
            + ([item.occurred_at.isoformat()] if item.occurred_at else [])
        )
        channel = row.channel if row is not None else _channel_of(item.recipient)
        seen = _Observation(outcome, channel, row, item.recipient, report_id, props)
        _observe(conn, seen, now, applied)
    return applied


def apply_receipts(
    conn: sa.Connection, receipts: Sequence[tuple[str, str]], now: datetime
) -> list[Event]:
    """The events of a batch of SMPP receipts ``(provider_id, stat)``, as one.

    Prefer it to calling :func:`receipt_events` per pair: the parts of one long SMS often
    report together, and only a batch sees that the second part's ``DELIVRD`` repeats the
    first's before either is recorded.
    """
    events: list[Event] = []
    for provider_id, stat in receipts:
        events += receipt_events(conn, provider_id, stat, now, pending=events)
    return events


def receipt_events(
    conn: sa.Connection,
    provider_id: str,
    stat: str,
    now: datetime,
    *,
    pending: Sequence[Event] = (),
) -> list[Event]:
    """The event an SMPP delivery receipt means, for the SMS it reports on.

    ``provider_id`` is the SMSC message id the receipt names and ``stat`` its state, as
    ``SmppBackend`` hands them to ``on_receipt``. The outbox row is the one whose
    ``provider_id`` (the comma-separated ids of the SMS parts) contains that id. DELIVRD
    gives ``Message Delivered``; UNDELIV and REJECTD a hard ``Message Bounced``, EXPIRED
    and DELETED a soft one; other states nothing. A long SMS gets a receipt per part, and
    the message is delivered (or bounced) once: the later parts' receipts are duplicates.
    The SMPP listener thread must not block on the store: queue the pairs and call this
    (or :func:`apply_receipts`) from a worker, then record the events through the pipeline
    in the same transaction. ``pending`` are events of the same batch not recorded yet.
    """
    outcome = RECEIPT_OUTCOMES.get(stat.strip().upper())
    if outcome is None or not provider_id.strip():
        return []
    row = find_by_smsc_id(conn, provider_id.strip())
    if row is None:
        return []
    props: dict[str, Any] = {"status": stat.strip().upper()}
    if outcome in ("hard", "soft"):
        props["bounce_type"] = outcome
    seen = _Observation(outcome, row.channel, row, None, f"smpp:{provider_id}:{stat}", props)
    applied = Applied(events=list(pending))
    _observe(conn, seen, now, applied)
    return applied.events[len(pending) :]


# -- the one place effects happen --------------------------------------------------------


def _observe(conn: sa.Connection, seen: _Observation, now: datetime, applied: Applied) -> None:
    row = seen.row
    channel = row.channel if row is not None else seen.channel
    address = row.recipient if row is not None else seen.address
    address = normalize_address(channel, address) if address else None
    cid = _card(conn, row, channel, address)
    result = Result(
        seen.outcome,
        address,
        message_key=row.idempotency_key if row is not None else None,
        customer_id=cid,
        matched=row is not None or cid is not None,
    )
    applied.results.append(result)
    if not result.matched or seen.outcome == "delayed":
        return
    name = _NAMES[seen.outcome]
    extra = {"recipient": address, **seen.props, "report_id": seen.report_id}
    extra = {k: v for k, v in extra.items() if v is not None}
    if cid is not None:
        _lock(conn, cid)
        if _recorded(conn, cid, name, result.message_key, extra, applied.events):
            result.duplicate = True
            return
    new_events: list[Event] = []
    if cid is not None:
        new_events.append(_event(row, cid, channel, name, extra))
    details = {
        k: v
        for k, v in {
            "message_id": result.message_key,
            "customer_id": cid,
            **{k: extra.get(k) for k in ("status", "diagnostic", "feedback_type", "report_id")},
        }.items()
        if v is not None
    }
    if address and channel == "email" and seen.outcome == "hard":
        result.suppressed = suppress(conn, channel, address, "bounce", now, details)
    elif address and channel == "email" and seen.outcome == "soft" and cid is not None:
        count = _soft_bounces(conn, cid, address, now, applied.events) + 1
        if count >= SOFT_BOUNCE_LIMIT:
            details["soft_bounces"] = count
            result.suppressed = suppress(conn, channel, address, "bounce", now, details)
    elif address and seen.outcome == "complaint":
        result.suppressed = suppress(conn, channel, address, "complaint", now, details)
    if seen.outcome == "complaint" and cid is not None and channel != "webhook":
        change = _unsubscribe(conn, cid, channel, now)
        if change is not None:
            new_events.append(change)
            result.unsubscribed = True
    if cid is None and not result.suppressed:
        result.duplicate = seen.outcome in ("hard", "complaint")  # already on the list
    applied.events.extend(new_events)


def _event(row: Any | None, cid: int, channel: str, name: str, extra: dict[str, Any]) -> Event:
    if row is not None and row.customer_id is not None:
        [(_, _, props)] = event_for(row, name, **extra)
    else:
        props = {"channel": channel, **extra}
    return (cid, name, props)


def _recorded(
    conn: sa.Connection,
    cid: int,
    name: str,
    key: str | None,
    extra: dict[str, Any],
    pending: list[Event],
) -> bool:
    """Whether this outcome is already on the card (or in this batch's pending events).

    Per message: one delivery, one complaint, one hard and one soft bounce; opens and
    clicks repeat, so only the same report (the provider's event id) is a duplicate. The
    dispatcher's own ``Message Bounced`` for a refused send carries no ``report_id`` and
    does not count: a later report about the same message still suppresses.
    """

    def same(props: dict[str, Any]) -> bool:
        if key is None or name in (OPENED, CLICKED):
            return bool(props.get("report_id") == extra["report_id"])
        if "report_id" not in props or props.get("message_id") != key:
            return False
        return name != BOUNCED or props.get("bounce_type") == extra.get("bounce_type")

    if any(c == cid and n == name and same(p) for c, n, p in pending):
        return True
    stored = conn.execute(
        sa.select(events.c.properties).where(events.c.customer_id == cid, events.c.name == name)
    ).scalars()
    return any(same(p or {}) for p in stored)


def _soft_bounces(
    conn: sa.Connection, cid: int, address: str, now: datetime, pending: list[Event]
) -> int:
    def soft(props: dict[str, Any]) -> bool:
        return props.get("bounce_type") == "soft" and props.get("recipient") == address

    stored = conn.execute(
        sa.select(events.c.properties).where(
            events.c.customer_id == cid,
            events.c.name == BOUNCED,
            events.c.occurred_at > now - SOFT_BOUNCE_WINDOW,
        )
    ).scalars()
    earlier = sum(1 for p in stored if soft(p or {}))
    return earlier + sum(1 for c, n, p in pending if c == cid and n == BOUNCED and soft(p))


def _unsubscribe(conn: sa.Connection, cid: int, channel: str, now: datetime) -> Event | None:
    current = conn.execute(
        sa.select(consents.c.status, consents.c.double_opt_in).where(
            consents.c.customer_id == cid, consents.c.channel == channel
        )
    ).first()
    if current is not None and current.status == "unsubscribed":
        return None
    double_opt_in = current.double_opt_in if current is not None else "none"
    set_consents(
        conn, [ConsentChange(cid, channel, "unsubscribed", "complaint", now, double_opt_in)]
    )
    return (
        cid,
        CONSENT_EVENT,
        {
            "channel": channel,
            "status": "unsubscribed",
            "source": "complaint",
            "double_opt_in": double_opt_in,
        },
    )


def _card(conn: sa.Connection, row: Any | None, channel: str, address: str | None) -> int | None:
    """The customer a report is about: the message's, else the owner of the address."""
    if row is not None and row.customer_id is not None:
        return live_id(conn, int(row.customer_id)) or int(row.customer_id)
    if not address:
        return None
    owners = address_owners(conn, channel, [address])
    return live_id(conn, min(owners)) if owners else None


def _lock(conn: sa.Connection, cid: int) -> None:
    """Serialise reports about one customer on PostgreSQL, so a report delivered twice at
    once is still recorded once (SQLite writers are serial already)."""
    conn.execute(sa.select(customers.c.id).where(customers.c.id == cid).with_for_update())


def _channel_of(recipient: str | None) -> str:
    return "sms" if recipient and recipient.strip().startswith("+") else "email"
