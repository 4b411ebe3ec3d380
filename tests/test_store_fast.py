"""The hand-written hot-path statements: the same rows and answers on both stores.

PostgreSQL gets one statement over arrays where SQLite gets executemany, and an
``= ANY(array)`` where SQLite gets ``IN``; these tests hold the two forms to the same
result, including text that could break an array literal.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from rapport.store.fast import among, array_literal, db_time, run_many, update_rows
from rapport.store.tables import customers, event_counters, identities

NASTY = ['a"b', "c\\d", "{x}", "NULL", "", " spaced ", "é,ü;", "it's", '\\"', "tab\there"]
T = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def _customers(conn: sa.Connection, n: int) -> list[int]:
    ids = []
    for _ in range(n):
        ids.append(
            conn.execute(
                customers.insert()
                .values(created_at=T, updated_at=T, traits={})
                .returning(customers.c.id)
            ).scalar_one()
        )
    return ids


def test_run_many_stores_every_row_and_text_intact(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        cid = _customers(conn, 1)[0]
        run_many(
            conn,
            "INSERT INTO identities (customer_id, kind, value, created_at) VALUES (%s, %s, %s, %s)",
            [(cid, "email", value, db_time(conn, T)) for value in NASTY],
            array_types=("bigint", "text", "text", "timestamptz"),
        )
        stored = conn.execute(sa.select(identities.c.value, identities.c.created_at)).all()
    assert sorted(v for v, _ in stored) == sorted(NASTY)
    assert {at for _, at in stored} == {T}


def test_run_many_upsert_adds_to_existing_counts(engine: sa.Engine) -> None:
    sql = (
        "INSERT INTO event_counters (customer_id, name, day, count) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (customer_id, name, day) "
        "DO UPDATE SET count = event_counters.count + excluded.count"
    )
    with engine.begin() as conn:
        a, b = _customers(conn, 2)

        def day(d: date) -> object:
            return d.isoformat() if conn.dialect.name == "sqlite" else d

        types = ("bigint", "text", "date", "int")
        d1, d2 = date(2026, 3, 1), date(2026, 3, 2)
        run_many(conn, sql, [(a, "X", day(d1), 2), (b, "X", day(d1), 1)], array_types=types)
        run_many(conn, sql, [(a, "X", day(d1), 3), (a, "X", day(d2), 1)], array_types=types)
        rows = conn.execute(
            sa.select(event_counters.c.customer_id, event_counters.c.day, event_counters.c.count)
        ).all()
    assert sorted(rows) == sorted([(a, d1, 5), (b, d1, 1), (a, d2, 1)])


def test_run_many_refuses_a_statement_it_cannot_unnest(_engines: dict[str, sa.Engine]) -> None:
    """Only PostgreSQL rewrites the statement (SQLite runs it as written)."""
    with (
        _engines["postgres"].begin() as conn,
        pytest.raises(ValueError, match="expected VALUES with 2 placeholders"),
    ):
        run_many(conn, "DELETE FROM identities WHERE id = %s", [(1,)], array_types=("a", "b"))


def test_among_matches_in_for_any_number_of_values(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        ids = _customers(conn, 5)
        for wanted in ([], [ids[0]], ids[1:4], [*ids, 10**9]):
            found = conn.execute(
                sa.select(customers.c.id).where(among(conn, customers.c.id, wanted))
            ).scalars()
            assert sorted(found) == sorted(i for i in wanted if i in ids)


def test_among_finds_text_keys_with_quotes_and_backslashes(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        cid = _customers(conn, 1)[0]
        conn.execute(
            identities.insert(),
            [{"customer_id": cid, "kind": "email", "value": v, "created_at": T} for v in NASTY],
        )
        found = conn.execute(
            sa.select(identities.c.value).where(among(conn, identities.c.value, NASTY[:5]))
        ).scalars()
        assert sorted(found) == sorted(NASTY[:5])


def test_update_rows_sets_and_keeps_columns(engine: sa.Engine) -> None:
    later = T + timedelta(days=1)
    with engine.begin() as conn:
        a, b, c = _customers(conn, 3)
        conn.execute(customers.update().where(customers.c.id == b).values(city="Omsk"))
        update_rows(
            conn,
            "customers",
            "id",
            [
                ("city", "text", "coalesce({new}, {old})"),
                ("first_name", "text", "{new}"),
                ("updated_at", "timestamptz", "{new}"),
            ],
            [
                (a, "Kazan", 'Ann "A"', db_time(conn, later)),
                (b, None, "Bob\\", db_time(conn, later)),
            ],
        )
        rows = {
            r.id: (r.city, r.first_name, r.updated_at) for r in conn.execute(sa.select(customers))
        }
    assert rows[a] == ("Kazan", 'Ann "A"', later)
    assert rows[b] == ("Omsk", "Bob\\", later)  # None keeps what was there
    assert rows[c] == (None, None, T)  # not in the rows: untouched


def test_array_literal_forms() -> None:
    assert array_literal([1, 2, 3]) == "{1,2,3}"
    assert array_literal([]) == "{}"
    assert array_literal([1, None, True]) == "{1,NULL,t}"
    assert array_literal(['a"b', "c\\d"]) == '{"a\\"b","c\\\\d"}'
    assert array_literal([date(2026, 1, 2), T]) == '{"2026-01-02","2026-03-01T12:30:00+00:00"}'
    with pytest.raises(ValueError, match="without a time zone"):
        array_literal([datetime(2026, 1, 1)])
    with pytest.raises(TypeError, match="no array form for dict"):
        array_literal([{"a": 1}])


@pytest.mark.parametrize("copies", [1, 5], ids=["insert", "copy"])
def test_events_keep_tabs_backslashes_and_line_breaks(engine: sa.Engine, copies: int) -> None:
    """A few events go in as one INSERT over arrays on PostgreSQL, many through COPY's
    text format: either way, text that could end a field or a row comes back exactly, in
    names, ids and JSON alike."""
    from rapport.customers.timeline import COPY_FROM, store_events
    from rapport.store.tables import events

    texts = [*NASTY, "line\nbreak", "back\\slash\\\\n", "\\N", "\x7f"] * copies
    assert (len(texts) >= COPY_FROM) == (copies > 1)
    rows = [
        {
            "customer_id": 7,
            "message_id": f"m{i}\t{text}",
            "type": "track",
            "name": f"Ev\\{text}\r\n",
            "properties": {"v": text, "k\t\\": [text, None, 1.5]},
            "context": {"page": {"title": text}},
            "occurred_at": T + timedelta(seconds=i),
            "received_at": T,
            "source": "api",
        }
        for i, text in enumerate(texts)
    ]
    with engine.begin() as conn:
        store_events(conn, rows)
        stored = conn.execute(sa.select(events).order_by(events.c.occurred_at)).all()
    assert [
        (r.message_id, r.name, r.properties, r.context, r.occurred_at, r.received_at)
        for r in stored
    ] == [
        (r["message_id"], r["name"], r["properties"], r["context"], r["occurred_at"], T)
        for r in rows
    ]


def test_key_test_and_fetch_find_the_same_rows_on_both_stores(engine: sa.Engine) -> None:
    from rapport.store.fast import fetch, key_test

    with engine.begin() as conn:
        cid = _customers(conn, 1)[0]
        conn.execute(
            identities.insert(),
            [{"customer_id": cid, "kind": "email", "value": v, "created_at": T} for v in NASTY],
        )
        test, params = key_test(conn, "value", [*NASTY[3:7], "absent"], "text")
        rows = fetch(conn, f"SELECT value, customer_id FROM identities WHERE {test}", params)
    assert sorted(rows) == sorted((v, cid) for v in NASTY[3:7])


def test_insert_unnest_upserts_and_returns_rows_with_json_intact(
    _engines: dict[str, sa.Engine],
) -> None:
    """The PostgreSQL-only form of the catalog's and orders' upserts: text that could break
    an array literal, JSON documents, NULLs, and the rows it returns matched by key."""
    from rapport.catalog.products import upsert_products
    from rapport.store.fast import insert_unnest
    from rapport.store.tables import products

    engine = _engines["postgres"]
    items = [
        {"id": f"p{i}{text}", "name": text or None, "price": 1.5 * i, "attributes": {text: [i]}}
        for i, text in enumerate(NASTY)
    ]
    with engine.begin() as conn:
        conn.execute(products.delete())
        upsert_products(conn, items, T)
        # Known products: the fields given change, the ones left out (None) stay.
        upsert_products(conn, [{"id": "p1c\\d", "name": None, "price": 9.0}], T + timedelta(1))
        got = {r.id: r for r in conn.execute(sa.select(products))}
        returned = insert_unnest(
            conn,
            products,
            ("id", "attributes", "created_at", "updated_at"),
            [("new\t1", {"k": 'v"1'}, T, T), ('p0a"b', {}, T, T)],
            " ON CONFLICT (id) DO UPDATE SET updated_at = EXCLUDED.updated_at RETURNING id",
        ).fetchall()
        assert sorted(r[0] for r in returned) == ["new\t1", 'p0a"b']
        again = conn.execute(
            sa.select(products.c.attributes).where(products.c.id == "new\t1")
        ).scalar_one()
        conn.execute(products.delete())
    assert len(got) == len(NASTY)
    for i, text in enumerate(NASTY):
        row = got[f"p{i}{text}"]
        assert row.attributes == {text: [i]}
        assert row.name == (text or None)  # p1's second upsert left its name alone
    assert got["p1c\\d"].price == 9.0 and got["p1c\\d"].name == "c\\d"
    assert got["p1c\\d"].updated_at == T + timedelta(1)
    assert again == {"k": 'v"1'}


def test_new_customers_get_distinct_ascending_ids(engine: sa.Engine) -> None:
    from rapport.customers.profile import create_customers

    with engine.begin() as conn:
        first = create_customers(conn, 3, T)
        second = create_customers(conn, 250, T)
        stored = conn.execute(sa.select(sa.func.count()).select_from(customers)).scalar_one()
    assert first == sorted(first) and second == sorted(second)
    assert len(set(first + second)) == 253 == stored
    assert max(first) < min(second)


def test_statements_on_the_driver_keep_transactions_and_errors(engine: sa.Engine) -> None:
    """On PostgreSQL the hand-written statements run on the driver's cursor: what they
    write is committed by the connection's commit even as its first statement, is rolled
    back with it, and a failure is SQLAlchemy's exception (which the ingest retries catch)."""
    from rapport.store.fast import execute, fetch

    sql = "INSERT INTO identities (customer_id, kind, value, created_at) VALUES (%s, %s, %s, %s)"
    with engine.begin() as conn:
        cid = _customers(conn, 1)[0]
    with engine.connect() as conn:
        execute(conn, sql, [cid, "email", "kept@example.com", db_time(conn, T)])
        conn.commit()
    with engine.connect() as conn:
        execute(conn, sql, [cid, "email", "dropped@example.com", db_time(conn, T)])
        conn.rollback()
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        execute(conn, sql, [cid, "email", "kept@example.com", db_time(conn, T)])
    with engine.connect() as conn:
        values = fetch(conn, "SELECT value FROM identities WHERE customer_id = %s", [cid])
    assert [v for (v,) in values] == ["kept@example.com"]
