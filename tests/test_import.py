"""Bulk import from CSV and JSON Lines, on both stores, with real files.

Each kind in each format; the all-or-nothing rule (a bad row stores nothing, and neither
does a failure half-way through storing); --skip-invalid; the rejects file; re-import
storing nothing twice; identity merges through imported rows; and the command itself.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from rapport.cli import app
from rapport.clock import SimulatedClock
from rapport.ingest.importers import ImportFileError, ImportReport, import_file
from rapport.pipeline import Pipeline
from rapport.store.tables import (
    categories,
    compatible_categories,
    consents,
    customers,
    events,
    identities,
    metadata,
    order_lines,
    orders,
    product_views,
    products,
)


def run(engine: sa.Engine, clock: SimulatedClock, kind: str, path: Path, **kw: Any) -> ImportReport:
    return import_file(engine, Pipeline(engine, clock), kind, path, **kw)


def write(path: Path, text: str) -> Path:
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    return path


def jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def table_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
            for t in metadata.sorted_tables
        }


def rows(engine: sa.Engine, query: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(query).all())


def live_customers(engine: sa.Engine) -> list[Any]:
    return rows(
        engine,
        sa.select(customers).where(customers.c.merged_into.is_(None)).order_by(customers.c.id),
    )


def customer_of(engine: sa.Engine, kind: str, value: str) -> Any:
    cid = rows(
        engine,
        sa.select(identities.c.customer_id).where(
            identities.c.kind == kind, identities.c.value == value
        ),
    )[0][0]
    return rows(engine, sa.select(customers).where(customers.c.id == cid))[0]


CUSTOMERS_CSV = """
user_id,email,phone,first_name,last_name,birthday,gender,city,country,timezone,locale,consent_email,consent_sms,loyalty_card,vip
u1,Ann@Example.com,+7 916 123-45-67,Ann,Lee,1990-05-01,female,Moscow,RU,Europe/Moscow,ru_RU,yes,no,00123,true
u2,bob@example.com,,Bob,Stone,,,Kazan,RU,,,subscribed,,,false
"""

ORDERS_CSV = """
order_id,user_id,occurred_at,total,currency,status,channel,store_id,product_id,price,quantity,category
o1,u1,2026-01-05T10:00:00Z,150,RUB,completed,,,p1,50,2,shoes
o1,u1,2026-01-05T10:00:00Z,,,,,,p2,50,1,socks
o2,u1,2026-01-07T10:00:00Z,30,RUB,refunded,,,p3,30,1,hats
o3,u2,2026-01-08T10:00:00Z,80,RUB,completed,offline,shop-7,p1,80,1,shoes
o4,u2,2026-01-09T10:00:00Z,20,RUB,cancelled,,,p2,20,1,socks
"""


# --- each kind, each format -------------------------------------------------------------


def test_customers_csv_fills_the_card(engine, clock, tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text(CUSTOMERS_CSV.lstrip(), encoding="utf-8-sig")  # as spreadsheets save it
    seen: list[tuple[str, int, int]] = []
    report = run(engine, clock, "customers", path, progress=lambda *a: seen.append(a))
    assert seen[-1] == ("store", path.stat().st_size, path.stat().st_size)
    assert ("check", path.stat().st_size, path.stat().st_size) in seen
    assert (report.rows_read, report.rows_stored, report.rows_rejected) == (2, 2, 0)
    assert report.committed
    ann = customer_of(engine, "user_id", "u1")
    assert (ann.first_name, ann.last_name, ann.email, ann.phone) == (
        "Ann",
        "Lee",
        "ann@example.com",
        "+79161234567",
    )
    assert (str(ann.birthday), ann.gender, ann.city, ann.timezone, ann.locale) == (
        "1990-05-01",
        "female",
        "Moscow",
        "Europe/Moscow",
        "ru-RU",
    )
    # Other columns are custom traits; a code with a leading zero stays text.
    assert ann.traits == {"loyalty_card": "00123", "vip": True}
    given = dict(
        rows(
            engine,
            sa.select(consents.c.channel, consents.c.status).where(
                consents.c.customer_id == ann.id
            ),
        )
    )
    assert given == {"email": "subscribed", "sms": "unsubscribed"}
    bob = customer_of(engine, "email", "bob@example.com")
    assert bob.traits == {"vip": False}
    assert {e.source for e in rows(engine, sa.select(events))} == {"import"}


def test_customers_jsonl_with_segment_names_and_traits(engine, clock, tmp_path):
    path = jsonl(
        tmp_path / "customers.jsonl",
        [
            {
                "userId": 42,
                "email": "kate@example.com",
                "firstName": "Kate",
                "consent_push": True,
                "traits": {"plan": "gold", "children": 2},
                "score": 7.5,
            },
            {"phone": "+79161112233", "city": "Omsk"},
        ],
    )
    report = run(engine, clock, "customers", path)
    assert (report.rows_stored, report.rows_rejected) == (2, 0)
    kate = customer_of(engine, "user_id", "42")
    assert kate.first_name == "Kate"
    assert kate.traits == {"plan": "gold", "children": 2, "score": 7.5}
    assert customer_of(engine, "phone", "+79161112233").city == "Omsk"


def test_orders_csv_one_row_per_line_with_refunds_and_cancellations(engine, clock, tmp_path):
    report = run(engine, clock, "orders", write(tmp_path / "orders.csv", ORDERS_CSV))
    assert (report.rows_read, report.rows_stored, report.rows_rejected) == (5, 5, 0)
    got = {
        r.order_id: (r.status, r.total, r.refunded, r.channel, r.store_id)
        for r in rows(engine, sa.select(orders))
    }
    assert got == {
        "o1": ("completed", 150.0, 0.0, "online", None),
        "o2": ("refunded", 30.0, 30.0, "online", None),
        "o3": ("completed", 80.0, 0.0, "offline", "shop-7"),
        "o4": ("cancelled", 20.0, 0.0, "online", None),
    }
    lines = rows(
        engine,
        sa.select(order_lines.c.product_id, order_lines.c.price, order_lines.c.quantity)
        .join(orders, orders.c.id == order_lines.c.order_pk)
        .where(orders.c.order_id == "o1")
        .order_by(order_lines.c.product_id),
    )
    assert [tuple(r) for r in lines] == [("p1", 50.0, 2), ("p2", 50.0, 1)]
    u1 = customer_of(engine, "user_id", "u1")
    assert (u1.orders_count, u1.revenue) == (1, 150.0)
    assert u1.last_order_at.isoformat() == "2026-01-05T10:00:00+00:00"
    u2 = customer_of(engine, "user_id", "u2")
    assert (u2.orders_count, u2.revenue) == (1, 80.0)
    assert table_counts(engine)["products"] == 3  # the lines' products reach the catalog


def test_orders_jsonl_with_a_products_list_and_email_only(engine, clock, tmp_path):
    run(engine, clock, "customers", write(tmp_path / "c.csv", CUSTOMERS_CSV))
    path = jsonl(
        tmp_path / "orders.jsonl",
        [
            {
                "order_id": "w1",
                "email": "BOB@example.com",
                "occurred_at": "2026-02-01T09:30:00+03:00",
                "currency": "RUB",
                "products": [
                    {"product_id": "p9", "price": 10.5, "quantity": 2, "category": "toys"},
                    {"product_id": "p8", "price": 4},
                ],
                "coupon": "SPRING",
                "gift_wrap": True,
            }
        ],
    )
    report = run(engine, clock, "orders", path)
    assert (report.rows_stored, report.rows_rejected) == (1, 0)
    order = rows(engine, sa.select(orders))[0]
    assert (order.total, order.coupon, order.occurred_at.isoformat()) == (
        25.0,
        "SPRING",
        "2026-02-01T06:30:00+00:00",
    )
    bob = customer_of(engine, "user_id", "u2")
    assert order.customer_id == bob.id  # the email found Bob's card
    assert (bob.orders_count, bob.revenue) == (1, 25.0)
    event = rows(engine, sa.select(events).where(events.c.name == "Order Completed"))[0]
    assert event.properties["gift_wrap"] is True


def test_products_csv_and_categories(engine, clock, tmp_path):
    path = write(
        tmp_path / "products.csv",
        """
