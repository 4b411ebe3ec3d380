"""Twenty redemptions at once against one balance, from real threads on separate
connections: the balance is never overdrawn, and a key used twice at once spends once."""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.clock import SimulatedClock
from rapport.errors import InvalidInput
from rapport.loyalty.checkout import CheckoutRequest, make_order, redeem
from rapport.loyalty.points import add_points
from rapport.pipeline import Pipeline
from rapport.store.engine import writing
from rapport.store.tables import loyalty_redemptions
from tests.conftest import bearer
from tests.test_loyalty_support import check_ledger, entries, set_programme, track

THREADS = 20


def _race(work: Any) -> list[Any]:
    """Run ``work(i)`` on THREADS threads released together; each one's answer or error."""
    start = threading.Barrier(THREADS)
    results: list[Any] = [None] * THREADS

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # what each thread met is the test's evidence
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def _customer_with(engine: sa.Engine, clock: SimulatedClock, points: int) -> int:
    set_programme(engine, clock.now(), max_redeem_percent=100)
    cid = track(Pipeline(engine, clock), "u1", "Signed Up")
    with writing(engine) as conn:
        add_points(conn, cid, points, "start", clock.now())
    return cid


def test_parallel_redemptions_never_overdraw(engine: sa.Engine, clock: SimulatedClock) -> None:
    cid = _customer_with(engine, clock, 100)

    def spend(i: int) -> dict[str, Any]:
        request = CheckoutRequest(make_order(cid, [("p", None, 1000.0, 1)], f"o-{i}"), None, 30)
        with writing(engine) as conn:  # a connection and transaction of its own
            return redeem(conn, request, f"key-{i}", clock.now()).result

    results = _race(spend)
    done = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, InvalidInput)]
    assert len(done) == 3 and len(refused) == THREADS - 3, results
    assert all(p.where == "points_to_use" for r in refused for p in r.problems)
    assert sorted(r["points_balance"] for r in done) == [10, 40, 70]
    assert check_ledger(engine, cid) == (10, 0)
    assert sum(e.points for e in entries(engine, cid) if e.kind == "redeem") == -90


def test_one_key_sent_twenty_times_at_once_spends_once(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    cid = _customer_with(engine, clock, 100)
    request = CheckoutRequest(make_order(cid, [("p", None, 1000.0, 1)], "o-1"), None, 30)

    def spend(_: int) -> Any:
        with writing(engine) as conn:
            return redeem(conn, request, "same-key", clock.now())

    results = _race(spend)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(1 for r in results if not r.replayed) == 1
    assert {r.result["points_balance"] for r in results} == {70}
    assert check_ledger(engine, cid) == (70, 0)
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(loyalty_redemptions)).scalar() == 1
        )


def test_parallel_redemptions_over_http(
    engine: sa.Engine, clock: SimulatedClock, client: TestClient, secret_key: str
) -> None:
    cid = _customer_with(engine, clock, 100)

    def spend(i: int) -> int:
        body = {"customer_id": cid, "lines": [{"product_id": "p", "price": 1000, "quantity": 1}]}
        r = client.post(
            "/api/loyalty/redeem",
            json={**body, "points_to_use": 25},
            headers={**bearer(secret_key), "Idempotency-Key": f"http-{i}"},
        )
        return r.status_code

    codes = _race(spend)
    assert sorted(codes) == [200] * 4 + [422] * (THREADS - 4)
    assert check_ledger(engine, cid) == (0, 0)
