"""What a customer has, as of now: for the card, templates, the Telegram bot and the API.

Figures are read from the lots as of ``now`` (points whose return period has just ended
count as spendable, points just past their expiry do not), so the answer matches what a
redemption would find even before the daily run has written the activation or expiry.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rapport.loyalty.ledger import history, read_account
from rapport.store.tables import loyalty_accounts, loyalty_lots

EXPIRING_DAYS = 30
_CHUNK = 500


def expiring_points(now: datetime, days: int) -> sa.Select[Any]:
    """(customer_id, points) that expire within ``days`` of ``now``, for every customer
    who has some: one query over the partial index ``ix_loyalty_lots_expiring``."""
    lots = loyalty_lots.c
    return (
        sa.select(lots.customer_id, sa.func.sum(lots.remaining).label("points"))
        .where(
            lots.status == "active",
            lots.remaining > 0,
            lots.expires_at > now,
            lots.expires_at <= now + timedelta(days=days),
        )
        .group_by(lots.customer_id)
    )


def loyalty_summary(conn: sa.Connection, customer_id: int, now: datetime) -> dict[str, Any]:
    """balance, pending, tier, points_expiring (within 30 days), next_expiry, history."""
    lots = loyalty_lots.c
    rows = conn.execute(
        sa.select(lots.remaining, lots.status, lots.activates_at, lots.expires_at).where(
            lots.customer_id == customer_id, lots.remaining > 0
        )
    ).all()
    account = read_account(conn, customer_id)
    return {
        **_fold(rows, now),
        "tier": None if account is None else account.tier,
        "tier_since": None if account is None else account.tier_since,
        "history": history(conn, customer_id, 20),
    }


# Built once: every scenario message reads its customers' summaries.
_LOTS = sa.select(
    loyalty_lots.c.customer_id,
    loyalty_lots.c.remaining,
    loyalty_lots.c.status,
    loyalty_lots.c.activates_at,
    loyalty_lots.c.expires_at,
).where(
    loyalty_lots.c.customer_id.in_(sa.bindparam("ids", expanding=True)),
    loyalty_lots.c.remaining > 0,
)
_TIERS = sa.select(
    loyalty_accounts.c.customer_id, loyalty_accounts.c.tier, loyalty_accounts.c.tier_since
).where(loyalty_accounts.c.customer_id.in_(sa.bindparam("ids", expanding=True)))


def loyalty_summaries(
    conn: sa.Connection, customer_ids: Iterable[int], now: datetime
) -> dict[int, dict[str, Any]]:
    """:func:`loyalty_summary` without the history for many customers (every id asked,
    zeros for those without points), in two queries per 500: what templates read for a
    campaign's or a scenario step's recipients."""
    ids = sorted({int(c) for c in customer_ids})
    rows: dict[int, list[Any]] = {cid: [] for cid in ids}
    tiers: dict[int, tuple[str | None, datetime | None]] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        for row in conn.execute(_LOTS, {"ids": chunk}):
            rows[int(row.customer_id)].append(row)
        for cid, tier, since in conn.execute(_TIERS, {"ids": chunk}):
            tiers[int(cid)] = (tier, since)
    return {
        cid: {
            **_fold(rows[cid], now),
            "tier": tiers.get(cid, (None, None))[0],
            "tier_since": tiers.get(cid, (None, None))[1],
        }
        for cid in ids
    }


def _fold(rows: Iterable[Any], now: datetime) -> dict[str, Any]:
    """balance, pending, points_expiring and next_expiry from a customer's open lots."""
    balance = pending = expiring = 0
    next_expiry: datetime | None = None
    horizon = now + timedelta(days=EXPIRING_DAYS)
    for r in rows:
        n = int(r.remaining)
        if r.status == "pending" and r.activates_at > now:
            pending += n
            continue
        if r.expires_at is not None and r.expires_at <= now:
            continue
        balance += n
        if r.expires_at is not None:
            if r.expires_at <= horizon:
                expiring += n
            next_expiry = r.expires_at if next_expiry is None else min(next_expiry, r.expires_at)
    expiry_day: date | None = None if next_expiry is None else next_expiry.date()
    return {
        "balance": balance,
        "pending": pending,
        "points_expiring": expiring,
        "next_expiry": expiry_day,
    }
