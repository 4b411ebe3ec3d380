"""Business metrics against a hand computation over a shop made through the real ingest path.

The shop is random but seeded: customers identify, place orders (``Order Completed``),
have some cancelled and some refunded in full or in part, all through ``Pipeline.ingest``.
The expected figures are computed here from the list of orders the test sent, with plain
loops and the definitions of docs/metrics.md, independently of the SQL under test.
"""

from __future__ import annotations

import itertools
import random
import statistics
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from rapport.analytics.activity import REPEAT_BUCKETS, recent_rows
from rapport.analytics.business import MIN_REPEAT_GAPS, business_report, dashboard_business
from rapport.analytics.funnel import funnel_report
from rapport.analytics.ltv import MIN_CHURN_BASE, MIN_LAPSED, ltv_report
from rapport.analytics.periods import Period
from rapport.analytics.scope import scope_for
from rapport.clock import SimulatedClock
from rapport.errors import InvalidInput
from rapport.ingest.messages import parse_message
from rapport.pipeline import Pipeline
from rapport.segments.definitions import SegmentNotFound
from rapport.segments.lifecycle import LifecycleSettings, save_lifecycle_settings
from rapport.store.engine import writing
from tests.conftest import T0

DAY = timedelta(days=1)
ACTIVE_DAYS, LAPSED_DAYS = 45, 120


# --- the shop --------------------------------------------------------------------------


@dataclass
class Order:
    oid: str
    at: datetime
    total: float
    status: str = "completed"  # completed | cancelled | refunded
    refunded: float = 0.0

    @property
    def counted(self) -> bool:
        return self.status == "completed"

    @property
    def net(self) -> float:
        return self.total - self.refunded


@dataclass
class Buyer:
    user: str
    signup: datetime
    city: str
    orders: list[Order] = field(default_factory=list)

    def counted(self) -> list[Order]:
        return sorted((o for o in self.orders if o.counted), key=lambda o: o.at)


def make_shop(seed: int, n: int, span_days: int = 720) -> list[Buyer]:
    """Customers over ``span_days`` before T0: a sixth never buy, the rest one to nine orders."""
    rng = random.Random(seed)
    shop = []
    for i in range(n):
        signup = T0 - timedelta(days=rng.uniform(1, span_days))
        buyer = Buyer(f"u{seed}-{i}", signup, "Kazan" if rng.random() < 0.3 else "Moscow")
        k = rng.choice([0, 1, 1, 1, 2, 2, 3, 4, 6, 9])
        at = signup + timedelta(days=rng.uniform(0, 40))
        for j in range(k):
            if at >= T0:
                break
            order = Order(f"o{seed}-{i}-{j}", at, round(rng.uniform(10, 300), 2))
            roll = rng.random()
            if roll < 0.08:
                order.status = "cancelled"
            elif roll < 0.13:
                order.status, order.refunded = "refunded", order.total
            elif roll < 0.2:
                order.refunded = round(order.total * rng.uniform(0.1, 0.9), 2)
            buyer.orders.append(order)
            at += timedelta(days=rng.uniform(3, 110))
        shop.append(buyer)
    return shop


def _message(raw: dict[str, Any]) -> Any:
    return parse_message(raw, where="message", received_at=T0, phone_region="RU", max_bytes=32768)


