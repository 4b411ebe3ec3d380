"""The suppression list: addresses nothing is sent to any more, whatever asks.

Consent belongs to a customer and says what they want; a suppression belongs to an
address and says what the world told us: a hard bounce (the mailbox does not exist), a
spam complaint, or an operator's block. Sending to either again hurts the sender's
reputation with every mailbox provider, so the dispatcher checks the list at claim time
(a row for a suppressed address is ``skipped`` and its fallback chain moves on), and
campaign and policy code can ask :func:`is_suppressed` before queueing.

Addresses are stored normalised per channel (e-mail lower-cased, without display name),
so ``Ann@Example.com`` and ``ann@example.com`` are one entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from typing import Any

import sqlalchemy as sa

from rapport.store.engine import upsert
from rapport.store.tables import suppressions

REASONS = ("bounce", "complaint", "manual")
_CHUNK = 500


class SuppressionError(ValueError):
    """A suppression that cannot be stored as given (unknown reason, empty address)."""


@dataclass(frozen=True)
class Suppression:
    channel: str
    address: str
    reason: str
    details: dict[str, Any]
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "address": self.address,
            "reason": self.reason,
            "details": self.details,
            "created_at": self.created_at,
        }


def normalize_address(channel: str, address: str) -> str:
    """The form an address is stored and compared in: e-mail lower-case, bare."""
    text = address.strip()
    if channel == "email":
        if _BARE.fullmatch(text):  # parseaddr gives such an address back as it is
            return text.lower()
        text = (parseaddr(text)[1] or text).strip("<> ").lower()
    return text


# A bare address of dot-separated atoms: the usual recipient, looked up on every claim.
_BARE = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def suppress(
    conn: sa.Connection,
    channel: str,
    address: str,
    reason: str,
    now: datetime,
    details: dict[str, Any] | None = None,
) -> bool:
    """Add an address; True if it was not suppressed before.

    An existing entry is kept as it is: the first reason is the one that matters (a
    complaint about an address already suppressed for bouncing changes nothing on the wire).
    """
    if reason not in REASONS:
        raise SuppressionError(f"unknown reason {reason!r} (one of {', '.join(REASONS)})")
    normal = normalize_address(channel, address)
    if not normal:
        raise SuppressionError("an empty address cannot be suppressed")
    stmt = (
        upsert(conn, suppressions)
        .values(
            channel=channel,
            address=normal,
            reason=reason,
            details=details or {},
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["channel", "address"])
        .returning(suppressions.c.address)
    )
    return conn.execute(stmt).first() is not None


def unsuppress(conn: sa.Connection, channel: str, address: str) -> bool:
    """Remove an address from the list (the mailbox was fixed, the block was a mistake)."""
    result = conn.execute(
        suppressions.delete().where(
            suppressions.c.channel == channel,
            suppressions.c.address == normalize_address(channel, address),
        )
    )
    return bool(result.rowcount)


def get_suppression(conn: sa.Connection, channel: str, address: str) -> Suppression | None:
    row = conn.execute(
        sa.select(suppressions).where(
            suppressions.c.channel == channel,
            suppressions.c.address == normalize_address(channel, address),
        )
    ).first()
    return None if row is None else _suppression(row)


def list_suppressions(
    conn: sa.Connection,
    *,
    channel: str | None = None,
    address: str | None = None,
    contains: str | None = None,
    reason: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Suppression], int]:
    """A page of the list, newest first, and how many entries match in all."""
    where = []
    if channel is not None:
        where.append(suppressions.c.channel == channel)
    if address is not None:
        where.append(suppressions.c.address == normalize_address(channel or "email", address))
    if contains:
        where.append(suppressions.c.address.contains(contains.strip().lower(), autoescape=True))
    if reason is not None:
        where.append(suppressions.c.reason == reason)
    total = conn.execute(sa.select(sa.func.count()).select_from(suppressions).where(*where))
    rows = conn.execute(
        sa.select(suppressions)
        .where(*where)
        .order_by(suppressions.c.created_at.desc(), suppressions.c.channel, suppressions.c.address)
        .limit(limit)
        .offset(offset)
    )
    return [_suppression(r) for r in rows], int(total.scalar_one())


def is_suppressed(conn: sa.Connection, channel: str, addresses: Iterable[str]) -> set[str]:
    """The given addresses (as given) that are suppressed on ``channel``.

    For campaign audiences and the communication policy: one query per 500 addresses.
    """
    normal = {a: normalize_address(channel, a) for a in addresses}
    found = _present(conn, channel, set(normal.values()))
    return {given for given, n in normal.items() if n in found}


def suppressed_reasons(conn: sa.Connection, rows: Sequence[Any]) -> dict[int, str]:
    """Outbox row id → suppression reason, for the claimed rows whose recipient is listed."""
    normal = {row.id: normalize_address(row.channel, row.recipient) for row in rows}
    by_channel: dict[str, set[str]] = {}
    for row in rows:
        by_channel.setdefault(row.channel, set()).add(normal[row.id])
    reasons: dict[tuple[str, str], str] = {}
    for channel, addresses in by_channel.items():
        for chunk in _chunks(sorted(addresses)):
            found = conn.execute(
                sa.select(suppressions.c.address, suppressions.c.reason).where(
                    suppressions.c.channel == channel, suppressions.c.address.in_(chunk)
                )
            )
            reasons.update({(channel, a): r for a, r in found})
    return {
        row.id: reasons[key] for row in rows if (key := (row.channel, normal[row.id])) in reasons
    }


def _present(conn: sa.Connection, channel: str, addresses: set[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(sorted(addresses)):
        found.update(conn.execute(_PRESENT, {"channel": channel, "addresses": chunk}).scalars())
    return found


# Built once: the policy asks for every group of messages it decides.
_PRESENT = sa.select(suppressions.c.address).where(
    suppressions.c.channel == sa.bindparam("channel"),
    suppressions.c.address.in_(sa.bindparam("addresses", expanding=True)),
)


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _suppression(row: Any) -> Suppression:
    return Suppression(
        row.channel, row.address, row.reason, dict(row.details or {}), row.created_at
    )
