"""The points ledger and what is derived from it: lots and the account row.

Every change of points is one ledger row (never updated, never deleted) written together
with its effect on the lots (what is left of each credit, spent and expired soonest-expiring
first) and on the account row (the sums segment conditions read), in one transaction.
``rebuild`` recomputes the sums from the ledger alone: the account is a cache of it.

Concurrency: whoever changes a customer's points first locks the account row
(``SELECT … FOR UPDATE`` on PostgreSQL; SQLite serialises writers), so two redemptions,
or a redemption and a refund, never spend the same lot twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rapport.store.engine import upsert
from rapport.store.tables import loyalty_accounts, loyalty_ledger, loyalty_lots

# Timeline events the programme records (through the pipeline, so scenarios react).
EARNED = "Loyalty Points Earned"
ACTIVATED = "Loyalty Points Activated"
REDEEMED = "Loyalty Points Redeemed"
RETURNED = "Loyalty Points Returned"
REVERSED = "Loyalty Points Reversed"
EXPIRED = "Loyalty Points Expired"
ADJUSTED = "Loyalty Points Adjusted"
TIER_CHANGED = "Loyalty Tier Changed"

Event = tuple[int, str, dict[str, Any]]


@dataclass(frozen=True)
class Account:
    customer_id: int
    balance: int
    pending: int
    tier: str | None
    tier_since: datetime | None
    next_expiry_at: datetime | None


def lock_account(conn: sa.Connection, customer_id: int, now: datetime) -> Account:
    """The customer's account, created if new, locked until the transaction ends."""
    create, lock = _account_statements(conn)
    conn.execute(
        create, {"customer_id": customer_id, "balance": 0, "pending": 0, "updated_at": now}
    )
    return _account(conn.execute(lock, {"id": customer_id}).one())


_ACCOUNT_STATEMENTS: dict[str, tuple[Any, Any]] = {}


def _account_statements(conn: sa.Connection) -> tuple[Any, Any]:
    """Creating an account if new and reading it locked, built once per store: every
    point a scenario or an order gives goes through them."""
    dialect = conn.dialect.name
    found = _ACCOUNT_STATEMENTS.get(dialect)
    if found is None:
        create = upsert(conn, loyalty_accounts).on_conflict_do_nothing(
            index_elements=["customer_id"]
        )
        lock = sa.select(loyalty_accounts).where(
            loyalty_accounts.c.customer_id == sa.bindparam("id")
        )
        if dialect == "postgresql":
            lock = lock.with_for_update()
        found = _ACCOUNT_STATEMENTS[dialect] = (create, lock)
    return found


def read_account(conn: sa.Connection, customer_id: int) -> Account | None:
    row = conn.execute(
        sa.select(loyalty_accounts).where(loyalty_accounts.c.customer_id == customer_id)
    ).first()
    return None if row is None else _account(row)


def _account(row: Any) -> Account:
    return Account(
        int(row.customer_id),
        int(row.balance),
        int(row.pending),
        row.tier,
        row.tier_since,
        row.next_expiry_at,
    )


def has_key(conn: sa.Connection, key: str) -> bool:
    return conn.execute(_HAS_KEY, {"key": key}).first() is not None


_HAS_KEY = sa.select(loyalty_ledger.c.id).where(loyalty_ledger.c.key == sa.bindparam("key"))


