"""Points follow a merged profile to its survivor.

The ledger is append-only, so nothing is re-assigned: the merged profile's open lots are
moved by a pair of ``transfer`` entries (out of one account, into the other), each moved
lot keeping its status, activation and expiry dates and its order, so a later refund of
that order still takes its points back from the survivor.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from rapport.loyalty.ledger import lock_account, refresh_next_expiry, write_entry
from rapport.store.tables import loyalty_lots


def merge_points(conn: sa.Connection, survivor: int, loser: int, now: datetime) -> int:
    """Move ``loser``'s points to ``survivor`` (in the merge's transaction); how many."""
    if survivor == loser:
        return 0
    for cid in sorted((survivor, loser)):  # one lock order everywhere: no deadlock
        lock_account(conn, cid, now)
    lots = conn.execute(
        sa.select(loyalty_lots)
        .where(loyalty_lots.c.customer_id == loser, loyalty_lots.c.remaining > 0)
        .order_by(loyalty_lots.c.id)
    ).all()
    if not lots:
        return 0
    active = sum(int(lot.remaining) for lot in lots if lot.status == "active")
    pending = sum(int(lot.remaining) for lot in lots if lot.status == "pending")
    details = {"from": loser, "to": survivor}
    write_entry(
        conn,
        loser,
        "transfer",
        f"merge:{loser}:{survivor}:out",
        now,
        points=-active,
        pending=-pending,
        reason="profile merged",
        details=details,
    )
    entry_id = write_entry(
        conn,
        survivor,
        "transfer",
        f"merge:{loser}:{survivor}:in",
        now,
        points=active,
        pending=pending,
        reason="profile merged",
        details=details,
    )
    for lot in lots:
        conn.execute(loyalty_lots.update().where(loyalty_lots.c.id == lot.id).values(remaining=0))
        conn.execute(
            loyalty_lots.insert().values(
                customer_id=survivor,
                entry_id=entry_id,
                order_id=lot.order_id,
                points=int(lot.remaining),
                remaining=int(lot.remaining),
                status=lot.status,
                activates_at=lot.activates_at,
                expires_at=lot.expires_at,
                created_at=now,
            )
        )
    refresh_next_expiry(conn, loser)
    refresh_next_expiry(conn, survivor)
    return active + pending
