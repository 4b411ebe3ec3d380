"""Split reports from the store, on SQLite and PostgreSQL: a campaign with two variants and
a control group, and a scenario's random split, with customers and orders ingested the way
a shop sends them. Every figure is checked against a computation by hand from what the
test sent (the variant drawn by the campaign's own Python assignment, the split path by
the engine's hash), the statistics against statsmodels and SciPy."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportions_ztest

from rapport.analytics.experiments.options import Options, parse_options
from rapport.analytics.experiments.sample_size import rate_sample_size
from rapport.analytics.experiments.splits import (
    NotASplit,
    StepNotFound,
    campaign_experiment,
    scenario_experiment,
)
from rapport.clock import SimulatedClock
from rapport.ingest.messages import parse_message
from rapport.messaging.campaign_start import assignment, start_campaign
from rapport.messaging.campaigns import CampaignNotFound, create_campaign
from rapport.messaging.holdout import GlobalControl, in_global_control, save_global_control
from rapport.messaging.templates.store import create_template
from rapport.pipeline import Pipeline
from rapport.scenarios.steps import _bucket
from rapport.scenarios.store import ScenarioNotFound, create_scenario
from rapport.segments.lists import create_list
from rapport.store.engine import writing
from rapport.store.tables import segment_members
from tests.conftest import T0

DAY = timedelta(days=1)
WEEK = 7 * DAY
_ids = itertools.count(1)


def ingest(pipeline: Pipeline, docs: Iterable[dict[str, Any]]) -> list[int | None]:
    """Messages as the tracking API receives them, in one batch."""
    batch = [
        parse_message(
            {"messageId": f"m-{next(_ids)}", **doc},
            where="message",
            received_at=pipeline.clock.now(),
            phone_region="RU",
            max_bytes=32 * 1024,
        )
        for doc in docs
    ]
    return pipeline.ingest(batch).customer_ids


def identify_many(pipeline: Pipeline, users: list[str]) -> dict[str, int]:
    ids = ingest(
        pipeline,
        ({"type": "identify", "userId": u, "traits": {"email": f"{u}@example.com"}} for u in users),
    )
    return {u: int(c) for u, c in zip(users, ids, strict=True) if c is not None}


@dataclass
class Order:
    user: str
    at: datetime
    total: float
    refunded: float = 0.0
    cancelled: bool = False
    id: str = field(default_factory=lambda: f"o-{next(_ids)}")


def send_orders(pipeline: Pipeline, orders: list[Order]) -> None:
    """Order Completed for each, then the cancellations and refunds."""
    ingest(
        pipeline,
        (
            {
                "type": "track",
                "userId": o.user,
                "event": "Order Completed",
                "timestamp": o.at.isoformat(),
                "properties": {"order_id": o.id, "total": o.total, "currency": "RUB"},
            }
            for o in orders
        ),
    )
    after = []
    for o in orders:
        base = {"type": "track", "userId": o.user, "timestamp": (o.at + DAY).isoformat()}
        if o.cancelled:
            after.append(base | {"event": "Order Cancelled", "properties": {"order_id": o.id}})
        elif o.refunded:
            refund = {"order_id": o.id, "total": o.refunded}
            after.append(base | {"event": "Order Refunded", "properties": refund})
    if after:
        ingest(pipeline, after)


def hand_figures(
    groups: dict[str, list[str]],
    orders: list[Order],
    assigned_at: dict[str, datetime],
    window: timedelta,
    now: datetime,
) -> dict[str, dict[str, Any]]:
    """Per group: recipients, converted (a completed, not wholly refunded order in the
    window) and each recipient's revenue in the window (refunds off, cancellations out)."""
    out = {}
    for name, users in groups.items():
        revenue = []
        converted = 0
        for u in users:
            start = assigned_at[u]
            mine = [
                o
                for o in orders
                if o.user == u and not o.cancelled and start <= o.at < min(start + window, now)
            ]
            revenue.append(sum(o.total - o.refunded for o in mine))
            converted += any(o.refunded < o.total for o in mine)
        out[name] = {"n": len(users), "x": converted, "revenue": np.array(revenue)}
    return out