product_id;name;category;category_name;compatible_categories;brand;price;currency;colour
p1;Runner;shoes;Shoes;socks|laces;Acme;49,90;rub;red
p2;Wool socks;socks;Socks;;Acme;9;RUB;
p3;Laces;laces;;shoes;;2.5;RUB;white
""",
    )
    report = run(engine, clock, "products", path)
    assert (report.rows_read, report.rows_stored, report.rows_rejected) == (3, 3, 0)
    p1 = rows(engine, sa.select(products).where(products.c.id == "p1"))[0]
    assert (p1.name, p1.category_id, p1.brand, p1.price, p1.currency, p1.attributes) == (
        "Runner",
        "shoes",
        "Acme",
        49.9,
        "RUB",
        {"colour": "red"},
    )
    assert dict(rows(engine, sa.select(categories.c.id, categories.c.name))) == {
        "shoes": "Shoes",
        "socks": "Socks",
        "laces": "laces",
    }
    pairs = {tuple(r) for r in rows(engine, sa.select(compatible_categories))}
    assert pairs == {("shoes", "socks"), ("shoes", "laces"), ("laces", "shoes")}


def test_products_jsonl_replace_as_given_and_keep_category_names(engine, clock, tmp_path):
    first = jsonl(
        tmp_path / "products.jsonl",
        [
            {"id": "p1", "name": "Old", "category": "shoes", "category_name": "Shoes", "price": 5},
            {"id": "p2", "name": "Cap", "price": 3, "attributes": {"size": "M"}},
        ],
    )
    run(engine, clock, "products", first)
    second = jsonl(
        tmp_path / "products2.jsonl",
        [{"id": "p1", "name": "New", "category": "shoes", "compatible_categories": ["socks"]}],
    )
    report = run(engine, clock, "products", second)
    assert report.rows_stored == 1
    p1 = rows(engine, sa.select(products).where(products.c.id == "p1"))[0]
    assert (p1.name, p1.price) == ("New", None)  # replaced as given: the price is gone
    assert rows(engine, sa.select(categories.c.name))[0][0] == "Shoes"
    p2 = rows(engine, sa.select(products).where(products.c.id == "p2"))[0]
    assert p2.attributes == {"size": "M"}  # products not in the file are left alone


def test_events_csv_with_prop_columns_and_json_properties(engine, clock, tmp_path):
    path = write(
        tmp_path / "events.csv",
        """