def ingest_shop(engine: sa.Engine, shop: list[Buyer], clock: SimulatedClock | None = None) -> None:
    """Everything through ``Pipeline.ingest``, with the lifecycle thresholds set first (the
    real-time step stores the thresholds it derives on the first order)."""
    with writing(engine) as conn:
        save_lifecycle_settings(conn, LifecycleSettings(ACTIVE_DAYS, LAPSED_DAYS), T0)
    pipeline = Pipeline(engine, clock or SimulatedClock(T0))
    batch: list[Any] = []
    for b in shop:
        batch.append(
            _message(
                {
                    "type": "identify",
                    "userId": b.user,
                    "traits": {"city": b.city},
                    "timestamp": b.signup.isoformat(),
                }
            )
        )
        for o in b.orders:
            batch.append(
                _message(
                    {
                        "type": "track",
                        "userId": b.user,
                        "event": "Order Completed",
                        "properties": {"order_id": o.oid, "total": o.total},
                        "timestamp": o.at.isoformat(),
                    }
                )
            )
            later = (o.at + timedelta(hours=1)).isoformat()
            if o.status == "cancelled":
                batch.append(
                    _message(
                        {
                            "type": "track",
                            "userId": b.user,
                            "event": "Order Cancelled",
                            "properties": {"order_id": o.oid},
                            "timestamp": later,
                        }
                    )
                )
            elif o.refunded:
                props: dict[str, Any] = {"order_id": o.oid}
                if o.status == "completed":  # a partial refund names its amount
                    props["total"] = o.refunded
                batch.append(
                    _message(
                        {
                            "type": "track",
                            "userId": b.user,
                            "event": "Order Refunded",
                            "properties": props,
                            "timestamp": later,
                        }
                    )
                )
        if len(batch) > 300:
            pipeline.ingest(batch)
            batch = []
    if batch:
        pipeline.ingest(batch)


