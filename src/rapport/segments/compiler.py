"""The SQL evaluator: a rule as one WHERE clause over ``customers``, for counts, member
lists, exports and sweeps. Cut-off times are computed from ``now`` in Python and bound as
parameters, so both stores run the same comparisons without their own date arithmetic.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from rapport.segments.context import Context
from rapport.segments.rules import Rule
from rapport.store.tables import customers


def live() -> sa.ColumnElement[bool]:
    """Merged and erased profiles are never members of anything."""
    return sa.and_(customers.c.merged_into.is_(None), customers.c.erased_at.is_(None))


def where_clause(rule: Rule, now: datetime, dialect_name: str) -> sa.ColumnElement[bool]:
    return sa.and_(live(), rule.sql(Context.at(now, dialect_name)))


# A condition under OR or NOT compiles to ``id IN (subquery)`` that PostgreSQL cannot turn
# into a join; it keeps the subquery's ids as a hash table only if they fit ``work_mem``
# (4 MB by default), and otherwise rescans them for every customer: 60 s instead of 1 s
# for such a segment on a million customers (docs/benchmarks.md). The setting is local to
# the transaction of the query.
WORK_MEM = "64MB"


def tune(conn: sa.Connection) -> None:
    """Give a full evaluation the memory its hashed subqueries need (PostgreSQL only)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL work_mem = '{WORK_MEM}'")


def count(conn: sa.Connection, rule: Rule, now: datetime) -> int:
    tune(conn)
    query = (
        sa.select(sa.func.count())
        .select_from(customers)
        .where(where_clause(rule, now, conn.dialect.name))
    )
    return int(conn.execute(query).scalar_one())


def member_ids(
    conn: sa.Connection, rule: Rule, now: datetime, limit: int | None = None, offset: int = 0
) -> list[int]:
    """Members in id order, so pages are stable between calls."""
    tune(conn)
    query = (
        sa.select(customers.c.id)
        .where(where_clause(rule, now, conn.dialect.name))
        .order_by(customers.c.id)
        .offset(offset)
    )
    if limit is not None:
        query = query.limit(limit)
    return [int(i) for i in conn.execute(query).scalars()]
