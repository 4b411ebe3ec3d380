"""The scenario engine on SQLite and PostgreSQL: triggers, waits, entity-keyed exits, goals,
branches, splits, and exactly one outbox row per step however often a tick repeats."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from rapport.clock import SimulatedClock
from rapport.customers.consents import ConsentChange, set_consents
from rapport.errors import InvalidInput
from rapport.messaging.templates.store import create_template
from rapport.pipeline import Pipeline
from rapport.scenarios.engine import Engine, Observed
from rapport.scenarios.index import ScenarioIndex
from rapport.scenarios.steps import StepContext
from rapport.scenarios.store import create_scenario, set_status, update_scenario
from rapport.store.engine import writing
from rapport.store.tables import customers, events, outbox, scenario_runs, scenario_step_log
from tests.conftest import T0

CART = """
name: abandoned-cart
trigger: {event: Product Added}
entity_key: cart_id
entry: {mode: every_time}
exit_on: [{event: Order Completed, same_entity: true}]
goal: {event: Order Completed, within_days: 7, same_entity: true}
steps:
  - {id: pause, wait: {hours: 2}}
  - {id: first, send: {template: cart}}
  - {id: later, wait: {hours: 24}}
  - {id: second, send: {template: cart}}
"""


def _setup(engine: sa.Engine, n: int = 1) -> list[int]:
    with writing(engine) as conn:
        create_template(
            conn,
            name="cart",
            channel="email",
            kind="text",
            variants={"ru": {"subject": "Корзина", "body": "{{ customer.first_name }}, вы забыли"}},
            now=T0,
        )
        ids = []
        for i in range(n):
            cid = conn.execute(
                customers.insert()
                .values(
                    created_at=T0,
                    updated_at=T0,
                    traits={},
                    first_name=f"C{i}",
                    email=f"c{i}@example.com",
                )
                .returning(customers.c.id)
            ).scalar_one()
            ids.append(int(cid))
        set_consents(conn, [ConsentChange(c, "email", "subscribed", "test", T0) for c in ids])
    return ids


def _engine(engine: sa.Engine) -> Engine:
    pipeline = Pipeline(engine, SimulatedClock(T0))
    return Engine(ScenarioIndex(ttl=0), StepContext(recorder=pipeline))


def _scenario(engine: sa.Engine, text: str) -> int:
    with writing(engine) as conn:
        stored = create_scenario(conn, text, T0)
        set_status(conn, stored.id, "active", T0)
    return stored.id


def _react(engine: sa.Engine, eng: Engine, at, *observed: Observed) -> list:  # type: ignore[no-untyped-def]
    with writing(engine) as conn:
        return eng.react(conn, list(observed), at)


def _tick(engine: sa.Engine, eng: Engine, at) -> int:  # type: ignore[no-untyped-def]
    with writing(engine) as conn:
        n, _ = eng.run_due(conn, at)
    return n


def _keys(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(outbox.c.idempotency_key)).scalars())


def test_abandoned_cart_per_entity(engine: sa.Engine) -> None:
    (cid,) = _setup(engine)
    _scenario(engine, CART)
    eng = _engine(engine)
    events = _react(engine, eng, T0, Observed(cid, "Product Added", {"cart_id": "c1"}))
    assert [e[1] for e in events] == ["Scenario Entered"]
    _react(
        engine, eng, T0 + timedelta(minutes=5), Observed(cid, "Product Added", {"cart_id": "c2"})
    )
    # the same cart again does not start a second run
    _react(
        engine, eng, T0 + timedelta(minutes=6), Observed(cid, "Product Added", {"cart_id": "c1"})
    )
    assert _tick(engine, eng, T0 + timedelta(hours=1)) == 0
    assert _tick(engine, eng, T0 + timedelta(hours=2, minutes=10)) == 2
    assert _tick(engine, eng, T0 + timedelta(hours=2, minutes=10)) == 0  # nothing due twice
    assert _keys(engine) == ["run:1:step:first", "run:2:step:first"]
    # the order of cart c1 ends c1's run only, and converts it
    _react(
        engine, eng, T0 + timedelta(hours=3), Observed(cid, "Order Completed", {"cart_id": "c1"})
    )
    with engine.connect() as conn:
        status = dict(
            conn.execute(sa.select(scenario_runs.c.entity_key, scenario_runs.c.status)).all()
        )
    assert status == {"c1": "converted", "c2": "active"}
    assert _tick(engine, eng, T0 + timedelta(days=2)) == 1
    assert _keys(engine) == ["run:1:step:first", "run:2:step:first", "run:2:step:second"]
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(scenario_runs.c.status).where(scenario_runs.c.id == 2)).scalar()
            == "done"
        )
        outcomes = sorted(
            (s, o)
            for s, o in conn.execute(
                sa.select(scenario_step_log.c.step, scenario_step_log.c.outcome).where(
                    scenario_step_log.c.run_id == 1
                )
            )
        )
    assert ("goal", "converted") in outcomes and ("first", "sent") in outcomes


def test_policy_skip_is_recorded_and_run_goes_on(engine: sa.Engine) -> None:
    (cid,) = _setup(engine)
    with writing(engine) as conn:
        set_consents(conn, [ConsentChange(cid, "email", "unsubscribed", "test", T0)])
    _scenario(engine, CART.replace("hours: 2", "minutes: 1"))
    eng = _engine(engine)
    _react(engine, eng, T0, Observed(cid, "Product Added", {"cart_id": "c1"}))
    _tick(engine, eng, T0 + timedelta(minutes=2))
    with engine.connect() as conn:
        row = conn.execute(sa.select(outbox.c.status, outbox.c.last_error)).one()
        run = conn.execute(sa.select(scenario_runs.c.step, scenario_runs.c.status)).one()
    assert row.status == "skipped" and "unsubscribed" in (row.last_error or "")
    assert tuple(run) == ("second", "active")  # waiting 24 h before it


def test_wait_for_event_branches_on_which_came_first(engine: sa.Engine) -> None:
    a, b = _setup(engine, 2)
    _scenario(
        engine,
        """