user_id,anonymous_id,event,timestamp,prop_product_id,prop_price,properties,page
,a1,Product Viewed,2026-01-03T08:00:00Z,p1,12.5,"{""category"": ""shoes""}",/p1
u1,,Support Call,2026-01-04T08:00:00Z,,,"{""minutes"": 4}",
""",
    )
    report = run(engine, clock, "events", path)
    assert (report.rows_stored, report.rows_rejected) == (2, 0)
    viewed = rows(engine, sa.select(events).where(events.c.name == "Product Viewed"))[0]
    assert viewed.properties == {
        "product_id": "p1",
        "price": 12.5,
        "category": "shoes",
        "page": "/p1",
    }
    assert viewed.occurred_at.isoformat() == "2026-01-03T08:00:00+00:00"
    assert viewed.source == "import"
    assert rows(engine, sa.select(product_views.c.product_id, product_views.c.views)) == [("p1", 1)]


def test_events_jsonl_uses_a_given_message_id(engine, clock, tmp_path):
    row = {
        "userId": "u1",
        "event": "Logged In",
        "timestamp": "2026-01-03T08:00:00Z",
        "messageId": "bank-17",
        "properties": {"device": "ios"},
    }
    path = jsonl(tmp_path / "events.jsonl", [row, {**row, "messageId": "bank-18"}])
    report = run(engine, clock, "events", path)
    assert report.rows_stored == 2
    assert sorted(r[0] for r in rows(engine, sa.select(events.c.message_id))) == [
        "bank-17",
        "bank-18",
    ]
    assert customer_of(engine, "user_id", "u1").events_count == 2


# --- all or nothing, rejects, --skip-invalid -----------------------------------------------

BAD_CUSTOMERS = """
user_id,email,birthday,consent_email
u1,ann@example.com,1990-05-01,yes
u2,not-an-email,1985-13-01,maybe
u3,carl@example.com,,
"""


def test_a_bad_row_rejects_the_whole_file(engine, clock, tmp_path):
    path = write(tmp_path / "customers.csv", BAD_CUSTOMERS)
    before = table_counts(engine)
    report = run(engine, clock, "customers", path)
    assert not report.committed
    assert table_counts(engine) == before  # nothing at all, not even u1
    assert (report.rows_read, report.rows_stored, report.rows_rejected) == (3, 0, 1)
    got = {(p.line, p.field) for p in report.problems}
    assert got == {(3, "email"), (3, "birthday"), (3, "consent_email")}
    reasons = {p.field: p.reason for p in report.problems}
    assert "not-an-email" in reasons["email"] and "not a date" in reasons["birthday"]
    assert report.rejects_path == tmp_path / "customers.rejects.csv"
    with report.rejects_path.open(newline="") as f:
        rejected = list(csv.DictReader(f))
    assert len(rejected) == 1
    assert rejected[0]["_line"] == "3"
    assert rejected[0]["user_id"] == "u2" and rejected[0]["birthday"] == "1985-13-01"
    assert "birthday" in rejected[0]["_field"] and "not a date" in rejected[0]["_reason"]


def test_skip_invalid_stores_the_good_rows_and_the_rejects_file_reimports(engine, clock, tmp_path):
    path = write(tmp_path / "customers.csv", BAD_CUSTOMERS)
    report = run(engine, clock, "customers", path, skip_invalid=True)
    assert report.committed
    assert (report.rows_stored, report.rows_rejected) == (2, 1)
    assert sorted(c.email for c in live_customers(engine)) == [
        "ann@example.com",
        "carl@example.com",
    ]
    # Fix the rejects file in place (its _ columns are ignored) and import it as it is.
    rejects = report.rejects_path
    assert rejects is not None
    fixed = rejects.read_text().replace("not-an-email", "bob@example.com")
    fixed = fixed.replace(",1985-13-01,maybe", ",1985-12-01,no")
    write(rejects, fixed)
    again = run(engine, clock, "customers", rejects)
    assert (again.rows_stored, again.rows_rejected) == (1, 0)
    bob = customer_of(engine, "user_id", "u2")
    assert (bob.email, str(bob.birthday)) == ("bob@example.com", "1985-12-01")


def test_a_bad_jsonl_line_is_reported_with_its_line(engine, clock, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"user_id": "u1", "event": "A"}\n'
        "\n"
        "{not json}\n"
        '{"user_id": "u1"}\n'
        '{"event": "B"}\n'
        '{"user_id": "u1", "event": "Order Completed", "properties": {"total": "lots"}}\n'
    )
    report = run(engine, clock, "events", path, rejects_path=tmp_path / "bad.csv")
    assert not report.committed
    assert table_counts(engine)["events"] == 0
    got = [(p.line, p.field) for p in report.problems]
    assert (3, "") in got
    assert (4, "event") in got
    assert (5, "user_id") in got
    assert (6, "properties.total") in got or (6, "total") in got
    with (tmp_path / "bad.csv").open(newline="") as f:
        rejected = list(csv.DictReader(f))
    assert [r["_line"] for r in rejected] == ["3", "4", "5", "6"]
    assert rejected[0]["row"] == "{not json}"


def test_order_rows_must_agree_and_stay_together(engine, clock, tmp_path):
    path = write(
        tmp_path / "orders.csv",
        """
