"""The loyalty and recommendations benchmark (bench/loyalty_recs.py) at a tiny size, so it
cannot rot: its shop, as the live recommender reads it; its database baseline, equal row
for row to the live build's bought-together lists; one API measurement over real HTTP;
and (PostgreSQL) one round of the redemption races with the audit of every balance.
No timings are asserted."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from bench.loyalty_recs import (
    MIX,
    database_lists,
    list_differences,
    server,
    stored_lists,
    time_api,
)
from bench.loyalty_recs_data import Shape, build
from bench.loyalty_redeem import FIRST_OWN, THREADS
from bench.loyalty_redeem import run as run_redemptions
from rich.console import Console

from rapport.recommend.availability import is_available
from rapport.recommend.build import build as build_lists
from rapport.recommend.data import read_snapshot
from rapport.recommend.strategies import BuildOptions
from rapport.store.tables import products
from tests.conftest import T0

SHAPE = Shape(products=400, customers=300, order_lines=2500)


def scalar(engine: sa.Engine, sql: str) -> Any:
    with engine.connect() as conn:
        return conn.exec_driver_sql(sql).scalar_one()


def test_shop_as_the_recommender_reads_it(engine: sa.Engine) -> None:
    built = build(engine, SHAPE, T0)
    counts = built.counts
    assert counts["products"] == SHAPE.products and counts["customers"] == SHAPE.customers
    assert abs(counts["order_lines"] - SHAPE.order_lines) < 0.2 * SHAPE.order_lines
    # Every line names a catalogue product of its own category; every order's total is
    # the sum of its lines; every category a line names exists.
    assert (
        scalar(
            engine,
            "SELECT count(*) FROM order_lines l LEFT JOIN products p ON p.id = l.product_id "
            "WHERE p.id IS NULL OR p.category_id <> l.category_id OR p.price <> l.price",
        )
        == 0
    )
    assert (
        scalar(
            engine,
            "SELECT count(*) FROM orders o JOIN (SELECT order_pk, sum(price * quantity) AS t "
            "FROM order_lines GROUP BY order_pk) l ON l.order_pk = o.id "
            "WHERE abs(o.total - l.t) > 0.001",
        )
        == 0
    )
    assert (
        scalar(
            engine,
            "SELECT count(*) FROM products p LEFT JOIN categories c ON c.id = p.category_id "
            "WHERE c.id IS NULL",
        )
        == 0
    )
    assert scalar(engine, "SELECT count(*) FROM compatible_categories") > 0
    with engine.connect() as conn:
        snapshot = read_snapshot(conn, T0)
        flags = conn.execute(sa.select(products.c.attributes)).scalars().all()
    # The live reader sees every line of a completed order and every view.
    lines = scalar(
        engine,
        "SELECT count(*) FROM order_lines l JOIN orders o ON o.id = l.order_pk "
        "WHERE o.status = 'completed'",
    )
    assert len(snapshot.purchases) == lines > 0
    assert len(snapshot.views) == counts["product_views"] > 0
    assert snapshot.catalog.size == SHAPE.products
    assert int(snapshot.catalog.available.sum()) == sum(is_available(f or {}) for f in flags)
    assert 0 < int(snapshot.catalog.available.sum()) < SHAPE.products


def test_database_baseline_equals_the_build(engine: sa.Engine) -> None:
    build(engine, SHAPE, T0)
    result = build_lists(engine, T0, BuildOptions(personal_model="knn"))
    assert result.rows["bought_together"] > 0
    _, rows = database_lists(engine, BuildOptions())
    assert list_differences(stored_lists(engine), rows) == []
    # A changed list is caught.
    changed = [*rows[:-1], (*rows[-1][:3], rows[-1][3] + 0.5)]
    assert len(list_differences(stored_lists(engine), changed)) == 1


def test_api_measurement_over_http(engine: sa.Engine) -> None:
    build(engine, SHAPE, T0)
    build_lists(engine, T0, BuildOptions(personal_model="knn"))
    url = engine.url.render_as_string(hide_password=False)
    shape = {"products": SHAPE.products, "customers": SHAPE.customers, "leaves": SHAPE.leaves}
    answer = time_api(url, shape, argparse.Namespace(requests=4, seed=7))
    assert set(answer["strategies"]) == set(MIX)
    assert answer["overall"]["n"] == 4 * len(MIX)
    assert answer["answers_short_of_limit"] == 0
    assert answer["baseline_one_list_select"]["n"] > 0
    # Costs per request: statements, the server's CPU, and PostgreSQL's (SQLite runs in
    # the server's process, so it has none of its own).
    assert all(answer["statements_per_request"][s] >= 1 for s in MIX)
    assert set(answer["server_cpu_ms_per_request"]) == set(MIX)
    database = answer["database_cpu_ms_per_request"]
    if engine.dialect.name == "postgresql":
        assert all(database[s] is not None for s in MIX)
    else:
        assert all(database[s] is None for s in MIX)


def test_redemption_races_and_audit(engine: sa.Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the redemption benchmark runs on PostgreSQL only (as the issue asks)")
    url = engine.url.render_as_string(hide_password=False)
    args = argparse.Namespace(
        members=FIRST_OWN + THREADS * 2, per_thread=2, runs=1, http_per_thread=1
    )
    now = datetime.now(UTC)
    out = run_redemptions(url, args, now, Console(quiet=True), server)
    own = out["cases"]["own customers"]
    assert own["domain"]["redeemed"] == [THREADS * 2]
    assert own["raw_update"]["redeemed"] == [THREADS * 2]
    assert out["cases"]["one shared balance"]["domain"]["redeemed"] == [THREADS * 2]
    assert out["drain"]["exact"] and out["drain"]["refused"] == THREADS
    assert out["http"]["own customers"]["redeemed"] == THREADS
    checks = out["checks"]
    assert checks["overdrawn_balances"] == 0
    assert checks["accounts_not_equal_to_ledger"] == 0
    assert checks["accounts_not_equal_to_lots"] == 0
    assert checks["ledger_agrees_with_the_threads"]
    assert checks["accounts"] == args.members
