"""The global control group: one stable hash in Python and SQL on both stores, its share,
its settings (validated, salt kept), and every sender keeping its members out of
marketing while transactional messages still go."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.clock import SimulatedClock
from rapport.errors import InvalidInput
from rapport.messaging.campaign_report import campaign_report
from rapport.messaging.campaigns import get_campaign
from rapport.messaging.holdout import (
    GlobalControl,
    global_control,
    in_global_control,
    in_global_control_sql,
    save_global_control,
)
from rapport.messaging.policy import Decision, decide
from rapport.scenarios.engine import Engine, Observed
from rapport.scenarios.index import ScenarioIndex
from rapport.scenarios.steps import StepContext
from rapport.scenarios.store import create_scenario, set_status
from rapport.store.engine import writing
from rapport.store.tables import (
    app_settings,
    campaign_audience,
    customers,
    outbox,
    scenario_step_log,
)
from tests.conftest import T0, bearer
from tests.test_campaigns import people, rows, send, simple, start, subscribe, template

NOW = T0


# -- the hash ----------------------------------------------------------------------------


def test_python_and_sql_agree_on_both_stores(engine: sa.Engine) -> None:
    """Thousands of ids, several shares and salts, large ids too: the same members."""
    ids = [*range(1, 4001), 2_147_483_646, 2_147_483_647, 2_147_483_648, 9_000_000_000_123]
    row = {"created_at": NOW, "updated_at": NOW, "traits": {}}
    with writing(engine) as conn:
        conn.execute(customers.insert(), [row | {"id": i} for i in ids])
    for control in (
        GlobalControl(5.0, "a1b2"),
        GlobalControl(12.34, "other"),
        GlobalControl(50.0, ""),
    ):
        with engine.connect() as conn:
            in_sql = {
                int(i)
                for i in conn.execute(
                    sa.select(customers.c.id).where(in_global_control_sql(customers.c.id, control))
                ).scalars()
            }
        in_python = {i for i in ids if in_global_control(i, control)}
        assert in_sql == in_python
        assert abs(len(in_python) / len(ids) * 100 - control.percent) < 1.5


def test_off_means_nobody(engine: sa.Engine) -> None:
    off = GlobalControl(0.0, "x")
    assert not any(in_global_control(i, off) for i in range(1, 2000))
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.select(sa.literal(1)).where(in_global_control_sql(customers.c.id, off))
            ).first()
            is None
        )


def test_membership_is_stable_and_grows_with_the_share() -> None:
    ids = range(1, 20_001)
    five = {i for i in ids if in_global_control(i, GlobalControl(5, "s"))}
    ten = {i for i in ids if in_global_control(i, GlobalControl(10, "s"))}
    assert five == {i for i in ids if in_global_control(i, GlobalControl(5.0, "s"))}
    assert five < ten  # raising the share only adds customers
    assert abs(len(five) / 20_000 - 0.05) < 0.006
    assert abs(len(ten) / 20_000 - 0.10) < 0.008
    other = {i for i in ids if in_global_control(i, GlobalControl(5, "t"))}
    assert len(five & other) < len(five) * 0.15  # another salt, an independent group


# -- settings ----------------------------------------------------------------------------


def stored(engine: sa.Engine) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(app_settings.c.value).where(app_settings.c.key == "global_control")
        ).scalar_one_or_none()


def save(engine: sa.Engine, doc: Any) -> GlobalControl:
    with writing(engine) as conn:
        return save_global_control(conn, doc, NOW)


def test_settings_default_off_and_the_salt_is_kept(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        assert global_control(conn) == GlobalControl(0.0, "")
    first = save(engine, {"percent": 5})
    assert first.percent == 5.0 and len(first.salt) == 16  # drawn when first enabled
    again = save(engine, {"percent": 7.5})  # no salt: the group keeps its members
    assert again == GlobalControl(7.5, first.salt)
    off = save(engine, GlobalControl(0, ""))
    assert off == GlobalControl(0.0, first.salt)
    chosen = save(engine, {"percent": 2, "salt": "spring-2026"})
    with engine.connect() as conn:
        assert global_control(conn) == chosen == GlobalControl(2.0, "spring-2026")


@pytest.mark.parametrize(
    ("doc", "where", "words"),
    [
        ({"percent": 50.5}, "global_control.percent", "not from 0 to 50"),
        ({"percent": -1}, "global_control.percent", "not from 0 to 50"),
        ({"percent": float("nan")}, "global_control.percent", "not from 0 to 50"),
        ({"percent": "5"}, "global_control.percent", "must be a number"),
        ({"percent": True}, "global_control.percent", "must be a number"),
        ({"percent": 5, "salt": 7}, "global_control.salt", "must be a string"),
        ({"percent": 5, "salt": " x"}, "global_control.salt", "no surrounding spaces"),
        ({"percent": 5, "salt": "x" * 101}, "global_control.salt", "at most 100"),
        ({"percent": 5, "share": 3}, "global_control.share", "unknown field"),
        ([5], "global_control", "an object"),
    ],
)
def test_bad_settings_name_the_field_and_change_nothing(
    engine: sa.Engine, doc: Any, where: str, words: str
) -> None:
    save(engine, {"percent": 3, "salt": "kept"})
    with pytest.raises(InvalidInput) as caught:
        save(engine, doc)
    assert [p.where for p in caught.value.problems] == [where]
    assert words in caught.value.problems[0].reason
    assert stored(engine) == {"percent": 3.0, "salt": "kept"}


# -- every sender keeps members out of marketing -----------------------------------------


def members_of(ids: list[int], control: GlobalControl) -> set[int]:
    return {cid for cid in ids if in_global_control(cid, control)}


def test_the_policy_refuses_marketing_to_members_only(engine: sa.Engine) -> None:
    ids = people(engine, 60)
    subscribe(engine, "email", ids)
    with engine.connect() as conn:
        before = decide(conn, ids, "email", NOW)
    assert all(d.allowed for d in before.values())  # off: nobody held out
    control = save(engine, {"percent": 20, "salt": "policy"})
    held = members_of(ids, control)
    assert 0 < len(held) < len(ids)
    with engine.connect() as conn:
        got = decide(conn, ids, "email", NOW)
        urgent = decide(conn, ids, "email", NOW, "transactional")
    assert {cid for cid, d in got.items() if not d.allowed} == held
    assert all(got[cid] == Decision(False, "global_control") for cid in held)
    assert all(d.allowed for d in urgent.values())  # an order confirmation still goes


def test_campaign_audience_marks_members_apart_from_its_own_control(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    ids = people(engine, 300)
    subscribe(engine, "email", ids)
    control = save(engine, {"percent": 10, "salt": "campaigns"})
    held = members_of(ids, control)
    c = simple(engine, ids, control_percent=20)
    start(engine, c.id, clock.now())
    report = send(engine, c.id, clock)
    audience = {r.customer_id: r for r in rows(engine, campaign_audience)}
    by_status = {
        s: {cid for cid, r in audience.items() if r.status == s}
        for s in ("global_control", "control", "queued", "skipped", "pending")
    }
    assert by_status["global_control"] == held  # the SQL draw agrees with Python
    assert all(audience[cid].reason == "global_control" for cid in held)
    assert all(audience[cid].variant == "control" for cid in held)
    assert by_status["control"] and not by_status["control"] & held
    assert by_status["queued"] == set(ids) - held - by_status["control"]
    assert not by_status["skipped"] and not by_status["pending"]
    sent_to = {r.customer_id for r in rows(engine, outbox)}
    assert sent_to == by_status["queued"]  # nothing on the members' cards
    assert report.queued == len(by_status["queued"])
    assert report.total == len(ids) - len(held) - len(by_status["control"])
    with engine.connect() as conn:
        summary = campaign_report(conn, get_campaign(conn, c.id))
    assert summary["global_control"] == len(held)
    assert summary["control"] == len(by_status["control"])
    assert summary["audience"] == len(ids)
    assert summary["total"]["audience"] == len(by_status["queued"])
    # A transactional campaign reaches them.
    urgent = simple(engine, ids, priority="transactional")
    start(engine, urgent.id, clock.now())
    send(engine, urgent.id, clock)
    reached = {r.customer_id for r in rows(engine, outbox, outbox.c.campaign_id == str(urgent.id))}
    assert reached == set(ids)


SCENARIO = """
name: {name}
trigger: {{event: Signed Up}}
steps:
  - {{id: hello, send: {{template: hello, transactional: {urgent}}}}}
