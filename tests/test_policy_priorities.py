"""Priorities when frequency caps collide, on SQLite and PostgreSQL: two scenarios answering
one event for a customer with one slot left (the higher priority is sent, the other skipped
with the cap as its reason; equal priorities fall back to first come), the same for runs
woken together, a cap's reserved slots between a campaign and a scenario, and the
priority fields validated with their paths."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.clock import SimulatedClock
from rapport.errors import InvalidInput
from rapport.messaging.campaigns import create_campaign, get_campaign, update_campaign
from rapport.messaging.policy import decide, load_policy, save_policy
from rapport.scenarios.engine import Engine, Observed
from rapport.scenarios.index import ScenarioIndex
from rapport.scenarios.model import parse_scenario
from rapport.scenarios.steps import StepContext
from rapport.scenarios.store import create_scenario, set_status, update_scenario
from rapport.store.engine import writing
from rapport.store.tables import (
    campaign_audience,
    outbox,
    scenario_step_log,
    scenario_versions,
)
from tests.conftest import T0, bearer
from tests.delivery_helpers import message, put
from tests.helpers import table_counts
from tests.test_campaigns import people, send, simple, start, subscribe, template

CAP = {"channels": {"email": {"cap": {"max_messages": 3, "days": 7}}}}
RESERVED = {
    "channels": {
        "email": {
            "cap": {"max_messages": 3, "days": 7, "reserve": {"slots": 1, "min_priority": 70}}
        }
    }
}
FULL = "frequency cap: 3 email per 7 d"
KEPT = "frequency cap: 3 email per 7 d, the last 1 kept for priority 70+"

SCENARIO = """
name: {name}
priority: {priority}
trigger: {{event: Signed Up}}
steps:
  {wait}
  - {{id: hello, send: {{template: hello}}}}
"""


def setup(engine: sa.Engine, doc: dict[str, Any], n: int = 2) -> list[int]:
    """``n`` subscribed customers; the first has used two of the three e-mail slots."""
    ids = people(engine, n)
    subscribe(engine, "email", ids)
    template(engine, "hello", "Hello")
    with writing(engine) as conn:
        save_policy(conn, doc, T0)
    put(engine, T0 - timedelta(days=1), message("old-1", ids[0]), message("old-2", ids[0]))
    return ids


def scenario(engine: sa.Engine, name: str, priority: int, wait: bool = False) -> int:
    text = SCENARIO.format(
        name=name,
        priority=priority,
        wait="- {id: pause, wait: {hours: 1}}" if wait else "",
    )
    with writing(engine) as conn:
        stored = create_scenario(conn, text, T0)
        set_status(conn, stored.id, "active", T0)
    return stored.id


def signed_up(engine: sa.Engine, ids: list[int], at: Any = T0) -> Engine:
    eng = Engine(ScenarioIndex(ttl=0), StepContext())
    with writing(engine) as conn:
        eng.react(conn, [Observed(cid, "Signed Up", {}) for cid in ids], at)
    return eng


def outcome(engine: sa.Engine, sid: int, cid: int) -> tuple[str, str | None]:
    """(outbox status, reason) of scenario ``sid``'s message to ``cid``."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(outbox.c.status, outbox.c.last_error).where(
                outbox.c.scenario_id == str(sid), outbox.c.customer_id == cid
            )
        ).one()
    return row.status, row.last_error


def logged(engine: sa.Engine, sid: int, cid: int) -> list[tuple[str, str | None]]:
    log = scenario_step_log.c
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(log.outcome, log.reason).where(
                log.scenario_id == sid,
                log.customer_id == cid,
                log.step == "hello",
                log.outcome != "entered",
            )
        ).all()
    return [tuple(r) for r in found]


# -- two scenarios, one slot --------------------------------------------------------------


def test_the_higher_priority_scenario_takes_the_last_slot(engine: sa.Engine) -> None:
    tight, free = setup(engine, CAP)
    promo = scenario(engine, "promo", 30)  # created first: first come would pick it
    welcome = scenario(engine, "welcome", 80)
    signed_up(engine, [tight, free])
    assert outcome(engine, welcome, tight) == ("queued", None)
    assert outcome(engine, promo, tight) == ("skipped", FULL)
    assert logged(engine, promo, tight) == [("skipped", FULL)]
    # With room for both, both go: the order decides only who gets a scarce slot.
    assert outcome(engine, welcome, free) == ("queued", None)
    assert outcome(engine, promo, free) == ("queued", None)


