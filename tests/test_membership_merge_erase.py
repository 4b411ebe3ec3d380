"""List memberships follow a merge and close on erasure."""

from __future__ import annotations

import sqlalchemy as sa

from rapport.customers.merge import merge_customers
from rapport.customers.privacy import erase_customer
from rapport.customers.profile import create_customers
from rapport.pipeline import Pipeline
from rapport.segments.lists import add_members, create_list
from rapport.store.engine import writing
from rapport.store.tables import segment_members
from tests.conftest import T0


def _current(engine: sa.Engine) -> set[tuple[int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(segment_members.c.segment_id, segment_members.c.customer_id).where(
                segment_members.c.until.is_(None)
            )
        )
        return {(s, c) for s, c in rows}


def test_merge_moves_and_deduplicates_memberships(engine, clock):
    pipeline = Pipeline(engine, clock)
    with writing(engine) as conn:
        keep, gone = create_customers(conn, 2, T0)
        both = create_list(conn, "both", "", T0)
        only_gone = create_list(conn, "only-gone", "", T0)
        add_members(conn, pipeline, both, [keep, gone], T0)
        add_members(conn, pipeline, only_gone, [gone], T0)
    with writing(engine) as conn:
        merge_customers(conn, keep, gone, "test", T0)
    assert _current(engine) == {(both.id, keep), (only_gone.id, keep)}
    with engine.connect() as conn:
        stays = conn.execute(
            sa.select(sa.func.count()).where(segment_members.c.customer_id == gone)
        ).scalar_one()
    assert stays == 0  # history moved with the profile too


def test_erasure_closes_memberships(engine, clock):
    pipeline = Pipeline(engine, clock)
    with writing(engine) as conn:
        (cid,) = create_customers(conn, 1, T0)
        lst = create_list(conn, "vip", "", T0)
        add_members(conn, pipeline, lst, [cid], T0)
    with writing(engine) as conn:
        erase_customer(conn, cid, T0)
    assert _current(engine) == set()
