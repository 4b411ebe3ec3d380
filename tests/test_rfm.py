"""RFM: quintile scores on a hand-made shop with known answers, ties, the period, the grid."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.segments.config import write_setting
from rapport.segments.rfm import (
    CELLS,
    GRID,
    RfmSettings,
    RfmSettingsError,
    _cell_case,
    cell_for,
    recompute_rfm,
    rfm_settings,
    save_rfm_settings,
    stored_thresholds,
)
from rapport.store.engine import writing
from rapport.store.tables import customers, orders
from tests.conftest import T0, bearer
from tests.shop_helpers import add_customer, add_order_in, customer

# (days since the last order, totals of the orders in the period) → expected (R, F, M, cell).
# Ten buyers: quintile cut points sit at sorted positions 2, 4, 6, 8.
#   recency days 10..100 → R 5,5,4,4,3,3,2,2,1,1
#   frequency [2,1,5,1,1,3,1,2,1,1]: cuts 1,1,1,2 → six one-timers tie at 1, the 2s at 4
#   monetary [300,50,1000,20,80,500,10,120,40,60]: cuts 20,50,80,300
SHOP = [
    (10, [150, 150], (5, 4, 4, "champions")),
    (20, [50], (5, 1, 2, "new")),
    (30, [200, 200, 200, 200, 200], (4, 5, 5, "loyal")),
    (40, [20], (4, 1, 1, "promising")),
    (50, [80], (3, 1, 3, "about_to_sleep")),
    (60, [100, 200, 200], (3, 5, 5, "loyal")),
    (70, [10], (2, 1, 1, "hibernating")),
    (80, [60, 60], (2, 4, 4, "at_risk")),
    (90, [40], (1, 1, 2, "lost")),
    (100, [60], (1, 1, 3, "hibernating")),
]


def _build_shop(engine: sa.Engine) -> list[int]:
    ids = []
    for days, totals, _ in SHOP:
        # The last order 0.1 day past the whole number of days; earlier ones a week apart.
        history = [(days + 0.1 + 7 * i, total) for i, total in enumerate(reversed(totals))]
        ids.append(add_customer(engine, T0, history))
    return ids


def test_quintile_scores_and_cells_on_a_known_shop(engine: sa.Engine) -> None:
    ids = _build_shop(engine)
    # Outside the picture: an order only before the period, a cancelled order, no order.
    old = add_customer(engine, T0, [(400, 5000)])
    cancelled = add_customer(engine, T0, [(5, 900)], status="cancelled")
    prospect = add_customer(engine, T0)
    # Customer 5 also bought big 380 days ago: outside the 365-day period, so it must not count.
    with writing(engine) as conn:
        add_order_in(conn, ids[4], T0 - timedelta(days=380), 10_000)

    summary = recompute_rfm(engine, T0)

    assert summary.scored == 10
    for cid, (_, _, (r, f, m, cell)) in zip(ids, SHOP, strict=True):
        row = customer(engine, cid)
        assert (row.rfm_recency, row.rfm_frequency, row.rfm_monetary, row.rfm_cell) == (
            r,
            f,
            m,
            cell,
        ), f"customer {cid}"
    for cid in (old, cancelled, prospect):
        row = customer(engine, cid)
        assert (row.rfm_recency, row.rfm_frequency, row.rfm_monetary, row.rfm_cell) == (
            None,
            None,
            None,
            None,
        )
    assert summary.cells["loyal"] == 2
    assert summary.cells["hibernating"] == 2
    assert summary.without_orders == 3
    t = summary.thresholds
    assert t is not None
    assert t.recency_days == (90, 70, 50, 30)
    assert t.frequency == (1, 1, 1, 2)
    assert t.monetary_cents == (2000, 5000, 8000, 30000)


def test_a_second_run_changes_nothing_and_time_moves_scores(engine: sa.Engine) -> None:
    ids = _build_shop(engine)
    recompute_rfm(engine, T0)
    again = recompute_rfm(engine, T0)
    assert again.changed == 0 and again.cleared == 0

    # 350 days later only the latest order of the first buyer (10.1 days before T0, so 360.1
    # days before then) is still in the 365-day period; its earlier one (17.1) is not.
    later = recompute_rfm(engine, T0 + timedelta(days=350))
    assert later.scored == 1
    assert later.cleared == 9
    assert customer(engine, ids[0]).rfm_cell == cell_for(1, 1, 1) == "lost"
    assert customer(engine, ids[1]).rfm_cell is None


def test_ties_share_the_lowest_score_whatever_the_ids(engine: sa.Engine) -> None:
    # Five buyers, cut points at positions 1..4; the same totals inserted in two orders.
    for totals in ([100, 100, 300, 200, 100], [100, 200, 100, 300, 100]):
        with writing(engine) as conn:
            conn.execute(sa.delete(orders))
            conn.execute(sa.delete(customers))
        for i, total in enumerate(totals):
            # The same day at different hours: a recency tie in whole days.
            add_customer(engine, T0, [(3 + i / 100, total)])
        recompute_rfm(engine, T0)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(customers.c.revenue, customers.c.rfm_recency, customers.c.rfm_monetary)
            ).all()
        by_total: dict[float, set[tuple[int, int]]] = {}
        for revenue, r, m in rows:
            by_total.setdefault(revenue, set()).add((r, m))
        assert by_total == {100: {(1, 1)}, 200: {(1, 4)}, 300: {(1, 5)}}


def test_period_setting(engine: sa.Engine) -> None:
    inside = add_customer(engine, T0, [(20, 50)])
    outside = add_customer(engine, T0, [(40, 50)])
    with writing(engine) as conn:
        save_rfm_settings(conn, RfmSettings(period_days=30), T0)
    summary = recompute_rfm(engine, T0)
    assert summary.period_days == 30
    assert customer(engine, inside).rfm_cell is not None
    assert customer(engine, outside).rfm_cell is None
    # An explicit period for one run overrides the stored one without changing it.
    assert recompute_rfm(engine, T0, period_days=60).scored == 2
    with engine.connect() as conn:
        assert rfm_settings(conn).period_days == 30


def test_bad_settings_are_refused(engine: sa.Engine) -> None:
    with pytest.raises(RfmSettingsError):
        RfmSettings(period_days=0)
    with writing(engine) as conn:
        write_setting(conn, "rfm", {"period": 30}, T0)
    with pytest.raises(RfmSettingsError, match="period"):
        recompute_rfm(engine, T0)


def test_one_customer_scored_from_stored_thresholds_matches_the_bulk(engine: sa.Engine) -> None:
    ids = _build_shop(engine)
    recompute_rfm(engine, T0)
    with engine.connect() as conn:
        thresholds = stored_thresholds(conn)
    assert thresholds is not None
    for cid in ids:
        row = customer(engine, cid)
        assert thresholds.scores(T0, row.last_order_at, row.orders_count, row.revenue) == (
            row.rfm_recency,
            row.rfm_frequency,
            row.rfm_monetary,
        )


@pytest.mark.parametrize(
    ("r", "f", "m", "cell"),
    [
        (5, 5, 5, "champions"),
        (5, 4, 5, "champions"),
        (5, 3, 4, "potential_loyalists"),  # FM = floor(3.5) = 3
        (5, 1, 1, "new"),
        (5, 1, 2, "new"),
        (4, 4, 4, "loyal"),
        (4, 1, 1, "promising"),
        (3, 3, 3, "need_attention"),
        (3, 2, 2, "about_to_sleep"),
        (2, 5, 5, "cant_lose_them"),
        (1, 5, 5, "cant_lose_them"),
        (2, 3, 4, "at_risk"),
        (1, 4, 4, "at_risk"),
        (2, 1, 1, "hibernating"),
        (1, 2, 2, "hibernating"),
        (1, 1, 1, "lost"),
        (1, 1, 2, "lost"),
    ],
)
def test_cell_grid(r: int, f: int, m: int, cell: str) -> None:
    assert cell_for(r, f, m) == cell


def test_grid_names_every_cell_and_rejects_bad_scores() -> None:
    assert {cell for row in GRID.values() for cell in row} == set(CELLS)
    assert len(CELLS) == 11
    with pytest.raises(ValueError):
        cell_for(0, 3, 3)
    with pytest.raises(ValueError):
        cell_for(3, 6, 3)


def test_sql_grid_agrees_with_the_python_grid(engine: sa.Engine) -> None:
    combos = [(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)]
    with engine.connect() as conn:
        for r, f, m in combos:
            got = conn.execute(
                sa.select(_cell_case(sa.literal(r), sa.literal(f) + sa.literal(m)))
            ).scalar()
            assert got == cell_for(r, f, m), (r, f, m)


def test_card_shows_rfm(engine: sa.Engine, client: TestClient, secret_key: str) -> None:
    ids = _build_shop(engine)
    r = client.get(f"/api/customers/{ids[0]}", headers=bearer(secret_key))
    assert r.json()["computed"]["rfm"] == {
        "recency": None,
        "frequency": None,
        "monetary": None,
        "cell": None,
    }
    recompute_rfm(engine, T0)
    r = client.get(f"/api/customers/{ids[0]}", headers=bearer(secret_key))
    assert r.json()["computed"]["rfm"] == {
        "recency": 5,
        "frequency": 4,
        "monetary": 4,
        "cell": "champions",
    }