def write_entry(
    conn: sa.Connection,
    customer_id: int,
    kind: str,
    key: str,
    now: datetime,
    *,
    points: int = 0,
    pending: int = 0,
    order_id: str | None = None,
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> int:
    """One ledger row and its effect on the account's sums (lots are the caller's)."""
    entry = {
        "customer_id": customer_id,
        "kind": kind,
        "points": points,
        "pending": pending,
        "key": key,
        "order_id": order_id,
        "reason": reason[:300],
        "details": details or {},
        "created_at": now,
    }
    entry_id = conn.execute(_ENTRY, entry).scalar_one()
    conn.execute(_SUMS, {"id": customer_id, "add": points, "add_pending": pending, "now": now})
    return int(entry_id)


_ENTRY = loyalty_ledger.insert().returning(loyalty_ledger.c.id)
_SUMS = (
    loyalty_accounts.update()
    .where(loyalty_accounts.c.customer_id == sa.bindparam("id"))
    .values(
        balance=loyalty_accounts.c.balance + sa.bindparam("add", type_=sa.Integer),
        pending=loyalty_accounts.c.pending + sa.bindparam("add_pending", type_=sa.Integer),
        updated_at=sa.bindparam("now", type_=loyalty_accounts.c.updated_at.type),
    )
)


def credit(
    conn: sa.Connection,
    customer_id: int,
    points: int,
    *,
    kind: str,
    key: str,
    now: datetime,
    expiry_days: int | None,
    available_at: datetime | None = None,
    order_id: str | None = None,
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> bool:
    """Add a lot of points, pending until ``available_at`` if that is still to come.

    False (and nothing written) when ``key`` was used before. The caller holds the lock.
    """
    if points <= 0 or has_key(conn, key):
        return False
    waits = available_at is not None and available_at > now
    entry_id = write_entry(
        conn,
        customer_id,
        kind,
        key,
        now,
        points=0 if waits else points,
        pending=points if waits else 0,
        order_id=order_id,
        reason=reason,
        details=details,
    )
    start = available_at if available_at is not None else now
    conn.execute(
        loyalty_lots.insert().values(
            customer_id=customer_id,
            entry_id=entry_id,
            order_id=order_id,
            points=points,
            remaining=points,
            status="pending" if waits else "active",
            activates_at=available_at if waits else None,
            expires_at=None if expiry_days is None else start + timedelta(days=expiry_days),
            created_at=now,
        )
    )
    refresh_next_expiry(conn, customer_id)
    return True


def debit(
    conn: sa.Connection,
    customer_id: int,
    points: int,
    *,
    kind: str,
    key: str,
    now: datetime,
    order_id: str | None = None,
    reason: str = "",
    details: dict[str, Any] | None = None,
    order_first: str | None = None,
    pending_too: bool = False,
) -> tuple[int, int]:
    """Take up to ``points``: (taken, short). The caller holds the lock.

    Lots are used soonest-expiring first; ``order_first`` names an order whose own lots go
    first (a refund takes back that order's points before any other), ``pending_too`` lets
    it take that order's pending points. Never below zero: what cannot be taken is
    ``short`` and is written in the entry's details.
    """
    lots = sa.select(loyalty_lots.c.id, loyalty_lots.c.remaining, loyalty_lots.c.status).where(
        loyalty_lots.c.customer_id == customer_id, loyalty_lots.c.remaining > 0
    )
    ordered: list[Any] = []
    if order_first is not None:
        statuses = ("pending", "active") if pending_too else ("active",)
        own = conn.execute(
            lots.where(
                loyalty_lots.c.order_id == order_first, loyalty_lots.c.status.in_(statuses)
            ).order_by(loyalty_lots.c.status.desc(), loyalty_lots.c.id)  # pending first
        ).all()
        ordered += own
    taken_ids = {r.id for r in ordered}
    ordered += [
        r
        for r in conn.execute(
            lots.where(loyalty_lots.c.status == "active").order_by(
                loyalty_lots.c.expires_at.is_(None), loyalty_lots.c.expires_at, loyalty_lots.c.id
            )
        ).all()
        if r.id not in taken_ids
    ]
    left = points
    from_active = from_pending = 0
    for lot in ordered:
        if left <= 0:
            break
        use = min(left, int(lot.remaining))
        conn.execute(
            loyalty_lots.update()
            .where(loyalty_lots.c.id == lot.id)
            .values(remaining=loyalty_lots.c.remaining - use)
        )
        left -= use
        if lot.status == "pending":
            from_pending += use
        else:
            from_active += use
    taken = points - left
    if taken or left:
        write_entry(
            conn,
            customer_id,
            kind,
            key,
            now,
            points=-from_active,
            pending=-from_pending,
            order_id=order_id,
            reason=reason,
            details={**(details or {}), "requested": points, "short": left},
        )
        refresh_next_expiry(conn, customer_id)
    return taken, left


def refresh_next_expiry(conn: sa.Connection, customer_id: int) -> None:
    soonest = (
        sa.select(sa.func.min(loyalty_lots.c.expires_at))
        .where(
            loyalty_lots.c.customer_id == customer_id,
            loyalty_lots.c.status == "active",
            loyalty_lots.c.remaining > 0,
        )
        .scalar_subquery()
    )
    conn.execute(
        loyalty_accounts.update()
        .where(loyalty_accounts.c.customer_id == customer_id)
        .values(next_expiry_at=soonest)
    )


def activate_due(conn: sa.Connection, customer_id: int, now: datetime) -> int:
    """Pending lots whose return period has passed become spendable; points activated."""
    due = conn.execute(
        sa.select(loyalty_lots.c.id, loyalty_lots.c.remaining, loyalty_lots.c.order_id)
        .where(
            loyalty_lots.c.customer_id == customer_id,
            loyalty_lots.c.status == "pending",
            loyalty_lots.c.remaining > 0,
            loyalty_lots.c.activates_at <= now,
        )
        .order_by(loyalty_lots.c.id)
    ).all()
    total = 0
    for lot in due:
        n = int(lot.remaining)
        conn.execute(
            loyalty_lots.update().where(loyalty_lots.c.id == lot.id).values(status="active")
        )
        write_entry(
            conn,
            customer_id,
            "activate",
            f"activate:{lot.id}",
            now,
            points=n,
            pending=-n,
            order_id=lot.order_id,
            details={"lot": int(lot.id)},
        )
        total += n
    if due:
        refresh_next_expiry(conn, customer_id)
    return total


def expire_due(conn: sa.Connection, customer_id: int, now: datetime) -> int:
    """Active lots past their expiry lose what is left of them; points expired."""
    due = conn.execute(
        sa.select(loyalty_lots.c.id, loyalty_lots.c.remaining, loyalty_lots.c.expires_at)
        .where(
            loyalty_lots.c.customer_id == customer_id,
            loyalty_lots.c.status == "active",
            loyalty_lots.c.remaining > 0,
            loyalty_lots.c.expires_at <= now,
        )
        .order_by(loyalty_lots.c.expires_at, loyalty_lots.c.id)
    ).all()
    total = 0
    for lot in due:
        n = int(lot.remaining)
        conn.execute(loyalty_lots.update().where(loyalty_lots.c.id == lot.id).values(remaining=0))
        write_entry(
            conn,
            customer_id,
            "expire",
            f"expire:{lot.id}",
            now,
            points=-n,
            details={"lot": int(lot.id), "expired_at": lot.expires_at.isoformat()},
        )
        total += n
    if due:
        refresh_next_expiry(conn, customer_id)
    return total


def settle(conn: sa.Connection, customer_id: int, now: datetime) -> list[Event]:
    """Bring one locked account up to ``now``: activations first, then expiries."""
    events: list[Event] = []
    activated = activate_due(conn, customer_id, now)
    if activated:
        events.append((customer_id, ACTIVATED, {"points": activated}))
    expired = expire_due(conn, customer_id, now)
    if expired:
        events.append((customer_id, EXPIRED, {"points": expired}))
    return events


@dataclass(frozen=True)
class Sums:
    balance: int
    pending: int


def rebuild(conn: sa.Connection, customer_id: int) -> Sums:
    """The balances as the ledger alone says they are (what the account row must match)."""
    row = conn.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(loyalty_ledger.c.points), 0),
            sa.func.coalesce(sa.func.sum(loyalty_ledger.c.pending), 0),
        ).where(loyalty_ledger.c.customer_id == customer_id)
    ).one()
    return Sums(int(row[0]), int(row[1]))


def history(conn: sa.Connection, customer_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """The latest ledger entries, newest first."""
    rows = conn.execute(
        sa.select(loyalty_ledger)
        .where(loyalty_ledger.c.customer_id == customer_id)
        .order_by(loyalty_ledger.c.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "id": int(r.id),
            "at": r.created_at,
            "kind": r.kind,
            "points": int(r.points),
            "pending": int(r.pending),
            "order_id": r.order_id,
            "reason": r.reason,
            "details": r.details or {},
        }
        for r in rows
    ]
