"""How long the heaviest pages take on a demo store of a few thousand customers.

Measured and printed (run with ``-s`` to see the table), not asserted: timed assertions
do not belong in the suite (DESIGN.md, conventions). The issue's budget is 300 ms.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime

import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.demo.generator import DemoConfig, generate
from rapport.store.tables import customers
from tests.test_web_support import (
    signed_in,
    web_client,  # noqa: F401  (the `web` fixture)
)

SHOP = DemoConfig(customers=2000, months=1, seed=11, end=datetime(2026, 3, 1, tzinfo=UTC))
BUDGET_MS = 300


def _median_ms(client: TestClient, path: str, runs: int = 5) -> float:
    assert client.get(path).status_code == 200, path  # warm: templates compiled once
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200
    return statistics.median(times)


def test_dashboard_and_card_render_times(web: TestClient, engine: sa.Engine) -> None:
    generate(engine, SHOP)
    with engine.connect() as conn:
        shoppers = conn.execute(sa.select(sa.func.count()).select_from(customers)).scalar_one()
        busiest = conn.execute(
            sa.select(customers.c.id)
            .where(customers.c.merged_into.is_(None))
            .order_by(customers.c.events_count.desc())
            .limit(1)
        ).scalar_one()
    signed_in(web, engine, "admin")
    rows = [
        ("dashboard, last 30 days", "/"),
        ("dashboard, this year", "/dashboard/panel?period=this_year"),
        ("customer search by name", "/customers?q=ann"),
        (f"card of the busiest customer (#{busiest})", f"/customers/{busiest}"),
    ]
    print(
        f"\n{engine.dialect.name}: {shoppers} customer profiles; median of 5, budget {BUDGET_MS} ms"
    )
    for label, path in rows:
        ms = _median_ms(web, path)
        flag = "" if ms < BUDGET_MS else "  OVER BUDGET"
        print(f"  {label:<45} {ms:7.1f} ms{flag}")