def test_equal_priorities_fall_back_to_first_come(engine: sa.Engine) -> None:
    (tight,) = setup(engine, CAP, n=1)
    first = scenario(engine, "first", 50)
    second = scenario(engine, "second", 50)
    signed_up(engine, [tight])
    assert outcome(engine, first, tight) == ("queued", None)
    assert outcome(engine, second, tight) == ("skipped", FULL)


def test_runs_woken_together_are_sent_in_priority_order(engine: sa.Engine) -> None:
    tight, free = setup(engine, CAP)
    low = scenario(engine, "low", 20, wait=True)
    high = scenario(engine, "high", 90, wait=True)
    eng = signed_up(engine, [tight, free])
    with writing(engine) as conn:
        claimed, _ = eng.run_due(conn, T0 + timedelta(hours=2))
    assert claimed == 4
    assert outcome(engine, high, tight) == ("queued", None)
    assert outcome(engine, low, tight) == ("skipped", FULL)
    assert outcome(engine, low, free) == ("queued", None)


# -- reserved slots: a campaign and a scenario ----------------------------------------------


def audience_of(engine: sa.Engine, campaign_id: int, cid: int) -> tuple[str, str | None]:
    a = campaign_audience.c
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(a.status, a.reason).where(a.campaign_id == campaign_id, a.customer_id == cid)
        ).one()
    return row.status, row.reason


