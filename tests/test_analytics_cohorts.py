"""Cohort retention and the RFM grid against a hand computation over an ingested shop."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa

from rapport.analytics.cohorts import MAX_MONTHS, cohort_report
from rapport.analytics.periods import Period
from rapport.analytics.rfm_grid import SCORES, rfm_grid_report
from rapport.analytics.scope import scope_for
from rapport.segments.rfm import CELLS, recompute_rfm
from rapport.store.tables import customers, identities
from tests.conftest import T0
from tests.test_analytics_business import Buyer, add_segment, in_city, ingest_shop, make_shop

YEAR = Period(date(2025, 3, 1), date(2026, 2, 28))


def _month(at: Any) -> int:
    return at.year * 12 + at.month - 1


def _expected_cohorts(shop: list[Buyer], period: Period, until: Any) -> dict[str, Any]:
    """Per cohort month: size, and per month since, buyers and revenue (plain loops)."""
    first, last = _month(period.first), _month(period.last)
    out: dict[str, Any] = {}
    for m in range(first, last + 1):
        members = [b for b in shop if b.counted() and _month(b.counted()[0].at) == m]
        observed = min(MAX_MONTHS, _month(until) - m)
        buyers, revenue = [], []
        for k in range(observed + 1):
            orders = [
                (b.user, o)
                for b in members
                for o in b.counted()
                if _month(o.at) == m + k and o.at < until
            ]
            buyers.append(len({user for user, _ in orders}))
            revenue.append(sum(o.net for _, o in orders))
        name = f"{m // 12:04d}-{m % 12 + 1:02d}"
        out[name] = (len(members), observed, buyers, revenue)
    return out


def test_cohort_triangle_matches_a_hand_computation(
    engine: sa.Engine, client: Any, secret_key: str
) -> None:
    shop = make_shop(seed=21, n=220)
    ingest_shop(engine, shop)
    kazan = add_segment(client, secret_key, "Kazan", "Kazan")
    for members, segment in ((shop, None), (in_city(shop, "Kazan"), kazan)):
        with engine.connect() as conn:
            report = cohort_report(conn, scope_for(conn, YEAR, segment, lifecycle=False), T0)
        want = _expected_cohorts(members, YEAR, T0)
        got = {c.month: (c.customers, c.observed, c.buyers, c.revenue) for c in report.cohorts}
        assert list(got) == list(want)
        for month, (size, observed, buyers, revenue) in want.items():
            g_size, g_observed, g_buyers, g_revenue = got[month]
            assert (g_size, g_observed) == (size, observed), month
            assert g_buyers[: observed + 1] == buyers, month
            assert g_revenue[: observed + 1] == pytest.approx(revenue), month
            # Months not reached yet are unknown, not zero.
            assert all(v is None for v in g_buyers[observed + 1 :])
        sample = report.cohorts[0]
        assert sample.share(0) == (1.0 if sample.customers else None)
    # Someone came back in a later month, or the triangle above was all zeros.
    assert any(sum(b[1:]) for _, _, b, _ in _expected_cohorts(shop, YEAR, T0).values())
    doc = report.as_json()
    assert doc["max_months"] == MAX_MONTHS
    assert doc["cohorts"][0]["months"][0]["month"] == 0


def test_cohorts_stop_at_the_cap_and_skip_the_future(engine: sa.Engine) -> None:
    shop = make_shop(seed=22, n=60, span_days=1000)
    ingest_shop(engine, shop)
    old = Period(date(2023, 6, 1), date(2023, 8, 31))
    with engine.connect() as conn:
        scope = scope_for(conn, old, lifecycle=False)
        capped = cohort_report(conn, scope, T0, max_months=6)
        early = cohort_report(conn, scope, T0.replace(year=2023, month=7, day=15))
    assert {c.observed for c in capped.cohorts} == {6}
    want = _expected_cohorts(shop, old, T0)
    for c in capped.cohorts:
        assert c.buyers[:7] == want[c.month][2][:7]
        assert len(c.buyers) == 7
    # Seen from mid-July 2023: June has months 0 and 1, July month 0, August nothing yet.
    assert [(c.month, c.observed) for c in early.cohorts] == [("2023-06", 1), ("2023-07", 0)]


def _user_ids(engine: sa.Engine) -> dict[int, str]:
    i = identities.c
    with engine.connect() as conn:
        return dict(
            conn.execute(sa.select(i.customer_id, i.value).where(i.kind == "user_id")).all()
        )


def test_rfm_grid_matches_the_stored_scores_and_the_orders(engine: sa.Engine) -> None:
    shop = make_shop(seed=23, n=200)
    ingest_shop(engine, shop)
    recompute_rfm(engine, T0)
    users = _user_ids(engine)
    by_user = {b.user: b for b in shop}
    c = customers.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(c.id, c.rfm_recency, c.rfm_frequency, c.rfm_cell).where(
                c.merged_into.is_(None)
            )
        ).all()
        report = rfm_grid_report(conn, scope_for(conn, YEAR, lifecycle=False))
    s, e = YEAR.start, YEAR.end
    grid: dict[tuple[int, int], list[float]] = {
        (r, f): [0, 0.0, 0.0] for r in SCORES for f in SCORES
    }
    named: dict[str, list[float]] = {slug: [0, 0.0] for slug in CELLS}
    unscored = 0
    for cid, r, f, cell in rows:
        buyer = by_user[users[cid]]
        period = sum(o.net for o in buyer.counted() if s <= o.at < e)
        to_date = sum(o.net for o in buyer.counted())
        if cell is None:
            unscored += 1
            continue
        grid[(r, f)][0] += 1
        grid[(r, f)][1] += period
        grid[(r, f)][2] += to_date
        named[cell][0] += 1
        named[cell][1] += period
    assert report.unscored == unscored
    for key, (n, period, to_date) in grid.items():
        got = report.grid[key]
        assert got.customers == n, key
        assert got.revenue == pytest.approx(period), key
        assert got.revenue_to_date == pytest.approx(to_date), key
    for slug, (n, period) in named.items():
        assert report.named[slug].customers == n, slug
        assert report.named[slug].revenue == pytest.approx(period), slug
    assert list(report.named) == list(CELLS)
    assert sum(1 for n, _ in named.values() if n) >= 5  # the shop spreads over the grid
    doc = report.as_json()
    assert doc["scored_customers"] == sum(n for n, _ in named.values())
    total = sum(p for _, p in named.values())
    for cell in doc["cells"]:
        assert cell["revenue_share"] == pytest.approx(named[cell["cell"]][1] / total)
