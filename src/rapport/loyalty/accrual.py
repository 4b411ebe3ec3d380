"""Points for orders: earned when an order completes, taken back when it is refunded or
cancelled, and redeemed points given back when the order they paid for is cancelled.

Each order is reconciled, not replayed: whatever events arrived (a re-sent
``Order Completed``, two partial refunds, a cancel after a refund), the order's ledger
entries are brought to what its current state says it is owed, so nothing counts twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rapport.loyalty.ledger import (
    EARNED,
    RETURNED,
    REVERSED,
    Event,
    credit,
    debit,
    lock_account,
)
from rapport.loyalty.programme import Programme
from rapport.store.tables import loyalty_ledger, order_lines, orders


@dataclass(frozen=True)
class Priced:
    """An amount of an order and the category it was spent in (for the multipliers)."""

    category_id: str | None
    amount: float


def points_for(programme: Programme, tier: str | None, paid: float, lines: list[Priced]) -> int:
    """Points an order earns: the tier's rate on what was paid in money, line by line
    with the category multipliers, rounded once for the order; none below the minimum."""
    if paid <= 0 or paid < programme.min_order_amount:
        return 0
    rate = programme.rate_for(tier) / 100 / programme.point_value
    listed = sum(max(line.amount, 0.0) for line in lines)
    if listed <= 0:
        return programme.round_points(paid * rate)
    raw = 0.0
    for line in lines:
        share = max(line.amount, 0.0) / listed * paid
        factor = programme.category_multipliers.get(line.category_id or "", 1.0)
        raw += share * rate * factor
    return programme.round_points(raw)


def paid_amount(total: float, shipping: float, tax: float) -> float:
    """What points accrue on: the goods paid in money (shipping and tax earn nothing)."""
    return max(0.0, float(total) - float(shipping or 0) - float(tax or 0))


def sync_orders(
    conn: sa.Connection, order_ids: Iterable[str], programme: Programme, now: datetime
) -> list[Event]:
    """Reconcile the named orders' points with their current state."""
    ids = sorted({o for o in order_ids if o})
    if not ids:
        return []
    rows = conn.execute(
        sa.select(orders).where(orders.c.order_id.in_(ids)).order_by(orders.c.customer_id)
    ).all()
    entries: dict[str, list[Any]] = {}
    for entry in conn.execute(
        sa.select(loyalty_ledger).where(loyalty_ledger.c.order_id.in_(ids))
    ).all():
        entries.setdefault(entry.order_id, []).append(entry)
    events: list[Event] = []
    for row in rows:
        events += _sync(conn, row, entries.get(row.order_id, []), programme, now)
    return events


def _refunded_share(row: Any) -> float:
    if row.status == "cancelled":
        return 1.0
    if row.total <= 0:
        return 1.0 if row.status == "refunded" else 0.0
    return min(1.0, max(0.0, float(row.refunded) / float(row.total)))


def _sync(
    conn: sa.Connection, row: Any, entries: list[Any], programme: Programme, now: datetime
) -> list[Event]:
    cid = int(row.customer_id)
    oid = str(row.order_id)
    share = _refunded_share(row)
    may_earn = programme.enabled and share < 1.0 and _eligible(row, programme)
    if not (entries or may_earn):
        return []
    events: list[Event] = []
    account = lock_account(conn, cid, now)
    # Read again under the lock: a parallel transaction may have changed the order's
    # points since the batch looked.
    entries = _entries(conn, oid)
    if may_earn and not any(e.kind == "earn" for e in entries):
        events += _earn(conn, row, account.tier, programme, now)
        entries = _entries(conn, oid)
    earns = [e for e in entries if e.kind == "earn"]
    bonuses = [e for e in entries if e.kind == "bonus"]
    redeemed = -sum(int(e.points) for e in entries if e.kind == "redeem")

    earned = sum(int(e.points) + int(e.pending) for e in earns)
    bonus = sum(int(e.points) + int(e.pending) for e in bonuses)
    reversals = [e for e in entries if e.kind == "reverse"]
    already = sum(int((e.details or {}).get("requested", 0)) for e in reversals)
    keep = programme.round_points(earned * (1 - share)) + (bonus if share < 1.0 else 0)
    owed = earned + bonus - already - keep
    if owed > 0:
        taken, short = debit(
            conn,
            cid,
            owed,
            kind="reverse",
            key=f"order:{oid}:reverse:{len(reversals) + 1}",
            now=now,
            order_id=oid,
            reason="order cancelled" if row.status == "cancelled" else "order refunded",
            details={"refunded_share": round(share, 6)},
            order_first=oid,
            pending_too=True,
        )
        events.append((cid, REVERSED, {"points": taken, "short": short, "order_id": oid}))

    returns = [e for e in entries if e.kind == "return"]
    given_back = sum(int(e.points) for e in returns)
    due_back = round(redeemed * share) - given_back
    if due_back > 0:
        credit(
            conn,
            cid,
            due_back,
            kind="return",
            key=f"order:{oid}:return:{len(returns) + 1}",
            now=now,
            expiry_days=programme.expiry_days,
            order_id=oid,
            reason="redeemed points returned: order "
            + ("cancelled" if row.status == "cancelled" else "refunded"),
        )
        events.append((cid, RETURNED, {"points": due_back, "order_id": oid}))
    return events