def check_against_hand(report: dict[str, Any], hand: dict[str, dict[str, Any]], ref: str) -> None:
    groups = {g["name"]: g for g in report["groups"]}
    assert set(groups) == set(hand)
    for name, h in hand.items():
        g = groups[name]
        assert g["recipients"] == h["n"], name
        assert g["conversions"] == h["x"], name
        assert g["revenue"] == pytest.approx(h["revenue"].sum()), name
        assert g["revenue_per_recipient"] == pytest.approx(h["revenue"].mean()), name
        assert g["buyers"] == int((h["revenue"] > 0).sum())
    treated = [n for n in hand if n != ref]
    by_group = {c["group"]: c for c in report["comparisons"]}
    conv_p, rev_p = [], []
    for name in treated:
        c, h, r = by_group[name], hand[name], hand[ref]
        z, p = proportions_ztest([h["x"], r["x"]], [h["n"], r["n"]])
        assert c["conversion"]["z"] == pytest.approx(z)
        assert c["conversion"]["p_value"] == pytest.approx(p)
        assert c["conversion"]["difference"] == pytest.approx(h["x"] / h["n"] - r["x"] / r["n"])
        t = sps.ttest_ind(h["revenue"], r["revenue"], equal_var=False)
        assert c["revenue_per_recipient"]["t"] == pytest.approx(t.statistic)
        assert c["revenue_per_recipient"]["p_value"] == pytest.approx(t.pvalue)
        conv_p.append(p)
        rev_p.append(t.pvalue)
    if treated:
        adjusted = multipletests(conv_p, method="holm")[1]
        for name, p in zip(treated, adjusted, strict=True):
            assert by_group[name]["conversion"]["p_adjusted"] == pytest.approx(p)
        adjusted = multipletests(rev_p, method="holm")[1]
        for name, p in zip(treated, adjusted, strict=True):
            assert by_group[name]["revenue_per_recipient"]["p_adjusted"] == pytest.approx(p)


# -- a campaign -----------------------------------------------------------------------


def _campaign(engine: sa.Engine, ids: list[int], control_percent: float) -> int:
    with writing(engine) as conn:
        lst = create_list(conn, f"list-{next(_ids)}", "", T0)
        conn.execute(
            segment_members.insert(),
            [{"segment_id": lst.id, "customer_id": c, "since": T0} for c in ids],
        )
        template_ids = [
            create_template(
                conn,
                name=f"t-{next(_ids)}",
                channel="email",
                kind="text",
                variants={"en": {"subject": "Sale", "body": "Sale"}},
                now=T0,
            ).id
            for _ in range(2)
        ]
        campaign = create_campaign(
            conn,
            {
                "name": f"spring-{next(_ids)}",
                "channel": "email",
                "segment_id": lst.id,
                "variants": [
                    {"name": "A", "template_id": template_ids[0], "weight": 2},
                    {"name": "B", "template_id": template_ids[1], "weight": 1},
                ],
                "control_percent": control_percent,
            },
            T0,
        )
        start_campaign(conn, campaign.id, T0)
    return campaign.id


def _shop_orders(users: dict[str, str], seed: int) -> list[Order]:
    """Orders around the start: before it (never counted), inside the 5-day window, just
    after it (only in the weekly figures), later weeks; some cancelled or refunded."""
    rng = np.random.default_rng(seed)
    likely = {"A": 0.35, "B": 0.55, "control": 0.2}
    offsets = [-2.0, 0.2, 1.5, 3.0, 4.9, 5.2, 8.0, 12.5, 16.0, 30.0]
    orders = []
    for user, group in users.items():
        for offset in offsets:
            if rng.random() < likely.get(group, 0.3) / 3:
                total = float(np.round(rng.lognormal(np.log(1500), 0.8), 2))
                roll = rng.random()
                orders.append(
                    Order(
                        user,
                        T0 + offset * DAY + timedelta(minutes=int(rng.integers(0, 600))),
                        total,
                        refunded=total
                        if roll < 0.05
                        else (round(total / 3, 2) if roll < 0.15 else 0),
                        cancelled=0.15 <= roll < 0.22,
                    )
                )
    return orders