"""


def test_scenario_sends_skip_members_and_transactional_ones_go(engine: sa.Engine) -> None:
    ids = people(engine, 40)
    subscribe(engine, "email", ids)
    template(engine, "hello", "Hello")
    control = save(engine, {"percent": 25, "salt": "scenarios"})
    held = members_of(ids, control)
    assert held and held != set(ids)
    with writing(engine) as conn:
        for name, urgent in (("promo", "false"), ("receipt", "true")):
            stored_ = create_scenario(conn, SCENARIO.format(name=name, urgent=urgent), T0)
            set_status(conn, stored_.id, "active", T0)
    eng = Engine(ScenarioIndex(ttl=0), StepContext())
    with writing(engine) as conn:
        eng.react(conn, [Observed(cid, "Signed Up", {}) for cid in ids], T0 + timedelta(minutes=1))
    with engine.connect() as conn:
        out = conn.execute(
            sa.select(
                outbox.c.customer_id, outbox.c.scenario_id, outbox.c.status, outbox.c.last_error
            )
        ).all()
        log = conn.execute(
            sa.select(scenario_step_log.c.customer_id, scenario_step_log.c.reason).where(
                scenario_step_log.c.outcome == "skipped"
            )
        ).all()
    promo = {r.customer_id: r for r in out if r.scenario_id == "1"}
    receipt = {r.customer_id: r for r in out if r.scenario_id == "2"}
    assert {cid for cid, r in promo.items() if r.status == "skipped"} == held
    assert all(promo[cid].last_error == "global_control" for cid in held)
    assert {cid for cid, r in promo.items() if r.status == "queued"} == set(ids) - held
    assert {r.status for r in receipt.values()} == {"queued"} and set(receipt) == set(ids)
    assert sorted(log) == sorted((cid, "global_control") for cid in held)


# -- the API -----------------------------------------------------------------------------


def test_api_reads_and_sets_the_group(
    engine: sa.Engine, client: TestClient, secret_key: str
) -> None:
    ids = people(engine, 200)
    auth = bearer(secret_key)
    got = client.get("/api/policy/global-control", headers=auth)
    assert got.status_code == 200 and got.json() == {"percent": 0.0, "salt": "", "members": 0}
    put = client.put("/api/policy/global-control", json={"percent": 10}, headers=auth)
    assert put.status_code == 200, put.text
    body = put.json()
    control = GlobalControl(10.0, body["salt"])
    assert body["members"] == len(members_of(ids, control)) > 0
    assert client.get("/api/policy/global-control", headers=auth).json() == body
    bad = client.put("/api/policy/global-control", json={"percent": 80}, headers=auth)
    assert bad.status_code == 422
    assert "global_control.percent" in bad.text
    assert client.get("/api/policy/global-control", headers=auth).json() == body