name: welcome
trigger: {event: Signed Up}
steps:
  - {id: hello, send: {template: cart}}
  - {id: wait, wait: {event: Order Completed, timeout: {days: 3}, on_event: thanks, on_timeout: nudge}}
  - {id: nudge, send: {template: cart}, next: out}
  - {id: thanks, send: {template: cart}}
  - {id: out, exit: true}
""",
    )
    eng = _engine(engine)
    _react(engine, eng, T0, Observed(a, "Signed Up", {}), Observed(b, "Signed Up", {}))
    assert _keys(engine) == ["run:1:step:hello", "run:2:step:hello"]  # sent at once
    _react(engine, eng, T0 + timedelta(days=1), Observed(a, "Order Completed", {}))
    _tick(engine, eng, T0 + timedelta(days=4))
    assert _keys(engine) == [
        "run:1:step:hello",
        "run:1:step:thanks",
        "run:2:step:hello",
        "run:2:step:nudge",
    ]


def test_split_and_control_are_stable(engine: sa.Engine) -> None:
    ids = _setup(engine, 200)
    _scenario(
        engine,
        """
name: ab
trigger: {event: Go}
steps:
  - {id: ab, split: {control: 20, paths: [{name: A, weight: 1, next: a}, {name: B, weight: 1, next: b}]}}
  - {id: a, send: {template: cart}, next: out}
  - {id: b, send: {template: cart}}
  - {id: out, exit: true}
""",
    )
    eng = _engine(engine)
    _react(engine, eng, T0, *[Observed(c, "Go", {}) for c in ids])
    with engine.connect() as conn:
        statuses = list(conn.execute(sa.select(scenario_runs.c.status)).scalars())
    control = statuses.count("control")
    assert 20 <= control <= 60  # 20 % of 200 by a stable hash
    keys = _keys(engine)
    a = sum(k.endswith(":a") for k in keys)
    b = sum(k.endswith(":b") for k in keys)
    assert a + b + control == 200 and a > 40 and b > 40


def test_new_version_leaves_runs_in_flight_alone(engine: sa.Engine) -> None:
    (cid,) = _setup(engine)
    sid = _scenario(engine, CART)
    eng = _engine(engine)
    _react(engine, eng, T0, Observed(cid, "Product Added", {"cart_id": "c1"}))
    with writing(engine) as conn:
        update_scenario(conn, sid, CART.replace("id: first", "id: renamed"), T0)
    _tick(engine, eng, T0 + timedelta(hours=3))
    assert _keys(engine) == ["run:1:step:first"]  # version 1's step, not the new one


def test_bad_scenarios_name_the_place(engine: sa.Engine) -> None:
    with writing(engine) as conn, pytest.raises(InvalidInput) as err:
        create_scenario(conn, CART, T0)  # template "cart" does not exist yet
    assert [p.where for p in err.value.problems] == [
        "scenario.steps[1].send.template",
        "scenario.steps[3].send.template",
    ]


def test_through_the_pipeline_and_the_runner(
    client,
    write_key: str,
    engine: sa.Engine,
    app,
    clock: SimulatedClock,  # type: ignore[no-untyped-def]
) -> None:
    from rapport.worker import ScenarioLoop
    from tests.conftest import basic

    _setup(engine, 0)
    _scenario(
        engine,
        """
