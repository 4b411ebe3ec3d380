"""Small helpers the ingest and customer-card tests share: reading the store directly."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from rapport.store.tables import customers, events, metadata


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def table_counts(engine: sa.Engine) -> dict[str, int]:
    """Rows in every table, to prove a rejected request stored nothing."""
    with engine.connect() as conn:
        return {
            t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
            for t in metadata.sorted_tables
        }


def live_customers(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(customers)
                .where(customers.c.merged_into.is_(None))
                .order_by(customers.c.id)
            ).all()
        )


def event_rows(engine: sa.Engine, **where: Any) -> list[Any]:
    query = sa.select(events).order_by(events.c.id)
    for key, value in where.items():
        query = query.where(events.c[key] == value)
    with engine.connect() as conn:
        return list(conn.execute(query).all())


def assert_no_orphans(engine: sa.Engine) -> None:
    """Every identity has its customer and every cart item its cart: the store keeps no
    foreign key on these two (migration 0015), so merges and erasure must."""
    from rapport.store.tables import cart_items, carts, identities

    with engine.connect() as conn:
        lost_identities = conn.execute(
            sa.select(identities.c.id).where(
                ~sa.exists().where(customers.c.id == identities.c.customer_id)
            )
        ).all()
        lost_items = conn.execute(
            sa.select(cart_items.c.cart_pk, cart_items.c.product_id).where(
                ~sa.exists().where(carts.c.id == cart_items.c.cart_pk)
            )
        ).all()
    assert lost_identities == [] and lost_items == []
