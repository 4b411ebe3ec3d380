"""Members as CSV rows, streamed in id order so an export of millions stays in bounded memory."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime

import sqlalchemy as sa

from rapport.segments.compiler import tune, where_clause
from rapport.segments.rules import Rule
from rapport.store.tables import customers

EXPORT_COLUMNS = (
    "id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "city",
    "orders_count",
    "revenue",
    "last_order_at",
    "last_seen_at",
    "rfm_cell",
    "lifecycle_stage",
)


def export_rows(engine: sa.Engine, rule: Rule, now: datetime, page: int = 5000) -> Iterator[str]:
    """CSV text, header first, a page of members at a time (keyset pagination on id)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    yield out.getvalue()
    after = 0
    cols = [customers.c[name] for name in EXPORT_COLUMNS]
    while True:
        with engine.connect() as conn:
            tune(conn)
            rows = conn.execute(
                sa.select(*cols)
                .where(where_clause(rule, now, conn.dialect.name), customers.c.id > after)
                .order_by(customers.c.id)
                .limit(page)
            ).all()
        if not rows:
            return
        out = io.StringIO()
        writer = csv.writer(out)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
        yield out.getvalue()
        after = rows[-1][0]