name: welcome
trigger: {event: Signed Up}
exit_on: [{event: Order Completed}]
steps:
  - {id: hello, send: {template: cart}}
  - {id: later, wait: {days: 1}}
  - {id: again, send: {template: cart}}
""",
    )
    traits = {"email": "new@example.com", "consents": {"email": "subscribed"}}
    r = client.post(
        "/v1/identify", json={"userId": "u1", "traits": traits}, headers=basic(write_key)
    )
    assert r.status_code == 200
    r = client.post(
        "/v1/track", json={"userId": "u1", "event": "Signed Up"}, headers=basic(write_key)
    )
    assert r.status_code == 200
    assert _keys(engine) == ["run:1:step:hello"]  # queued before the call returned
    loop = ScenarioLoop(app.state.pipeline)
    clock.advance(timedelta(days=1, minutes=1))
    assert loop.run_once() == 1
    assert _keys(engine) == ["run:1:step:again", "run:1:step:hello"]
    with engine.connect() as conn:
        names = list(conn.execute(sa.select(events.c.name).order_by(events.c.id)).scalars())
    assert "Scenario Entered" in names and names.count("Message Queued") == 2
    assert names[-1] == "Scenario Exited"


def test_send_falls_back_to_the_next_channel(engine: sa.Engine) -> None:
    """No push subscription: the push step is skipped and the SMS fallback is queued."""
    (cid,) = _setup(engine)
    with writing(engine) as conn:
        conn.execute(customers.update().where(customers.c.id == cid).values(phone="+79161234567"))
        set_consents(
            conn,
            [
                ConsentChange(cid, "push", "subscribed", "test", T0),
                ConsentChange(cid, "sms", "subscribed", "test", T0),
            ],
        )
        for channel in ("push", "sms"):
            create_template(
                conn,
                name=f"hello-{channel}",
                channel=channel,
                kind="text",
                variants={"ru": {"subject": "Привет", "body": f"Привет по {channel}"}},
                now=T0,
            )
    _scenario(
        engine,
        """
name: hello
trigger: {event: Go}
steps:
  - {id: hi, send: {template: hello-push, fallback: [{channel: sms, template: hello-sms}]}}
""",
    )
    eng = _engine(engine)
    _react(engine, eng, T0, Observed(cid, "Go", {}))
    with engine.connect() as conn:
        rows = {r.idempotency_key: r for r in conn.execute(sa.select(outbox).order_by(outbox.c.id))}
    assert rows["run:1:step:hi"].status == "skipped"
    sms = rows["run:1:step:hi:fallback:sms"]
    assert (sms.status, sms.channel, sms.recipient) == ("queued", "sms", "+79161234567")
    assert sms.body_text == "Привет по sms"


WELCOME = """
name: welcome
trigger: {event: Signed Up}
entry: {mode: once}
exit_on: [{event: Unsubscribed}]
goal: {event: Order Completed, within_days: 7}
steps:
  - {id: hello, send: {template: cart}}
"""


def _statuses(engine: sa.Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(
            conn.execute(sa.select(scenario_runs.c.customer_id, scenario_runs.c.status)).all()
        )


def test_a_finished_run_converts_on_its_versions_goal_within_its_window(
    engine: sa.Engine,
) -> None:
    early, late, other = _setup(engine, 3)
    sid = _scenario(engine, WELCOME)
    eng = _engine(engine)
    for cid in (early, late, other):
        _react(engine, eng, T0, Observed(cid, "Signed Up", {}))
    assert set(_statuses(engine).values()) == {"done"}  # sent, and the scenario ended
    # The current version allows one day; the runs started on version 1, which allows 7.
    with writing(engine) as conn:
        update_scenario(conn, sid, WELCOME.replace("within_days: 7", "within_days: 1"), T0)
    day3 = T0 + timedelta(days=3)
    # Another watched event (an exit rule's) changes nothing in a finished run.
    assert _react(engine, eng, day3, Observed(early, "Unsubscribed", {})) == []
    assert _statuses(engine)[early] == "done"
    events = _react(engine, eng, day3, Observed(early, "Order Completed", {}))
    assert [(e[0], e[1]) for e in events] == [(early, "Scenario Converted")]
    # Past version 1's window: no conversion; and a buyer converts only their own run.
    _react(engine, eng, T0 + timedelta(days=8), Observed(late, "Order Completed", {}))
    assert _statuses(engine) == {early: "converted", late: "done", other: "done"}