def test_campaign_split_matches_a_hand_computation(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    pipeline = Pipeline(engine, clock)
    users = [f"u{i}" for i in range(150)]
    ids = identify_many(pipeline, users)
    gc = GlobalControl(8.0, "exp-test")
    with writing(engine) as conn:
        save_global_control(conn, gc, T0)
    campaign_id = _campaign(engine, list(ids.values()), control_percent=20)
    with engine.connect() as conn:
        from rapport.messaging.campaigns import get_campaign

        campaign = get_campaign(conn, campaign_id)
    drawn = {u: assignment(campaign, ids[u]) for u in users}
    held_out = {u for u in users if in_global_control(ids[u], gc)}
    assert held_out, "the global control should hold someone out of a 150-customer test"
    orders = _shop_orders({u: drawn[u] for u in users}, seed=3)
    clock.set(T0 + 30 * DAY)
    send_orders(pipeline, orders)
    # a customer outside the campaign buys too: never counted
    outsider = identify_many(pipeline, ["outsider"])
    send_orders(pipeline, [Order("outsider", T0 + DAY, 999.0)])
    assert outsider

    groups: dict[str, list[str]] = {"A": [], "B": [], "control": []}
    for u in users:
        if u not in held_out:
            groups[drawn[u]].append(u)
    now = clock.now()
    with engine.connect() as conn:
        report = campaign_experiment(conn, campaign_id, Options(), now)
    hand = hand_figures(groups, orders, dict.fromkeys(users, T0), 5 * DAY, now)
    assert report["reference"] == "control"
    assert report["recipients"] == sum(len(g) for g in groups.values())
    check_against_hand(report, hand, "control")
    assert report["window_open"] is False
    assert report["window_ends_at"] == T0 + 5 * DAY

    # the configured split: A 2/3 and B 1/3 of the 80 % that is not the control
    srm = report["sample_ratio"]
    assert srm["expected"] == pytest.approx({"A": 0.8 * 2 / 3, "B": 0.8 / 3, "control": 0.2})
    counts = [len(groups[n]) for n in ("A", "B", "control")]
    expected = np.array([0.8 * 2 / 3, 0.8 / 3, 0.2]) * sum(counts)
    assert srm["p_value"] == pytest.approx(sps.chisquare(counts, expected).pvalue)

    # the plan: a 10 % relative lift from the control's rate, alpha split over 2 variants
    plan = report["plan"]
    base = hand["control"]["x"] / hand["control"]["n"]
    for name in ("A", "B"):
        size = rate_sample_size(
            base, 0.1, relative=True, alpha=0.025, ratio=hand[name]["n"] / hand["control"]["n"]
        )
        assert plan["needed"][name] == size.treatment
    assert plan["enough"] is False
    assert report["verdict"]["status"] == "too_small"
    assert "No winner yet" in report["verdict"]["text"]

    # weeks: recipients who completed an order in the k-th week after the start
    weeks = report["weeks"]
    assert [w["week"] for w in weeks] == [0, 1, 2, 3, 4]
    for w in weeks:
        for name, members in groups.items():
            lo, hi = T0 + w["week"] * WEEK, min(T0 + (w["week"] + 1) * WEEK, now)
            mine = [o for o in orders if o.user in members and not o.cancelled and lo <= o.at < hi]
            buyers = {o.user for o in mine if o.refunded < o.total}
            cell = w["groups"][name]
            assert cell["recipients"] == len(members)
            assert cell["conversions"] == len(buyers), (w["week"], name)
            assert cell["revenue"] == pytest.approx(sum(o.total - o.refunded for o in mine))
    assert weeks[-1]["complete"] is False and weeks[0]["complete"] is True

    # a longer window takes in more orders; Russian words for the same verdict
    with engine.connect() as conn:
        longer = campaign_experiment(
            conn, campaign_id, parse_options({"window_days": "14", "locale": "ru"}), now
        )
    hand14 = hand_figures(groups, orders, dict.fromkeys(users, T0), 14 * DAY, now)
    check_against_hand(longer, hand14, "control")
    assert "Победителя пока нет" in longer["verdict"]["text"]


def test_campaign_without_control_compares_with_the_first_variant(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    pipeline = Pipeline(engine, clock)
    users = [f"v{i}" for i in range(60)]
    ids = identify_many(pipeline, users)
    campaign_id = _campaign(engine, list(ids.values()), control_percent=0)
    with engine.connect() as conn:
        from rapport.messaging.campaigns import get_campaign

        campaign = get_campaign(conn, campaign_id)
    drawn = {u: assignment(campaign, ids[u]) for u in users}
    orders = _shop_orders(drawn, seed=5)
    clock.set(T0 + 3 * DAY)  # the window is still open
    send_orders(pipeline, [o for o in orders if o.at < clock.now()])
    with engine.connect() as conn:
        report = campaign_experiment(conn, campaign_id, Options(), clock.now())
    groups = {n: [u for u in users if drawn[u] == n] for n in ("A", "B")}
    hand = hand_figures(groups, orders, dict.fromkeys(users, T0), 5 * DAY, clock.now())
    assert report["reference"] == "A"
    check_against_hand(report, hand, "A")
    assert report["window_open"] is True
    assert any("still open" in w for w in report["verdict"]["warnings"])


def test_campaign_not_started_and_unknown(engine: sa.Engine, clock: SimulatedClock) -> None:
    with writing(engine) as conn:
        lst = create_list(conn, "empty", "", T0)
        tpl = create_template(
            conn,
            name="t",
            channel="email",
            kind="text",
            variants={"en": {"subject": "S", "body": "B"}},
            now=T0,
        )
        draft = create_campaign(
            conn,
            {
                "name": "draft",
                "channel": "email",
                "segment_id": lst.id,
                "variants": [{"name": "A", "template_id": tpl.id}],
                "control_percent": 10,
            },
            T0,
        )
    with engine.connect() as conn:
        report = campaign_experiment(conn, draft.id, Options(), T0)
        assert report["recipients"] == 0
        assert report["verdict"]["status"] == "too_small"
        assert "not started" in report["verdict"]["text"]
        with pytest.raises(CampaignNotFound):
            campaign_experiment(conn, 999, Options(), T0)


# -- a scenario split -------------------------------------------------------------------

SPLIT = """
name: {name}
trigger: {{event: Signed Up}}
entry: {{mode: every_time}}
{goal}
steps:
  - {{id: ab, split: {{control: 20, paths: [{{name: A, weight: 1}}, {{name: B, weight: 1}}]}}}}
  - {{id: hello, action: {{set_attribute: {{city: Moscow}}}}}}
"""


def _scenario(engine: sa.Engine, name: str, goal: str) -> int:
    with writing(engine) as conn:
        stored = create_scenario(conn, SPLIT.format(name=name, goal=goal), T0, status="active")
    return stored.id


@pytest.mark.parametrize("with_goal", [False, True])
def test_scenario_split_matches_a_hand_computation(
    engine: sa.Engine, clock: SimulatedClock, with_goal: bool
) -> None:
    goal = (
        "goal: {event: Order Completed, within_days: 7, where: [{property: total, op: ge, "
        "value: 1000}]}"
        if with_goal
        else ""
    )
    sid = _scenario(engine, "split-test", goal)
    pipeline = Pipeline(engine, clock)
    users = [f"s{i}" for i in range(90)]
    ids = identify_many(pipeline, users)
    # two cohorts: half sign up at T0, half three days later (each has its own window);
    # the first cohort signs up again a day later, which must not move them
    assigned_at: dict[str, datetime] = {}
    for cohort, at in ((users[:45], T0), (users[45:], T0 + 3 * DAY)):
        clock.set(at)
        ingest(pipeline, ({"type": "track", "userId": u, "event": "Signed Up"} for u in cohort))
        assigned_at |= dict.fromkeys(cohort, at)
    clock.set(T0 + 4 * DAY)
    ingest(pipeline, ({"type": "track", "userId": u, "event": "Signed Up"} for u in users[:10]))

    def path(u: str) -> str:
        point = _bucket("split", sid, "ab", ids[u])
        return "control" if point < 20 else ("A" if (point - 20) / 80 * 2 < 1 else "B")

    drawn = {u: path(u) for u in users}
    orders = _shop_orders(drawn, seed=8)
    orders = [
        Order(o.user, o.at + (assigned_at[o.user] - T0), o.total, o.refunded, o.cancelled)
        for o in orders
    ]
    clock.set(T0 + 40 * DAY)
    send_orders(pipeline, orders)
    with engine.connect() as conn:
        report = scenario_experiment(conn, sid, "ab", Options(), clock.now())
    groups = {n: [u for u in users if drawn[u] == n] for n in ("A", "B", "control")}
    window = 7 * DAY if with_goal else 5 * DAY
    hand = hand_figures(groups, orders, assigned_at, window, clock.now())
    if with_goal:  # the goal: an order of 1000 or more in the window (cancelled or not)
        for name, members in groups.items():
            hand[name]["x"] = sum(
                any(
                    o.user == u
                    and o.total >= 1000
                    and assigned_at[u] <= o.at < assigned_at[u] + window
                    for o in orders
                )
                for u in members
            )
    assert report["window_days"] == (7 if with_goal else 5)
    assert report["conversion"] == ("goal: Order Completed" if with_goal else "completed order")
    check_against_hand(report, hand, "control")
    assert report["first_assigned_at"] == T0 and report["last_assigned_at"] == T0 + 3 * DAY
    # weekly: recipients so far are both cohorts from week 0 (the second joined on day 3)
    assert report["weeks"][0]["groups"]["A"]["recipients"] == len(groups["A"])


def test_scenario_step_errors(engine: sa.Engine, clock: SimulatedClock) -> None:
    sid = _scenario(engine, "split-errors", "")
    with engine.connect() as conn:
        with pytest.raises(StepNotFound):
            scenario_experiment(conn, sid, "nowhere", Options(), T0)
        with pytest.raises(NotASplit):
            scenario_experiment(conn, sid, "hello", Options(), T0)
        with pytest.raises(ScenarioNotFound):
            scenario_experiment(conn, 999, "ab", Options(), T0)
        empty = scenario_experiment(conn, sid, "ab", Options(), T0)
    assert empty["recipients"] == 0 and empty["verdict"]["status"] == "too_small"
    assert [g["name"] for g in empty["groups"]] == ["A", "B", "control"]


def test_orders_follow_a_recipient_merged_after_the_start(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    """A merge moves orders to the survivor; the recipient still gets credit for them."""
    from rapport.customers.merge import merge_customers

    pipeline = Pipeline(engine, clock)
    ids = identify_many(pipeline, ["m1", "m2", "m3"])
    campaign_id = _campaign(engine, list(ids.values()), control_percent=0)
    survivor = identify_many(pipeline, ["m1-app"])["m1-app"]
    with writing(engine) as conn:
        merge_customers(conn, survivor, ids["m1"], "test", T0 + DAY)
    clock.set(T0 + 10 * DAY)
    send_orders(pipeline, [Order("m1", T0 + 2 * DAY, 700.0), Order("m1-app", T0 + 3 * DAY, 300.0)])
    with engine.connect() as conn:
        report = campaign_experiment(conn, campaign_id, Options(), clock.now())
    assert report["recipients"] == 3  # the survivor was never in the audience
    assert sum(g["conversions"] for g in report["groups"]) == 1
    assert sum(g["revenue"] for g in report["groups"]) == pytest.approx(1000.0)
