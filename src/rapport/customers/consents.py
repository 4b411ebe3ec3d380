"""Consent per channel: the latest decision wins, with its source and time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.store.engine import upsert
from rapport.store.tables import consents


@dataclass(frozen=True, slots=True)
class ConsentChange:
    customer_id: int
    channel: str
    status: str
    source: str
    at: datetime
    double_opt_in: str = "none"


def set_consents(conn: sa.Connection, changes: list[ConsentChange]) -> None:
    """Upsert; an older decision never overwrites a newer one (imports can arrive late)."""
    if not changes:
        return
    stmt = upsert(conn, consents)
    stmt = stmt.on_conflict_do_update(
        index_elements=["customer_id", "channel"],
        set_={
            "status": stmt.excluded.status,
            "source": stmt.excluded.source,
            "updated_at": stmt.excluded.updated_at,
            "double_opt_in": stmt.excluded.double_opt_in,
        },
        where=stmt.excluded.updated_at >= consents.c.updated_at,
    )
    conn.execute(
        stmt,
        [
            {
                "customer_id": ch.customer_id,
                "channel": ch.channel,
                "status": ch.status,
                "source": ch.source,
                "updated_at": ch.at,
                "double_opt_in": ch.double_opt_in,
            }
            for ch in changes
        ],
    )


def consents_of(conn: sa.Connection, customer_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(consents)
        .where(consents.c.customer_id == customer_id)
        .order_by(consents.c.channel)
    )
    return [
        {
            "channel": r.channel,
            "status": r.status,
            "source": r.source,
            "updated_at": r.updated_at,
            "double_opt_in": r.double_opt_in,
        }
        for r in rows
    ]
