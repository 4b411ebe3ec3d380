"""A worker's claim advances its runs together: the sends that runs reach at the same step
are decided, composed and queued as one group. What each run does must not change for
it — refusals stay per customer, a customer with two runs at one step is capped as if
they came one after the other — and waits that timed out are still claimed while active
runs are backlogged."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from rapport.clock import SimulatedClock
from rapport.customers.consents import ConsentChange, set_consents
from rapport.messaging.policy import save_policy
from rapport.messaging.templates.store import create_template
from rapport.pipeline import Pipeline
from rapport.scenarios.engine import Engine, Observed
from rapport.scenarios.index import ScenarioIndex
from rapport.scenarios.steps import StepContext
from rapport.scenarios.store import create_scenario, set_status
from rapport.store.engine import writing
from rapport.store.tables import customers, outbox, scenario_runs, scenario_step_log
from tests.conftest import T0

CART = """
name: cart
trigger: {event: Product Added}
entity_key: cart_id
entry: {mode: every_time}
steps:
  - {id: pause, wait: {hours: 1}}
  - {id: remind, send: {template: cart}}
"""


def _customer(conn: sa.Connection, name: str, email: str | None) -> int:
    return int(
        conn.execute(
            customers.insert()
            .values(created_at=T0, updated_at=T0, traits={}, first_name=name, email=email)
            .returning(customers.c.id)
        ).scalar_one()
    )


def _engine(engine: sa.Engine) -> Engine:
    return Engine(ScenarioIndex(ttl=0), StepContext(recorder=Pipeline(engine, SimulatedClock(T0))))


def test_a_group_of_sends_decides_for_each_customer(engine: sa.Engine) -> None:
    with writing(engine) as conn:
        create_template(
            conn,
            name="cart",
            channel="email",
            kind="text",
            variants={"en": {"subject": "Your cart", "body": "{{ customer.first_name }}"}},
            now=T0,
        )
        twice = _customer(conn, "Twice", "twice@example.com")
        fine = [_customer(conn, f"Fine{i}", f"fine{i}@example.com") for i in range(3)]
        gone = _customer(conn, "Gone", "gone@example.com")
        mute = _customer(conn, "Mute", None)
        subscribed = [twice, *fine, mute]
        set_consents(conn, [ConsentChange(c, "email", "subscribed", "t", T0) for c in subscribed])
        set_consents(conn, [ConsentChange(gone, "email", "unsubscribed", "t", T0)])
        save_policy(conn, {"channels": {"email": {"cap": {"max_messages": 1, "days": 1}}}}, T0)
        stored = create_scenario(conn, CART, T0)
        set_status(conn, stored.id, "active", T0)
    eng = _engine(engine)
    carts = [(twice, "c1"), (twice, "c2"), *((c, f"f{c}") for c in fine), (gone, "g"), (mute, "m")]
    with writing(engine) as conn:
        eng.react(conn, [Observed(c, "Product Added", {"cart_id": k}) for c, k in carts], T0)
    with writing(engine) as conn:
        n, _ = eng.run_due(conn, T0 + timedelta(hours=2))
    assert n == len(carts)  # one claim, one group

    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(outbox.c.customer_id, outbox.c.status, outbox.c.last_error).order_by(
                outbox.c.id
            )
        ).all()
        sent = conn.execute(
            sa.select(scenario_step_log.c.outcome).where(scenario_step_log.c.step == "remind")
        ).scalars()
        statuses = set(conn.execute(sa.select(scenario_runs.c.status)).scalars())
    by_customer: dict[int, list[tuple[str, str | None]]] = {}
    for cid, status, error in rows:
        by_customer.setdefault(cid, []).append((status, error))
    for c in fine:
        assert by_customer[c] == [("queued", None)]
    # the second cart of the same customer is decided after the first was queued
    assert sorted(s for s, _ in by_customer[twice]) == ["queued", "skipped"]
    assert any("frequency cap" in (e or "") for _, e in by_customer[twice])
    assert by_customer[gone] == [("skipped", "unsubscribed from email")]
    assert by_customer[mute] == [("skipped", "no email address")]
    assert sorted(sent) == ["sent"] * 4 + ["skipped"] * 3
    assert statuses == {"done"}


WAITS = """
name: waits
trigger: {event: Go}
entry: {mode: every_time}
steps:
  - {id: pause, wait: {hours: 1}}
  - {id: later, wait: {days: 1}}
"""

ANSWER = """
name: answer
trigger: {event: Ask}
steps:
  - {id: ask, wait: {event: Answer, timeout: {minutes: 5}}}
  - {id: done, exit: true}
"""


def test_timed_out_waits_are_claimed_beside_a_backlog(engine: sa.Engine) -> None:
    with writing(engine) as conn:
        ids = [_customer(conn, f"C{i}", None) for i in range(30)]
        for text in (WAITS, ANSWER):
            stored = create_scenario(conn, text, T0)
            set_status(conn, stored.id, "active", T0)
    eng = _engine(engine)
    with writing(engine) as conn:
        eng.react(conn, [Observed(c, "Go", {}) for c in ids] + [Observed(ids[0], "Ask", {})], T0)
    with writing(engine) as conn:
        n, _ = eng.run_due(conn, T0 + timedelta(hours=2), limit=10)
    assert n == 11  # ten of the 30 due waits, and the timed-out one beside them
    with engine.connect() as conn:
        outcomes = set(
            conn.execute(
                sa.select(scenario_step_log.c.step, scenario_step_log.c.outcome).where(
                    scenario_step_log.c.step == "ask"
                )
            ).all()
        )
    assert ("ask", "timeout") in outcomes