order_id,user_id,occurred_at,currency,product_id,price,quantity
o1,u1,2026-01-05T10:00:00Z,RUB,p1,50,1
o1,u2,2026-01-05T10:00:00Z,RUB,p2,abc,0
o2,u1,2026-01-06T10:00:00Z,RUB,p1,10,1
o1,u1,2026-01-05T10:00:00Z,RUB,p3,5,1
o3,u1,2026-01-06T10:00:00Z,RUB,p1,10,1
""",
    )
    report = run(engine, clock, "orders", path, skip_invalid=True)
    got = {(p.line, p.field) for p in report.problems}
    assert {(3, "user_id"), (3, "price"), (3, "quantity"), (5, "order_id")} <= got
    # o1's first row is rejected with its order; o2 and o3 are stored.
    assert report.rows_rejected == 3
    assert sorted(r[0] for r in rows(engine, sa.select(orders.c.order_id))) == ["o2", "o3"]
    with report.rejects_path.open(newline="") as f:  # type: ignore[union-attr]
        rejected = {r["_line"]: r["_reason"] for r in csv.DictReader(f)}
    assert "another row of this order" in rejected["2"]


def test_a_failure_while_storing_rolls_back_every_chunk(engine, clock, tmp_path):
    """The file changes between the passes: chunks already stored must vanish too."""
    path = jsonl(
        tmp_path / "events.jsonl",
        [{"user_id": f"u{i}", "event": "Seen"} for i in range(10)],
    )

    def tamper(phase: str, done: int, total: int) -> None:
        if phase == "check" and done == total:
            with path.open("a") as f:
                f.write('{"user_id": "late", "event": ""}\n')

    before = table_counts(engine)
    with pytest.raises(ImportFileError, match="changed"):
        run(engine, clock, "events", path, batch_size=1, progress=tamper)
    assert table_counts(engine) == before


def test_missing_columns_and_unknown_formats_are_refused_up_front(engine, clock, tmp_path):
    with pytest.raises(ImportFileError, match="order_id"):
        run(engine, clock, "orders", write(tmp_path / "o.csv", "user_id,total\nu1,5\n"))
    with pytest.raises(ImportFileError, match="--format"):
        run(engine, clock, "events", write(tmp_path / "e.txt", "user_id,event\nu1,A\n"))
    report = run(
        engine, clock, "events", write(tmp_path / "e.txt", "user_id,event\nu1,A\n"), fmt="csv"
    )
    assert report.rows_stored == 1


# --- idempotence and identity ------------------------------------------------------------


def card_state(engine: sa.Engine) -> list[tuple[Any, ...]]:
    return [
        (c.id, c.events_count, c.orders_count, c.revenue, c.first_seen_at, c.last_order_at)
        for c in live_customers(engine)
    ]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_reimporting_the_same_files_stores_nothing_twice(engine, clock, tmp_path, fmt):
    if fmt == "csv":
        files = {
            "customers": write(tmp_path / "c.csv", CUSTOMERS_CSV),
            "orders": write(tmp_path / "o.csv", ORDERS_CSV),
            "events": write(
                tmp_path / "e.csv", "user_id,event,prop_x\nu1,Clicked,1\nu1,Clicked,2\n"
            ),
            "products": write(tmp_path / "p.csv", "product_id,name,price\np1,Shoe,5\n"),
        }
    else:
        files = {
            "customers": jsonl(tmp_path / "c.jsonl", [{"user_id": "u1", "email": "a@b.co"}]),
            "orders": jsonl(
                tmp_path / "o.jsonl",
                [
                    {
                        "order_id": "o1",
                        "user_id": "u1",
                        "occurred_at": "2026-01-05T10:00:00Z",
                        "total": 7,
                        "status": "refunded",
                    }
                ],
            ),
            "events": jsonl(tmp_path / "e.jsonl", [{"user_id": "u1", "event": "Clicked"}]),
            "products": jsonl(tmp_path / "p.jsonl", [{"id": "p1", "name": "Shoe"}]),
        }
    for kind, path in files.items():
        run(engine, clock, kind, path)
    counts, cards = table_counts(engine), card_state(engine)
    for kind, path in files.items():
        report = run(engine, clock, kind, path)
        assert report.rows_stored == 0, kind
        assert report.rows_duplicate == report.rows_read > 0, kind
    assert table_counts(engine) == counts
    assert card_state(engine) == cards


def test_a_changed_row_is_stored_again_and_the_order_updated(engine, clock, tmp_path):
    path = write(tmp_path / "o.csv", "order_id,user_id,occurred_at,total\no1,u1,2026-01-05,10\n")
    run(engine, clock, "orders", path)
    write(path, "order_id,user_id,occurred_at,total\no1,u1,2026-01-05,12\n")
    report = run(engine, clock, "orders", path)
    assert report.rows_stored == 1
    assert rows(engine, sa.select(orders.c.total)) == [(12.0,)]
    assert customer_of(engine, "user_id", "u1").revenue == 12.0


def test_anonymous_history_merges_into_the_imported_customer(engine, clock, tmp_path):
    run(
        engine,
        clock,
        "events",
        jsonl(
            tmp_path / "e.jsonl",
            [
                {
                    "anonymous_id": "a1",
                    "event": "Product Viewed",
                    "properties": {"product_id": "p1"},
                },
                {"anonymous_id": "a2", "event": "Signed Up", "email": "zoe@example.com"},
            ],
        ),
    )
    assert len(live_customers(engine)) == 2
    run(
        engine,
        clock,
        "customers",
        write(
            tmp_path / "c.csv",
            "user_id,anonymous_id,email,first_name\nu7,a1,zoe@example.com,Zoe\n",
        ),
    )
    [zoe] = live_customers(engine)
    assert (zoe.first_name, zoe.email, zoe.events_count) == ("Zoe", "zoe@example.com", 3)
    owned = {
        (r.kind, r.value)
        for r in rows(engine, sa.select(identities).where(identities.c.customer_id == zoe.id))
    }
    assert {("user_id", "u7"), ("anonymous_id", "a1"), ("anonymous_id", "a2")} <= owned
    assert rows(engine, sa.select(product_views.c.customer_id)) == [(zoe.id,)]


# --- the command ---------------------------------------------------------------------------


def url_of(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_cli_imports_and_prints_a_summary(engine, tmp_path):
    path = write(tmp_path / "customers.csv", CUSTOMERS_CSV)
    result = CliRunner().invoke(
        app, ["import", "customers", str(path), "--database-url", url_of(engine)]
    )
    assert result.exit_code == 0, result.output
    assert "rows read" in result.output and "duplicates skipped" in result.output
    assert len(live_customers(engine)) == 2
    counts = table_counts(engine)
    again = CliRunner().invoke(
        app,
        ["import", "customers", str(path), "--database-url", url_of(engine), "--batch-size", "1"],
    )
    assert again.exit_code == 0, again.output
    assert table_counts(engine) == counts
    # rows read 2, stored 0, duplicates skipped 2, rejected 0
    assert re.search(r"│\s*2\s*│\s*0\s*│\s*2\s*│\s*0\s*│", again.output), again.output


def test_cli_rejects_a_bad_file_with_a_report_and_a_nonzero_exit(engine, tmp_path):
    path = write(tmp_path / "in.data", BAD_CUSTOMERS)
    rejects = tmp_path / "out" / "rejects.csv"
    rejects.parent.mkdir()
    args = ["import", "customers", str(path), "--format", "csv", "--database-url", url_of(engine)]
    result = CliRunner().invoke(app, [*args, "--rejects", str(rejects)])
    assert result.exit_code == 1, result.output
    assert "birthday" in result.output and "not a date" in result.output
    assert "Nothing was imported" in result.output
    assert rejects.exists()
    assert table_counts(engine)["customers"] == 0

    skipped = CliRunner().invoke(app, [*args, "--rejects", str(rejects), "--skip-invalid"])
    assert skipped.exit_code == 0, skipped.output
    assert len(live_customers(engine)) == 2


def test_cli_refuses_an_unreadable_file_and_an_unknown_kind(engine, tmp_path):
    path = write(tmp_path / "orders.csv", "user_id,total\nu1,5\n")
    result = CliRunner().invoke(
        app, ["import", "orders", str(path), "--database-url", url_of(engine)]
    )
    assert result.exit_code == 2
    assert "order_id" in result.output
    wrong = CliRunner().invoke(
        app, ["import", "people", str(path), "--database-url", url_of(engine)]
    )
    assert wrong.exit_code != 0
    assert table_counts(engine)["orders"] == 0
