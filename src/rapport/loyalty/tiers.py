"""Tiers: the highest one whose threshold the customer's spend (or number of orders) in
the rolling window reaches. Evaluated when a customer's orders change and daily (the
window moves on, so a tier is lost when old orders leave it); every move up or down is a
``Loyalty Tier Changed`` event scenarios can start on.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rapport.loyalty.ledger import TIER_CHANGED, Event, lock_account
from rapport.loyalty.programme import Programme
from rapport.store.tables import loyalty_accounts, orders


def tier_for(programme: Programme, measure: float) -> str | None:
    reached = [t for t in programme.tiers if measure >= t.threshold]
    return reached[-1].name if reached else None


def measures(
    conn: sa.Connection, programme: Programme, now: datetime, customer_ids: list[int] | None
) -> dict[int, float]:
    """Spend (net of refunds) or completed orders in the window, per customer who has any."""
    since = now - timedelta(days=programme.tier_window_days)
    o = orders.c
    value: sa.ColumnElement[Any]
    if programme.tier_basis == "spend":
        value = sa.func.sum(o.total - o.refunded)
        counted = o.status != "cancelled"
    else:
        value = sa.func.count()
        counted = o.status == "completed"
    query = (
        sa.select(o.customer_id, value)
        .where(o.occurred_at > since, o.occurred_at <= now, counted)
        .group_by(o.customer_id)
    )
    if customer_ids is not None:
        query = query.where(o.customer_id.in_(customer_ids))
    return {int(cid): float(v or 0) for cid, v in conn.execute(query).all()}


def retier(
    conn: sa.Connection,
    programme: Programme,
    now: datetime,
    customer_ids: Iterable[int] | None = None,
) -> list[Event]:
    """Move the named customers (everyone when None) to the tier they qualify for now."""
    ids = None if customer_ids is None else sorted(set(customer_ids))
    if ids is not None and not ids:
        return []
    found = measures(conn, programme, now, ids)
    holders_query = sa.select(loyalty_accounts.c.customer_id, loyalty_accounts.c.tier).where(
        loyalty_accounts.c.tier.is_not(None)
    )
    if ids is not None:
        holders_query = holders_query.where(loyalty_accounts.c.customer_id.in_(ids))
    current = {int(cid): tier for cid, tier in conn.execute(holders_query).all()}
    events: list[Event] = []
    for cid in sorted(set(found) | set(current)):
        target = tier_for(programme, found.get(cid, 0.0)) if programme.enabled else None
        if target == current.get(cid):
            continue
        account = lock_account(conn, cid, now)
        if account.tier == target:
            continue
        conn.execute(
            loyalty_accounts.update()
            .where(loyalty_accounts.c.customer_id == cid)
            .values(tier=target, tier_since=now, updated_at=now)
        )
        events.append((cid, TIER_CHANGED, _move(programme, account.tier, target)))
    return events


def _move(programme: Programme, old: str | None, new: str | None) -> dict[str, object]:
    names = [t.name for t in programme.tiers]
    rank_old = names.index(old) if old in names else -1
    rank_new = names.index(new) if new in names else -1
    return {"from": old, "to": new, "direction": "up" if rank_new > rank_old else "down"}
