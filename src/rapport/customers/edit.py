"""Changes made to a card by the management API (not by events)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.customers.profile import attach_identity
from rapport.store.tables import customers, identities


class IdentifierTaken(ValueError):
    """The email or phone already belongs to another profile."""


def patch_customer(
    conn: sa.Connection, customer_id: int, changes: dict[str, Any], now: datetime
) -> None:
    """Set the given attributes; ``traits`` merges, a trait set to null is removed.

    An email or phone also becomes an identity of the profile; if another profile owns it,
    nothing is changed and IdentifierTaken says who.
    """
    values = {k: v for k, v in changes.items() if k != "traits"}
    for kind in ("email", "phone"):
        value = values.get(kind)
        if value is None:
            continue
        owner = conn.execute(
            sa.select(identities.c.customer_id).where(
                identities.c.kind == kind, identities.c.value == value
            )
        ).scalar()
        if owner is None:
            attach_identity(conn, customer_id, kind, value, now)
        elif owner != customer_id:
            raise IdentifierTaken(f"{kind} {value} already belongs to customer {owner}")
    if "traits" in changes:
        current = conn.execute(
            sa.select(customers.c.traits).where(customers.c.id == customer_id)
        ).scalar_one()
        merged = {**(current or {}), **changes["traits"]}
        values["traits"] = {k: v for k, v in merged.items() if v is not None}
    values["updated_at"] = now
    conn.execute(customers.update().where(customers.c.id == customer_id).values(**values))