def add_segment(client: Any, secret_key: str, name: str, city: str) -> int:
    r = client.post(
        "/api/segments",
        json={"name": name, "rules": {"attribute": "city", "op": "eq", "value": city}},
        headers={"Authorization": f"Bearer {secret_key}"},
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


# --- the hand computation --------------------------------------------------------------


def _in(at: datetime, start: datetime, end: datetime) -> bool:
    return start <= at < end


@dataclass
class Expected:
    revenue: float
    orders: int
    buyers: int
    first_orders: int
    active: int
    at_start: int
    lapsed: int
    repeat_orders: int
    gaps: list[float]
    funnel: dict[str, int]
    eligible: dict[str, int]


def expected(shop: list[Buyer], period: Period, lapse_days: int, min_orders: int) -> Expected:
    s, e = period.start, period.end
    lapse = lapse_days * DAY
    revenue, orders, buyers, first_orders, repeat_orders = 0.0, 0, 0, 0, 0
    active = at_start = lapsed = 0
    gaps: list[float] = []
    funnel = dict.fromkeys(("acquisition", "activation", "repeat", "retention", "reactivation"), 0)
    eligible = dict.fromkeys(("activation", "repeat", "retention", "reactivation"), 0)
    for b in shop:
        mine = b.counted()
        times = [o.at for o in mine]
        in_p = [o for o in mine if _in(o.at, s, e)]
        revenue += sum(o.net for o in in_p)
        orders += len(in_p)
        buyers += bool(in_p)
        first_orders += bool(in_p) and times[0] >= s
        repeat_orders += sum(1 for o in in_p if o.at != times[0])
        was_active = any(_in(t, s - lapse, s) for t in times)
        active += was_active or bool(in_p)
        at_start += was_active
        lapsed += was_active and not any(_in(t, e - lapse, e) for t in times)
        before = sum(1 for t in times if t < s)
        after = before + len(in_p)
        if before <= 1 and after >= 2:
            gaps.append((times[1] - times[0]) / DAY)
        known = min([b.signup, *times])
        funnel["acquisition"] += _in(known, s, e)
        funnel["activation"] += before == 0 and after >= 1
        funnel["repeat"] += before <= 1 and after >= 2
        funnel["retention"] += before < min_orders <= after
        funnel["reactivation"] += before >= 1 and not was_active and bool(in_p)
        eligible["activation"] += known < e and before == 0
        eligible["repeat"] += before == 1 or (before == 0 and after >= 1)
        eligible["retention"] += before == min_orders - 1 or before < min_orders - 1 <= after
        eligible["reactivation"] += before >= 1 and not was_active
    return Expected(
        revenue,
        orders,
        buyers,
        first_orders,
        active,
        at_start,
        lapsed,
        repeat_orders,
        gaps,
        funnel,
        eligible,
    )


def in_city(shop: list[Buyer], city: str) -> list[Buyer]:
    return [b for b in shop if b.city == city]


# --- tests -----------------------------------------------------------------------------

# Long enough for thirty second orders and ten customers lapsing in the seeded shop.
MAIN = Period(date(2025, 9, 1), date(2026, 2, 28))
SHORT = Period(date(2026, 2, 1), date(2026, 2, 28))


def _check_business(engine: sa.Engine, shop: list[Buyer], period: Period, segment: Any) -> None:
    with engine.connect() as conn:
        scope = scope_for(conn, period, segment)
        report = business_report(conn, scope, margin=0.25)
    t = scope.lifecycle
    assert (t.active_days, t.lapsed_days) == (ACTIVE_DAYS, LAPSED_DAYS)
    want = expected(shop, period, t.lapsed_days, t.active_min_orders)
    f = report.facts
    assert f.revenue == pytest.approx(want.revenue)
    assert (f.orders, f.buyers, f.first_orders, f.active) == (
        want.orders,
        want.buyers,
        want.first_orders,
        want.active,
    )
    assert report.average_check.value == pytest.approx(want.revenue / want.orders)
    assert report.arpu.value == pytest.approx(want.revenue / want.active)
    assert report.revenue_per_buyer.value == pytest.approx(want.revenue / want.buyers)
    assert report.repeat_orders == want.repeat_orders
    assert report.repeat_share.value == pytest.approx(want.repeat_orders / want.orders)
    gaps = report.repeat.gaps
    assert gaps.customers == len(want.gaps)
    edges = [0, *REPEAT_BUCKETS, float("inf")]
    assert gaps.buckets == [
        sum(1 for g in want.gaps if lo <= g < hi) for lo, hi in itertools.pairwise(edges)
    ]
    if len(want.gaps) >= MIN_REPEAT_GAPS:
        assert report.repeat.median.value == pytest.approx(statistics.median(want.gaps))
        assert report.repeat.mean.value == pytest.approx(statistics.fmean(want.gaps))
    else:
        assert report.repeat.median.status == "insufficient_data"
    if want.at_start >= MIN_CHURN_BASE:
        churn = want.lapsed / want.at_start
        assert report.churn.value == pytest.approx(churn)
        assert report.churn.numbers == {"active_at_start": want.at_start, "lapsed": want.lapsed}
    if want.at_start >= MIN_CHURN_BASE and want.lapsed >= MIN_LAPSED:
        ltv = (
            (want.orders / want.active)
            * (want.revenue / want.orders)
            * (want.at_start / want.lapsed)
        )
        assert report.ltv.ltv.value == pytest.approx(ltv)
        assert report.ltv.lifetime_days.value == pytest.approx(
            period.days * want.at_start / want.lapsed
        )
        assert report.ltv.cac_ceiling.value == pytest.approx(ltv * 0.25)


def test_business_metrics_match_a_hand_computation(
    engine: sa.Engine, client: Any, secret_key: str
) -> None:
    shop = make_shop(seed=11, n=260)
    ingest_shop(engine, shop)
    kazan = add_segment(client, secret_key, "Kazan", "Kazan")
    want = expected(shop, MAIN, LAPSED_DAYS, 3)
    # The seeded shop is big enough for every estimate over MAIN: nothing is skipped above.
    assert len(want.gaps) >= MIN_REPEAT_GAPS
    assert want.at_start >= MIN_CHURN_BASE and want.lapsed >= MIN_LAPSED
    _check_business(engine, shop, MAIN, None)
    _check_business(engine, shop, SHORT, None)
    _check_business(engine, in_city(shop, "Kazan"), MAIN, str(kazan))
    _check_business(engine, in_city(shop, "Kazan"), SHORT, "Kazan")


def test_funnel_matches_a_hand_computation(engine: sa.Engine, client: Any, secret_key: str) -> None:
    shop = make_shop(seed=12, n=200)
    ingest_shop(engine, shop)
    moscow = add_segment(client, secret_key, "Moscow", "Moscow")
    for period, members, segment in (
        (MAIN, shop, None),
        (SHORT, shop, None),
        (MAIN, in_city(shop, "Moscow"), moscow),
    ):
        with engine.connect() as conn:
            scope = scope_for(conn, period, segment)
            report = funnel_report(conn, scope)
            dash = dashboard_business(conn, period, segment=segment)
        want = expected(members, period, LAPSED_DAYS, scope.lifecycle.active_min_orders)
        assert report.counts() == want.funnel
        assert dash["funnel"] == want.funnel
        assert dash["revenue"] == pytest.approx(want.revenue, abs=0.01)
        assert dash["arpu"]["value"] == pytest.approx(want.revenue / want.active)
        stages = {s.name: s for s in report.stages}
        for name, base in want.eligible.items():
            assert stages[name].eligible == base, name
            assert stages[name].conversion is not None
            assert stages[name].conversion.value == pytest.approx(want.funnel[name] / base)
        previous = stages["activation"].customers
        assert stages["repeat"].of_previous is not None
        assert stages["repeat"].of_previous.value == pytest.approx(want.funnel["repeat"] / previous)
    # Some of every stage happened, or the comparison above proved little.
    assert all(expected(shop, MAIN, LAPSED_DAYS, 3).funnel.values())


def test_ltv_by_cohort_and_segment(engine: sa.Engine, client: Any, secret_key: str) -> None:
    shop = make_shop(seed=13, n=300)
    ingest_shop(engine, shop)
    kazan = add_segment(client, secret_key, "Kazan", "Kazan")
    with engine.connect() as conn:
        report = ltv_report(conn, scope_for(conn, MAIN), margin=0.4)
    whole = expected(shop, MAIN, LAPSED_DAYS, 3)
    assert report.overall.ltv.value == pytest.approx(
        whole.revenue / whole.active * whole.at_start / whole.lapsed
    )

    def month(b: Buyer) -> str | None:
        mine = b.counted()
        return mine[0].at.strftime("%Y-%m") if mine else None

    for cohort in report.cohorts:
        members = [b for b in shop if month(b) == cohort.month]
        want = expected(members, MAIN, LAPSED_DAYS, 3)
        assert cohort.customers == len(members)
        assert cohort.revenue_to_date == pytest.approx(
            sum(o.net for b in members for o in b.counted())
        )
        assert cohort.ltv.active == want.active
        if not want.orders:
            assert cohort.ltv.ltv.status == "insufficient_data"
            assert "needs any orders; there were 0" in (cohort.ltv.ltv.reason or "")
        elif want.at_start < MIN_CHURN_BASE:
            assert cohort.ltv.ltv.status == "insufficient_data"
            assert f"there were {want.at_start}" in (cohort.ltv.ltv.reason or "")
        elif want.lapsed >= MIN_LAPSED:
            assert cohort.ltv.ltv.value == pytest.approx(
                want.revenue / want.active * want.at_start / want.lapsed
            )
    assert {c.month for c in report.cohorts} == {
        m for b in shop if (m := month(b)) and expected([b], MAIN, LAPSED_DAYS, 3).active
    }
    (seg,) = report.segments
    assert (seg.segment_id, seg.name) == (kazan, "Kazan")
    want = expected(in_city(shop, "Kazan"), MAIN, LAPSED_DAYS, 3)
    assert seg.ltv.active == want.active
    assert seg.ltv.churn.numbers == {"active_at_start": want.at_start, "lapsed": want.lapsed}


def test_refunds_and_cancellations_count_as_documented(engine: sa.Engine) -> None:
    at = T0 - 10 * DAY
    a = Buyer("a", T0 - 20 * DAY, "Kazan", [Order("a1", at, 100.0, refunded=30.0)])
    b = Buyer("b", T0 - 20 * DAY, "Kazan", [Order("b1", at, 80.0, status="cancelled")])
    c = Buyer("c", T0 - 20 * DAY, "Kazan", [Order("c1", at, 50.0, "refunded", 50.0)])
    c.orders.append(Order("c2", at + DAY, 40.0))
    ingest_shop(engine, [a, b, c])
    with engine.connect() as conn:
        report = business_report(conn, scope_for(conn, SHORT))
    # a: 100 − 30; b: cancelled, nothing; c: the refunded order drops out, the next is its first.
    assert report.facts.revenue == pytest.approx(70.0 + 40.0)
    assert (report.facts.orders, report.facts.buyers, report.facts.first_orders) == (2, 2, 2)
    assert report.repeat_orders == 0


def test_too_little_data_is_said_not_guessed(engine: sa.Engine) -> None:
    shop = make_shop(seed=14, n=12)
    ingest_shop(engine, shop)
    with engine.connect() as conn:
        report = business_report(conn, scope_for(conn, SHORT))
        empty = business_report(conn, scope_for(conn, Period(date(2020, 1, 1), date(2020, 1, 31))))
    want = expected(shop, SHORT, LAPSED_DAYS, 3)
    median = report.repeat.median
    assert (median.status, median.value) == ("insufficient_data", None)
    assert median.numbers == {"customers": len(want.gaps)}
    assert f"at least {MIN_REPEAT_GAPS}" in (median.reason or "")
    churn = report.churn
    assert (churn.status, churn.value) == ("insufficient_data", None)
    assert churn.numbers == {"active_at_start": want.at_start, "lapsed": want.lapsed}
    assert report.ltv.ltv.status == "insufficient_data"
    assert report.ltv.cac_ceiling.value is None
    doc = report.as_json()
    assert doc["churn_rate"]["status"] == "insufficient_data"
    assert doc["ltv"]["ltv"]["reason"] == churn.reason
    # No orders at all: the ratios say what is missing instead of dividing by zero.
    assert empty.average_check.status == "insufficient_data"
    assert "orders; there were 0" in (empty.average_check.reason or "")
    assert empty.arpu.value is None and empty.repeat_share.value is None


def test_lifetime_needs_enough_lapsed_customers(engine: sa.Engine) -> None:
    # Forty customers buying steadily: all active at the start, none lapsing.
    shop = [
        Buyer(
            f"s{i}",
            T0 - 200 * DAY,
            "Moscow",
            [Order(f"s{i}-{k}", T0 - (5 + 20 * k) * DAY, 50.0) for k in range(8)],
        )
        for i in range(MIN_CHURN_BASE + 10)
    ]
    ingest_shop(engine, shop)
    with engine.connect() as conn:
        report = business_report(conn, scope_for(conn, SHORT))
    assert report.churn.value == 0.0
    lifetime = report.ltv.lifetime_periods
    assert lifetime.status == "insufficient_data"
    assert f"at least {MIN_LAPSED} customers who lapsed" in (lifetime.reason or "")
    assert report.ltv.ltv.status == "insufficient_data"


def test_bad_margin_and_unknown_segment(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        scope = scope_for(conn, SHORT)
        for margin in (0, -0.1, 1.5):
            with pytest.raises(InvalidInput) as caught:
                business_report(conn, scope, margin=margin)
            assert caught.value.problems[0].where == "margin"
        with pytest.raises(SegmentNotFound):
            scope_for(conn, SHORT, "no such segment")
        with pytest.raises(SegmentNotFound):
            scope_for(conn, SHORT, "999")


def test_the_period_filter_reads_the_time_index(engine: sa.Engine) -> None:
    """The period is a plain range on ``orders.occurred_at``, which the covering index of the
    counted orders serves (the query states its condition, so the partial index applies)."""
    with engine.connect() as conn:
        scope = scope_for(conn, SHORT)
        query = recent_rows(scope)
        sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = "\n".join(
                r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql.replace("%", "%%"))
            )
        else:
            plan = "\n".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    assert "ix_orders_counted_time" in plan, plan
