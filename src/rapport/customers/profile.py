"""Creating profiles and attaching identifiers to them."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from rapport.store.fast import db_time, is_sqlite, run_many
from rapport.store.tables import customers, identities

IDENTITY_KINDS = ("user_id", "anonymous_id", "email", "phone")

# The typed attributes of a profile: what identify sets, a merge fills, erasure empties.
PROFILE_COLUMNS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "birthday",
    "gender",
    "city",
    "country",
    "timezone",
    "locale",
)


def create_customer(conn: sa.Connection, now: datetime) -> int:
    result = conn.execute(
        customers.insert()
        .values(created_at=now, updated_at=now, traits={})
        .returning(customers.c.id)
    )
    return int(result.scalar_one())


def create_customers(conn: sa.Connection, n: int, now: datetime) -> list[int]:
    """``n`` new empty profiles in one statement; ids in creation order."""
    if n == 0:
        return []
    if not is_sqlite(conn):
        # The rows are alike, so which id went to which does not matter: one statement
        # whatever ``n``, where the generic form's text grows with it.
        made = conn.exec_driver_sql(
            "INSERT INTO customers (created_at, updated_at, traits) "
            "SELECT %s, %s, '{}'::jsonb FROM generate_series(1, %s) RETURNING id",
            (now, now, n),
        )
        return sorted(int(cid) for (cid,) in made)
    result = conn.execute(
        customers.insert().returning(customers.c.id, sort_by_parameter_order=True),
        [{"created_at": now, "updated_at": now, "traits": {}} for _ in range(n)],
    )
    return [int(cid) for cid in result.scalars()]


def attach_identities(conn: sa.Connection, rows: list[dict[str, object]]) -> None:
    run_many(
        conn,
        "INSERT INTO identities (customer_id, kind, value, created_at) VALUES (%s, %s, %s, %s)",
        [
            (r["customer_id"], r["kind"], r["value"], db_time(conn, r["created_at"]))  # type: ignore[arg-type]
            for r in rows
        ],
        array_types=("bigint", "text", "text", "timestamptz"),
    )


def attach_identity(
    conn: sa.Connection, customer_id: int, kind: str, value: str, now: datetime
) -> None:
    conn.execute(
        identities.insert().values(customer_id=customer_id, kind=kind, value=value, created_at=now)
    )


def live_id(conn: sa.Connection, customer_id: int) -> int | None:
    """The id a profile lives under now: merged profiles point at their survivor."""
    seen = set()
    current: int | None = customer_id
    while current is not None and current not in seen:
        seen.add(current)
        row = conn.execute(
            sa.select(customers.c.merged_into).where(customers.c.id == current)
        ).first()
        if row is None:
            return None
        if row.merged_into is None:
            return current
        current = int(row.merged_into)
    return current