def test_a_normal_campaign_leaves_the_reserved_slot_to_a_high_priority_scenario(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    tight, free = setup(engine, RESERVED)
    c = simple(engine, [tight, free])  # cap_priority 50 by default
    start(engine, c.id, clock.now())
    send(engine, c.id, clock)
    assert audience_of(engine, c.id, tight) == ("skipped", KEPT)
    assert audience_of(engine, c.id, free) == ("queued", None)
    welcome = scenario(engine, "welcome", 80)
    signed_up(engine, [tight], T0 + timedelta(hours=1))
    assert outcome(engine, welcome, tight) == ("queued", None)  # the kept slot


def test_a_high_priority_campaign_may_take_the_reserved_slot(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    (tight,) = setup(engine, RESERVED, n=1)
    c = simple(engine, [tight], cap_priority=90)
    start(engine, c.id, clock.now())
    send(engine, c.id, clock)
    assert audience_of(engine, c.id, tight) == ("queued", None)
    welcome = scenario(engine, "welcome", 80)
    signed_up(engine, [tight], T0 + timedelta(hours=1))
    assert outcome(engine, welcome, tight) == ("skipped", FULL)


def test_without_a_reserve_the_earlier_sender_wins(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    """The documented limit: priority orders messages decided together, and reserves keep
    slots back; nothing takes back a slot a lower priority filled earlier."""
    (tight,) = setup(engine, CAP, n=1)
    c = simple(engine, [tight], cap_priority=10)
    start(engine, c.id, clock.now())
    send(engine, c.id, clock)
    assert audience_of(engine, c.id, tight) == ("queued", None)
    welcome = scenario(engine, "welcome", 100)
    signed_up(engine, [tight], T0 + timedelta(hours=1))
    assert outcome(engine, welcome, tight) == ("skipped", FULL)


def test_decide_honours_the_reserve_on_channel_and_global_caps(engine: sa.Engine) -> None:
    ids = people(engine, 3)
    subscribe(engine, "email", ids)
    subscribe(engine, "sms", ids)
    one, two, three = ids
    put(
        engine,
        T0 - timedelta(hours=1),
        message("a1", one),
        *(message(f"b{i}", two) for i in range(2)),
        *(message(f"c{i}", three) for i in range(3)),
    )
    doc = {
        "global_cap": {"max_messages": 3, "days": 1, "reserve": {"slots": 2, "min_priority": 60}}
    }
    with writing(engine) as conn:
        save_policy(conn, doc, T0)
    with engine.connect() as conn:
        normal = decide(conn, ids, "sms", T0)
        high = decide(conn, ids, "sms", T0, rank=60)
        urgent = decide(conn, ids, "sms", T0, "transactional", rank=0)
    kept = "frequency cap: 3 per 1 d, the last 2 kept for priority 60+"
    assert [d.reason for d in normal.values()] == [kept, kept, "frequency cap: 3 per 1 d"]
    assert [d.allowed for d in high.values()] == [True, True, False]
    assert all(d.allowed for d in urgent.values())  # transactional ignores caps
    with engine.connect() as conn, pytest.raises(ValueError, match="rank 101"):
        decide(conn, ids, "sms", T0, rank=101)


# -- the fields, validated ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reserve", "where", "words"),
    [
        ({"slots": 3, "min_priority": 70}, "channels.email.cap", "reserve.slots (3) must be below"),
        ({"slots": 0, "min_priority": 70}, "channels.email.cap.reserve.slots", "greater than"),
        ({"slots": 1, "min_priority": 101}, "channels.email.cap.reserve.min_priority", "less"),
        ({"slots": 1}, "channels.email.cap.reserve.min_priority", "required"),
        ({"slots": 1, "min_priority": 70, "for": "vip"}, "channels.email.cap.reserve.for", ""),
    ],
)
def test_a_bad_reserve_is_named_and_nothing_changes(
    engine: sa.Engine, reserve: dict[str, Any], where: str, words: str
) -> None:
    with writing(engine) as conn:
        save_policy(conn, RESERVED, T0)
    doc = {"channels": {"email": {"cap": {"max_messages": 3, "days": 7, "reserve": reserve}}}}
    with writing(engine) as conn, pytest.raises(InvalidInput) as caught:
        save_policy(conn, doc, T0)
    assert [p.where for p in caught.value.problems] == [where]
    assert words in caught.value.problems[0].reason
    with engine.connect() as conn:
        cap = load_policy(conn).rules("email").cap
    assert cap is not None and cap.reserve is not None and cap.reserve.slots == 1


@pytest.mark.parametrize("bad", [101, -1, "high", 7.5, None])
def test_campaign_cap_priority_is_checked(
    engine: sa.Engine, clock: SimulatedClock, bad: Any
) -> None:
    c = simple(engine, people(engine, 1), cap_priority=80)
    assert c.cap_priority == 80 and c.as_dict()["cap_priority"] == 80
    with writing(engine) as conn:
        changed = update_campaign(conn, c.id, {"cap_priority": 20}, T0)
    assert changed.cap_priority == 20
    before = table_counts(engine)
    with writing(engine) as conn, pytest.raises(InvalidInput) as caught:
        create_campaign(conn, c.spec() | {"name": "other", "cap_priority": bad}, T0)
    assert [p.where for p in caught.value.problems] == ["cap_priority"]
    with writing(engine) as conn, pytest.raises(InvalidInput):
        update_campaign(conn, c.id, {"cap_priority": bad}, T0)
    assert table_counts(engine) == before
    with engine.connect() as conn:
        assert get_campaign(conn, c.id).cap_priority == 20


def test_campaign_cap_priority_through_the_api(
    engine: sa.Engine, client: TestClient, secret_key: str
) -> None:
    auth = bearer(secret_key)
    c = simple(engine, people(engine, 1))
    assert client.get(f"/api/campaigns/{c.id}", headers=auth).json()["cap_priority"] == 50
    r = client.patch(f"/api/campaigns/{c.id}", json={"cap_priority": 75}, headers=auth)
    assert r.status_code == 200 and r.json()["cap_priority"] == 75, r.text
    r = client.patch(f"/api/campaigns/{c.id}", json={"cap_priority": 150}, headers=auth)
    assert r.status_code == 422 and [e["where"] for e in r.json()["errors"]] == ["cap_priority"]
    assert client.get(f"/api/campaigns/{c.id}", headers=auth).json()["cap_priority"] == 75


@pytest.mark.parametrize("bad", [101, -5, "high", 2.5])
def test_scenario_priority_is_checked_with_its_path(bad: Any) -> None:
    text = SCENARIO.format(name="x", priority=bad, wait="")
    with pytest.raises(InvalidInput) as caught:
        parse_scenario(text)
    assert [p.where for p in caught.value.problems] == ["scenario.priority"]


def test_scenario_priority_defaults_to_normal_and_is_versioned(engine: sa.Engine) -> None:
    template(engine, "hello", "Hello")
    plain = SCENARIO.replace("priority: {priority}\n", "").format(name="x", wait="")
    assert parse_scenario(plain).definition.priority == 50
    sid = scenario(engine, "promo", 30)
    with writing(engine) as conn:
        update_scenario(conn, sid, SCENARIO.format(name="promo", priority=90, wait=""), T0)
        versions = conn.execute(
            sa.select(scenario_versions.c.version, scenario_versions.c.definition)
            .where(scenario_versions.c.scenario_id == sid)
            .order_by(scenario_versions.c.version)
        ).all()
    assert [(v, d["priority"]) for v, d in versions] == [(1, 30), (2, 90)]