def _entries(conn: sa.Connection, oid: str) -> list[Any]:
    query = sa.select(loyalty_ledger).where(loyalty_ledger.c.order_id == oid)
    return list(conn.execute(query.order_by(loyalty_ledger.c.id)).all())


def _eligible(row: Any, programme: Programme) -> bool:
    return programme.starts_at is None or row.occurred_at >= programme.starts_at


def _earn(
    conn: sa.Connection, row: Any, tier: str | None, programme: Programme, now: datetime
) -> list[Event]:
    """The order's first accrual (at the tier the customer had when it arrived), and a
    comeback bonus when it ends a long pause; both wait for the return period."""
    cid = int(row.customer_id)
    oid = str(row.order_id)
    lines = [
        Priced(r.category_id, float(r.price) * int(r.quantity))
        for r in conn.execute(
            sa.select(order_lines.c.category_id, order_lines.c.price, order_lines.c.quantity)
            .where(order_lines.c.order_pk == row.id)
            .order_by(order_lines.c.id)
        ).all()
    ]
    paid = paid_amount(row.total, row.shipping, row.tax)
    points = points_for(programme, tier, paid, lines)
    available = row.occurred_at + timedelta(days=programme.pending_days)
    events: list[Event] = []
    if credit(
        conn,
        cid,
        points,
        kind="earn",
        key=f"order:{oid}:earn",
        now=now,
        expiry_days=programme.expiry_days,
        available_at=available,
        order_id=oid,
        reason="order",
        details={"paid": round(paid, 2), "rate": programme.rate_for(tier), "tier": tier},
    ):
        events.append(_earned(cid, points, "order", oid, available, now))
    bonus = programme.bonuses.comeback
    comeback = bool(bonus) and _is_comeback(conn, row, programme.bonuses.comeback_after_days)
    if comeback and credit(
        conn,
        cid,
        bonus,
        kind="bonus",
        key=f"bonus:comeback:{oid}",
        now=now,
        expiry_days=programme.expiry_days,
        available_at=available,
        order_id=oid,
        reason="comeback",
    ):
        events.append(_earned(cid, bonus, "comeback", oid, available, now))
    return events


def _earned(
    cid: int, points: int, reason: str, oid: str | None, available: datetime, now: datetime
) -> Event:
    props: dict[str, Any] = {"points": points, "reason": reason, "pending": available > now}
    if oid is not None:
        props["order_id"] = oid
    if available > now:
        props["available_at"] = available.isoformat()
    return (cid, EARNED, props)


def _is_comeback(conn: sa.Connection, row: Any, after_days: int) -> bool:
    previous = conn.execute(
        sa.select(sa.func.max(orders.c.occurred_at)).where(
            orders.c.customer_id == row.customer_id,
            orders.c.id != row.id,
            orders.c.status != "cancelled",
            orders.c.occurred_at < row.occurred_at,
        )
    ).scalar()
    return previous is not None and row.occurred_at - previous >= timedelta(days=after_days)
