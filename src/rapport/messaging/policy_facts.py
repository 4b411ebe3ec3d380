"""What the communication policy reads from the store to decide: each customer's facts
(timezone and contact columns), suppressed addresses, consents, and the counts the
frequency caps compare with.

The rules themselves are in ``messaging.policy``; a decision reads these once for a whole
batch (``policy.decide``) or once for a round of small groups (``policy_round``), and
judges without a further query.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa

from rapport.messaging.suppressions import is_suppressed
from rapport.store.tables import consents, customers, outbox, telegram_chats

_IN_BATCH = 5000  # ids per IN list: far below both stores' limits on bound parameters


class Window(Protocol):
    """A frequency cap's window: ``policy.Cap`` is one."""

    days: int


def _batches(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _IN_BATCH):
        yield list(ids[start : start + _IN_BATCH])


@dataclass(frozen=True)
class Reachable:
    """What the policy needs to know of one customer: timezone and contact columns."""

    timezone: str | None
    email: str | None
    phone: str | None


def customer_facts(conn: sa.Connection, ids: Sequence[int]) -> dict[int, Reachable]:
    """Live customers among ``ids`` (merged and erased profiles are left out)."""
    found: dict[int, Reachable] = {}
    for part in _batches(ids):
        for row in conn.execute(_FACTS, {"ids": part}):
            found[int(row.id)] = Reachable(row.timezone, row.email, row.phone)
    return found


def suppressed_addresses(conn: sa.Connection, channel: str, addresses: Sequence[str]) -> set[str]:
    """Which of ``addresses`` must never be sent to on ``channel``.

    The one place the policy reads the suppression list (bounces, complaints, operator
    blocks), kept behind this name so the policy does not depend on how that list is kept.
    """
    return is_suppressed(conn, channel, [a for a in addresses if a])


def _addresses(
    conn: sa.Connection, channel: str, facts: Mapping[int, Reachable]
) -> dict[int, list[str]]:
    """The addresses a message to each customer could go to on ``channel``."""
    if channel == "email":
        return {cid: [f.email] for cid, f in facts.items() if f.email}
    if channel == "sms":
        return {cid: [f.phone] for cid, f in facts.items() if f.phone}
    if channel == "telegram" and facts:
        out: dict[int, list[str]] = {}
        for part in _batches(list(facts)):
            rows = conn.execute(
                sa.select(telegram_chats.c.customer_id, telegram_chats.c.chat_id).where(
                    telegram_chats.c.customer_id.in_(part), telegram_chats.c.stopped_at.is_(None)
                )
            )
            for cid, chat in rows:
                out.setdefault(int(cid), []).append(str(chat))
        return out
    return {}


def consent_statuses(conn: sa.Connection, ids: Sequence[int], channel: str) -> dict[int, str]:
    """Each customer's recorded consent on ``channel`` (none: left out)."""
    out: dict[int, str] = {}
    for part in _batches(ids):
        rows = conn.execute(_CONSENTS, {"channel": channel, "ids": part})
        out.update({int(cid): str(status) for cid, status in rows})
    return out


def recent_counts(
    conn: sa.Connection,
    ids: Sequence[int],
    channel: str,
    now: datetime,
    channel_cap: Window | None,
    global_cap: Window | None,
) -> dict[int, tuple[int, int]]:
    """(on this channel, on all channels) per customer, each in its cap's window, one query.

    A row counts when it was created after ``now - days`` and was not skipped: the
    customer got it, or will.
    """
    starts = [
        now - timedelta(days=cap.days) for cap in (channel_cap, global_cap) if cap is not None
    ]
    if not starts:
        return {}
    # A window that is not capped starts at ``now``: nothing created up to now is after it.
    params = {
        "channel": channel,
        "since_channel": now if channel_cap is None else now - timedelta(days=channel_cap.days),
        "since_all": now if global_cap is None else now - timedelta(days=global_cap.days),
        "start": min(starts),
        "now": now,
    }
    out: dict[int, tuple[int, int]] = {}
    for part in _batches(ids):
        rows = conn.execute(_RECENT, {**params, "ids": part})
        out.update({int(cid): (int(a or 0), int(b or 0)) for cid, a, b in rows})
    return out


# The statements every decision runs, built once: building and keying a statement cost
# several times what the store took to answer it, and scenario steps decide in small
# groups many times a minute.
def _moment(name: str) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=outbox.c.created_at.type)


_IDS: sa.BindParameter[Any] = sa.bindparam("ids", expanding=True)
_FACTS = sa.select(
    customers.c.id, customers.c.timezone, customers.c.email, customers.c.phone
).where(
    customers.c.id.in_(_IDS), customers.c.merged_into.is_(None), customers.c.erased_at.is_(None)
)
_CONSENTS = sa.select(consents.c.customer_id, consents.c.status).where(
    consents.c.channel == sa.bindparam("channel"), consents.c.customer_id.in_(_IDS)
)
_ONE: sa.ColumnElement[Any] = sa.literal_column("1")
_ZERO: sa.ColumnElement[Any] = sa.literal_column("0")
_RECENT = (
    sa.select(
        outbox.c.customer_id,
        sa.func.sum(
            sa.case(
                (
                    sa.and_(
                        outbox.c.channel == sa.bindparam("channel"),
                        outbox.c.created_at > _moment("since_channel"),
                    ),
                    _ONE,
                ),
                else_=_ZERO,
            )
        ),
        sa.func.sum(sa.case((outbox.c.created_at > _moment("since_all"), _ONE), else_=_ZERO)),
    )
    .where(
        outbox.c.customer_id.in_(_IDS),
        outbox.c.status != "skipped",
        outbox.c.created_at > _moment("start"),
        outbox.c.created_at <= _moment("now"),
    )
    .group_by(outbox.c.customer_id)
)


@dataclass(frozen=True)
class Seen:
    """What a decision read from the store, for the customers it is about: their facts
    (:func:`customer_facts`), who is in the global control group, whose address on the
    channel is suppressed, their consent on it and their counts for the caps."""

    facts: Mapping[int, Reachable]
    in_control: Collection[int]
    suppressed: Collection[int]
    consents: Mapping[int, str]
    counts: Mapping[int, tuple[int, int]]


def suppressed_customers(
    conn: sa.Connection, channel: str, facts: Mapping[int, Reachable]
) -> set[int]:
    """The customers one of whose addresses on ``channel`` is suppressed."""
    addresses = _addresses(conn, channel, facts)
    blocked = suppressed_addresses(conn, channel, [a for v in addresses.values() for a in v])
    if not blocked:
        return set()
    return {cid for cid, found in addresses.items() if any(a in blocked for a in found)}
