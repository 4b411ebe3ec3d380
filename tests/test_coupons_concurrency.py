"""No double use: parallel checkouts, each its own thread, connection and transaction,
against real SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa

from rapport.loyalty.coupons import CouponQuote, CouponRefused, consume, issue
from rapport.loyalty.coupons.codes import generate_codes
from rapport.store.engine import writing
from rapport.store.tables import coupon_customer_uses, coupon_redemptions
from tests.conftest import T0
from tests.shop_helpers import add_customer
from tests.test_coupons import issue_to, make_series, order, uses_of

THREADS = 20


def _race(engine: sa.Engine, attempt: Callable[[int, sa.Connection], Any]) -> list[Any]:
    """Run ``attempt(i, conn)`` in THREADS threads released together; each in its own
    write transaction. Returns each result or the exception it raised."""
    start = threading.Barrier(THREADS)

    def one(i: int) -> Any:
        start.wait()
        try:
            with writing(engine) as conn:
                return attempt(i, conn)
        except CouponRefused as exc:
            return exc

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(one, range(THREADS)))


def _redemptions(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(coupon_redemptions)).scalar_one()
        )


def test_single_use_code_is_used_exactly_once(engine: sa.Engine) -> None:
    cid = add_customer(engine, T0)
    make_series(engine, "once")
    code = issue_to(engine, cid, "once", "issue-1")
    results = _race(
        engine, lambda i, conn: consume(conn, code, order(cid, (None, 100, 1)), f"k{i}", T0)
    )
    won = [r for r in results if isinstance(r, CouponQuote)]
    refused = [r for r in results if isinstance(r, CouponRefused)]
    assert len(won) == 1 and len(refused) == THREADS - 1
    assert {r.reason for r in refused} == {"already used"}
    assert uses_of(engine, code) == 1 and _redemptions(engine) == 1


def test_shared_code_is_never_used_more_than_max_uses(engine: sa.Engine) -> None:
    people = [add_customer(engine, T0) for _ in range(THREADS)]
    make_series(engine, "five", codes="shared", shared_code="FIVE", max_uses=5)
    results = _race(
        engine,
        lambda i, conn: consume(conn, "FIVE", order(people[i], (None, 100, 1)), f"k{i}", T0),
    )
    assert sum(isinstance(r, CouponQuote) for r in results) == 5
    assert {r.reason for r in results if isinstance(r, CouponRefused)} == {
        "used up: all 5 uses are taken"
    }
    assert uses_of(engine, "FIVE") == 5 and _redemptions(engine) == 5


def test_one_customer_with_many_codes_respects_the_per_customer_limit(
    engine: sa.Engine,
) -> None:
    cid = add_customer(engine, T0)
    series = make_series(engine, "printed", max_uses_per_customer=1)
    with writing(engine) as conn:
        codes = generate_codes(conn, series.id, series.settings, THREADS, T0)
    results = _race(
        engine, lambda i, conn: consume(conn, codes[i], order(cid, (None, 100, 1)), f"k{i}", T0)
    )
    assert sum(isinstance(r, CouponQuote) for r in results) == 1
    assert _redemptions(engine) == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(coupon_customer_uses.c.uses)).scalar_one() == 1


def test_the_same_key_in_parallel_uses_the_code_once(engine: sa.Engine) -> None:
    cid = add_customer(engine, T0)
    make_series(engine, "multi", codes="shared", shared_code="MULTI", max_uses=None,
                max_uses_per_customer=None)  # fmt: skip
    results = _race(
        engine,
        lambda i, conn: consume(conn, "MULTI", order(cid, (None, 100, 1)), "the-key", T0),
    )
    assert all(isinstance(r, CouponQuote) for r in results)
    assert len(set(results)) == 1
    assert uses_of(engine, "MULTI") == 1 and _redemptions(engine) == 1


def test_the_same_issue_key_in_parallel_makes_one_code(engine: sa.Engine) -> None:
    cid = add_customer(engine, T0)
    make_series(engine, "personal")
    results = _race(engine, lambda i, conn: issue(conn, cid, "personal", "run-9:step-1", T0))
    codes = {code for code, _ in results}
    assert len(codes) == 1
    assert sum(len(events) for _, events in results) == 1
