"""The global control group against everyone else over a period, on SQLite and PostgreSQL,
with customers and orders ingested as a shop sends them: every figure against a
computation by hand, the incremental revenue, and the verdict's honesty."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from scipy import stats as sps
from statsmodels.stats.proportion import proportions_ztest

from rapport.analytics.experiments.incrementality import CONTROL, CRM, global_control_report
from rapport.analytics.experiments.options import Options
from rapport.analytics.periods import Period
from rapport.clock import SimulatedClock
from rapport.messaging.holdout import GlobalControl, in_global_control, save_global_control
from rapport.pipeline import Pipeline
from rapport.store.engine import writing
from tests.conftest import T0
from tests.test_experiments_splits import Order, identify_many, send_orders

DAY = timedelta(days=1)
MARCH = Period(date(2026, 3, 1), date(2026, 3, 31))


def _shop(
    engine: sa.Engine, clock: SimulatedClock, control: GlobalControl
) -> tuple[dict[str, int], list[Order]]:
    pipeline = Pipeline(engine, clock)
    users = [f"g{i}" for i in range(240)]
    ids = identify_many(pipeline, users)
    with writing(engine) as conn:
        save_global_control(conn, control, T0)
    rng = np.random.default_rng(17)
    orders = []
    for u in users:
        held = in_global_control(ids[u], control)
        for offset in (-10.0, 2.0, 9.0, 20.0, 33.0):  # Feb, three in March, April
            if rng.random() < (0.18 if held else 0.3):
                total = float(np.round(rng.lognormal(np.log(2000), 0.9), 2))
                roll = rng.random()
                orders.append(
                    Order(
                        u,
                        T0 + offset * DAY,
                        total,
                        refunded=round(total / 2, 2) if roll < 0.1 else 0.0,
                        cancelled=0.1 <= roll < 0.15,
                    )
                )
    clock.set(T0 + 45 * DAY)
    send_orders(pipeline, orders)
    # created after the period: not one of its customers
    late = identify_many(pipeline, ["late"])
    send_orders(pipeline, [Order("late", T0 + 44 * DAY, 5000.0)])
    return ids | late, orders


def test_global_control_matches_a_hand_computation(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    control = GlobalControl(25.0, "exp-global")
    ids, orders = _shop(engine, clock, control)
    now = clock.now()
    with engine.connect() as conn:
        report = global_control_report(conn, MARCH, Options(metric="revenue"), now)

    users = [u for u in ids if u != "late"]
    groups = {
        CONTROL: [u for u in users if in_global_control(ids[u], control)],
        CRM: [u for u in users if not in_global_control(ids[u], control)],
    }
    assert groups[CONTROL] and groups[CRM]
    hand = {}
    for name, members in groups.items():
        revenue = np.array(
            [
                sum(
                    o.total - o.refunded
                    for o in orders
                    if o.user == u and not o.cancelled and MARCH.start <= o.at < MARCH.end
                )
                for u in members
            ]
        )
        converted = sum(
            any(
                o.user == u
                and not o.cancelled
                and o.refunded < o.total
                and MARCH.start <= o.at < MARCH.end
                for o in orders
            )
            for u in members
        )
        hand[name] = (len(members), converted, revenue)
    figures = {g["name"]: g for g in report["groups"]}
    for name, (n, x, revenue) in hand.items():
        assert figures[name]["recipients"] == n
        assert figures[name]["conversions"] == x
        assert figures[name]["revenue"] == pytest.approx(revenue.sum())
        assert figures[name]["revenue_per_recipient"] == pytest.approx(revenue.mean())
    (n1, x1, r1), (n0, x0, r0) = hand[CRM], hand[CONTROL]
    comparison = report["comparisons"][0]
    assert comparison["group"] == CRM and comparison["reference"] == CONTROL
    _, p = proportions_ztest([x1, x0], [n1, n0])
    assert comparison["conversion"]["p_value"] == pytest.approx(p)
    t = sps.ttest_ind(r1, r0, equal_var=False)
    rev = comparison["revenue_per_recipient"]
    assert rev["p_value"] == pytest.approx(t.pvalue)
    ci = t.confidence_interval()
    assert rev["difference_ci"] == pytest.approx([ci.low, ci.high])

    inc = report["incremental"]
    assert inc["customers"] == n1
    assert inc["value"] == pytest.approx((r1.mean() - r0.mean()) * n1)
    assert inc["ci"] == pytest.approx([ci.low * n1, ci.high * n1])
    assert inc["share"] == pytest.approx(inc["value"] / r1.sum())
    low, high = inc["bootstrap_ci"]
    assert low < inc["value"] < high

    verdict = report["verdict"]
    assert verdict["status"] == "too_small"  # a few dozen held out is far from enough
    assert "Not enough data yet" in verdict["text"]
    assert report["global_control"] == {"percent": 25.0, "salt": "exp-global", "enabled": True}

    # with an effect the plan can see at this size, the verdict follows the test
    with engine.connect() as conn:
        loose = global_control_report(
            conn, MARCH, Options(metric="revenue", mde=5.0, locale="ru"), now
        )
    assert loose["plan"]["enough"] is True
    significant = loose["comparisons"][0]["revenue_per_recipient"]["significant"]
    assert significant == (t.pvalue < 0.05)
    status = loose["verdict"]["status"]
    assert status == (
        "not_significant"
        if not significant
        else "positive"
        if r1.mean() > r0.mean()
        else "negative"
    )
    assert "Значимой разницы" in loose["verdict"]["text"] or "CRM" in loose["verdict"]["text"]


def test_global_control_off_says_so(engine: sa.Engine, clock: SimulatedClock) -> None:
    pipeline = Pipeline(engine, clock)
    identify_many(pipeline, ["a", "b"])
    with engine.connect() as conn:
        report = global_control_report(conn, MARCH, Options(), clock.now())
        ru = global_control_report(conn, MARCH, Options(locale="ru"), clock.now())
    assert report["verdict"]["status"] == "off"
    assert "global control group is off" in report["verdict"]["text"]
    assert "выключена" in ru["verdict"]["text"]
    assert report["incremental"]["value"] is None
