"""Writing customers for the segment tests through the store's own write paths, and the
snapshot loader that the real-time evaluator reads them with."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rapport.customers.computed import bump_counters
from rapport.customers.consents import ConsentChange, set_consents
from rapport.customers.timeline import store_events
from rapport.segments.compiler import member_ids
from rapport.segments.evaluator import evaluate, load_snapshots
from rapport.segments.rules import parse_rule
from rapport.store.engine import writing
from rapport.store.tables import customers, segment_members, segments
from tests.conftest import T0

SEGMENT_TABLES = (
    "segment_members",
    "segments",
    "consents",
    "event_counters",
    "events",
    "customers",
)


def add_customer(conn: sa.Connection, **fields: Any) -> int:
    values: dict[str, Any] = {
        "created_at": T0 - timedelta(days=400),
        "updated_at": T0,
        "traits": {},
    }
    values.update(fields)
    return int(conn.execute(customers.insert().values(**values)).inserted_primary_key[0])


def add_events(
    conn: sa.Connection, cid: int, items: list[tuple[str, datetime, dict[str, Any]]]
) -> None:
    """Events on the timeline and in the per-day counters, as the pipeline writes them."""
    rows = [
        {
            "customer_id": cid,
            "message_id": f"test-{uuid.uuid4()}",
            "type": "track",
            "name": name,
            "properties": props,
            "context": {},
            "occurred_at": at,
            "received_at": at,
            "source": "api",
        }
        for name, at, props in items
    ]
    store_events(conn, rows)
    bump_counters(conn, Counter((cid, name, at.date()) for name, at, _ in items))


def set_consent(conn: sa.Connection, cid: int, channel: str, status: str) -> None:
    set_consents(conn, [ConsentChange(cid, channel, status, "test", T0)])


def add_segment(conn: sa.Connection, name: str, rules: dict[str, Any] | None = None) -> int:
    row = {
        "name": name,
        "kind": "rules" if rules else "static",
        "rules": rules,
        "created_at": T0,
        "updated_at": T0,
    }
    return int(conn.execute(segments.insert().values(**row)).inserted_primary_key[0])


def add_member(conn: sa.Connection, segment_id: int, cid: int, *, left: bool = False) -> None:
    conn.execute(
        segment_members.insert().values(
            segment_id=segment_id,
            customer_id=cid,
            since=T0 - timedelta(days=10),
            until=T0 - timedelta(days=1) if left else None,
        )
    )


def wipe(conn: sa.Connection) -> None:
    for name in SEGMENT_TABLES:
        conn.exec_driver_sql(f"DELETE FROM {name}")


def both(engine: sa.Engine, rule: dict[str, Any] | Any, now: datetime = T0) -> set[int]:
    """Members by SQL and by the in-memory evaluator; they must agree."""
    parsed = parse_rule(rule) if isinstance(rule, dict) else rule
    with engine.connect() as conn:
        by_sql = set(member_ids(conn, parsed, now))
        everyone = list(conn.execute(sa.select(customers.c.id)).scalars())
        in_memory = evaluate(conn, parsed, everyone, now)
    assert by_sql == in_memory, (parsed.to_json(), by_sql, in_memory)
    return by_sql


def test_snapshots_hold_only_what_the_rule_reads(engine: sa.Engine) -> None:
    with writing(engine) as conn:
        a = add_customer(conn, city="Kazan")
        add_events(conn, a, [("Product Viewed", T0, {"category": "shoes"}), ("Signed In", T0, {})])
        set_consent(conn, a, "email", "subscribed")
        seg = add_segment(conn, "static")
        add_member(conn, seg, a)
    rule = parse_rule(
        {
            "all": [
                {"event": "Signed In"},
                {"event": "Product Viewed", "where": [{"property": "category", "op": "exists"}]},
                {"consent": "email"},
                {"segment": seg},
            ]
        }
    )
    with engine.connect() as conn:
        snaps = load_snapshots(conn, [a, a + 1000], rule, T0)
    assert list(snaps) == [a]
    snap = snaps[a]
    assert snap.counters == {"Signed In": {T0.date(): 1}}
    assert [p for _, p in snap.events["Product Viewed"]] == [{"category": "shoes"}]
    assert snap.consents == {"email": "subscribed"}
    assert snap.segments == frozenset({seg})
    assert both(engine, rule) == {a}


def test_merged_and_erased_customers_are_never_members(engine: sa.Engine) -> None:
    with writing(engine) as conn:
        kept = add_customer(conn, city="Kazan")
        add_customer(conn, city="Kazan", merged_into=kept)
        add_customer(conn, city="Kazan", erased_at=T0)
    assert both(engine, {"attribute": "city", "op": "eq", "value": "Kazan"}) == {kept}
    assert both(engine, {"not": {"attribute": "city", "op": "eq", "value": "Moscow"}}) == {kept}


def test_counting_and_paging(engine: sa.Engine) -> None:
    from rapport.segments.compiler import count

    with writing(engine) as conn:
        ids = [add_customer(conn, birthday=date(1990, 1, 1 + i)) for i in range(5)]
    rule = parse_rule({"attribute": "birthday", "op": "exists"})
    with engine.connect() as conn:
        assert count(conn, rule, T0) == 5
        assert member_ids(conn, rule, T0, limit=2, offset=1) == ids[1:3]


def test_snapshots_read_in_chunks_are_the_same(engine: sa.Engine, monkeypatch: Any) -> None:
    """Customers split over several statements (lists and arrays cut short here) give the
    same snapshots, with the store's values in the evaluator's types."""
    from rapport.segments import reads

    with writing(engine) as conn:
        ids = [add_customer(conn, city="Kazan") for _ in range(5)]
        seg = add_segment(conn, "static")
        for i, cid in enumerate(ids):
            add_events(
                conn,
                cid,
                [
                    ("Product Viewed", T0 - timedelta(days=i), {"category": "shoes", "n": i}),
                    ("Signed In", T0 - timedelta(days=40 * i), {}),
                ],
            )
            if i % 2 == 0:
                set_consent(conn, cid, "email", "subscribed")
                add_member(conn, seg, cid)
    rule = parse_rule(
        {
            "all": [
                {"event": "Signed In", "within_last": 30},
                {"event": "Product Viewed", "where": [{"property": "category", "op": "exists"}]},
                {"any": [{"consent": "email"}, {"segment": seg}]},
            ]
        }
    )
    with engine.connect() as conn:
        whole = load_snapshots(conn, ids, rule, T0)
        monkeypatch.setattr(reads, "CHUNK", 2)
        monkeypatch.setattr(reads, "ARRAY_CHUNK", 2)
        cut = load_snapshots(conn, ids, rule, T0)
    assert whole == cut
    first = whole[ids[0]]
    assert first.counters == {"Signed In": {T0.date(): 1}}  # a date, not the stored text
    assert first.events["Product Viewed"] == [(T0, {"category": "shoes", "n": 0})]
    assert first.events["Product Viewed"][0][0].utcoffset() == timedelta(0)
    assert first.consents == {"email": "subscribed"}
    assert first.segments == frozenset({seg})
    assert whole[ids[1]].consents == {}
    assert whole[ids[1]].segments == frozenset()
    # Signed In 40 days ago is outside the rule's widest window: not read at all.
    assert "Signed In" not in whole[ids[1]].counters
    assert both(engine, rule) == {ids[0]}
