"""Dry runs on SQLite and PostgreSQL: stored history replayed through a scenario reports
who would have got which message when, what the policy held back, and leaves the store,
the live runs and live traffic exactly as they were."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from rapport.cli import app as cli
from rapport.clock import SimulatedClock
from rapport.errors import InvalidInput
from rapport.ingest.messages import parse_message
from rapport.messaging.outbox import QueuedMessage, enqueue
from rapport.messaging.policy import save_policy
from rapport.messaging.templates.store import create_template
from rapport.pipeline import Pipeline
from rapport.scenarios.dry_run import DryRunError, DryRunReport, _refused_write, dry_run
from rapport.scenarios.dry_run_sandbox import forbid_shared_writes, sandbox, shadow_tables
from rapport.scenarios.engine import Engine, Observed
from rapport.scenarios.index import ScenarioIndex
from rapport.scenarios.steps import StepContext
from rapport.scenarios.store import ScenarioNotFound, create_scenario
from rapport.segments.definitions import create_segment
from rapport.store.engine import create_engine, writing
from rapport.store.tables import customers, events, outbox, scenario_runs
from tests.conftest import T0
from tests.helpers import table_counts

D = T0 - timedelta(days=10)  # 2026-02-19 12:00 UTC: the history happened then
START, END = D - timedelta(hours=1), D + timedelta(days=4)

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

WELCOME = """
name: welcome
trigger: {event: Signed Up}
exit_on: [{event: Order Completed}]
steps:
  - {id: hello, send: {template: welcome}}
  - {id: later, wait: {days: 1}}
  - {id: opened, branch: {outcome: opened, step: hello, then: window, else: window}}
  - {id: window, wait: {until_window: "09:00-18:00"}}
  - {id: local, branch: {if: {attribute: city, op: eq, value: Kazan}, then: tips, else: tips}}
  - {id: tips, send: {template: welcome}}
  - {id: call, action: {task: Call the new customer}}
"""


def _at(hours: float = 0, days: float = 0) -> datetime:
    return D + timedelta(hours=hours, days=days)


def _ingest(pipeline: Pipeline, raw: dict[str, Any], at: datetime) -> None:
    """One message as an SDK would have sent it then: the clock is set to its time."""
    assert isinstance(pipeline.clock, SimulatedClock)
    pipeline.clock.set(at)
    message = parse_message(
        raw | {"timestamp": at.isoformat()},
        where="message",
        received_at=at,
        phone_region="RU",
        max_bytes=32 * 1024,
    )
    pipeline.ingest([message])


def _person(pipeline: Pipeline, user: str, at: datetime, consent: str = "subscribed") -> None:
    traits = {
        "email": f"{user}@example.com",
        "first_name": user.title(),
        "consents": {"email": consent},
    }
    _ingest(pipeline, {"type": "identify", "userId": user, "traits": traits}, at)


def _track(pipeline: Pipeline, user: str, event: str, at: datetime, **props: Any) -> None:
    _ingest(pipeline, {"type": "track", "userId": user, "event": event, "properties": props}, at)


def _cart(pipeline: Pipeline, user: str, cart: str, at: datetime) -> None:
    _track(pipeline, user, "Product Added", at, cart_id=cart, product_id="p1", price=10)


def _order(
    pipeline: Pipeline, user: str, order: str, at: datetime, cart: str | None = None
) -> None:
    props: dict[str, Any] = {"order_id": order, "total": 10}
    if cart is not None:
        props["cart_id"] = cart
    _track(pipeline, user, "Order Completed", at, **props)


def _shop(engine: sa.Engine) -> Pipeline:
    """A fortnight of history, stored through the pipeline while no scenario was live.

    ann leaves a cart; bob orders his an hour later (before any reminder); cid orders
    three hours later (after the first reminder); dan has unsubscribed; eve's carts fall
    outside the range. ann and bob sign up (the welcome series); bob orders again.
    """
    pipeline = Pipeline(engine, SimulatedClock(D - timedelta(days=7)))
    with writing(engine) as conn:
        for name in ("cart", "welcome"):
            create_template(
                conn,
                name=name,
                channel="email",
                kind="text",
                variants={"en": {"subject": name + ", {{ customer.first_name }}", "body": "Hi"}},
                now=D - timedelta(days=7),
            )
    for user in ("ann", "bob", "cid", "eve"):
        _person(pipeline, user, D - timedelta(days=7))
    _person(pipeline, "dan", D - timedelta(days=7), consent="unsubscribed")
    _cart(pipeline, "eve", "e0", _at(days=-5))
    _cart(pipeline, "ann", "a1", _at(0))
    _track(pipeline, "ann", "Signed Up", _at(0))
    _cart(pipeline, "bob", "b1", _at(0))
    _order(pipeline, "bob", "o-b1", _at(1), cart="b1")
    _cart(pipeline, "cid", "c1", _at(0.5))
    _order(pipeline, "cid", "o-c1", _at(3), cart="c1")
    _cart(pipeline, "dan", "d1", _at(1))
    _track(pipeline, "bob", "Signed Up", _at(days=2))
    _order(pipeline, "bob", "o-b2", _at(6, days=2))
    _cart(pipeline, "eve", "e2", _at(days=5))
    return pipeline


def _saved(engine: sa.Engine, text: str, status: str = "draft") -> int:
    with writing(engine) as conn:
        return create_scenario(conn, text, D, status).id


def _messages(report: DryRunReport) -> list[tuple[str, str, str, datetime]]:
    return [(report.label(m.customer_id), m.step, m.outcome, m.at) for m in report.messages]


def _url(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_abandoned_cart_lists_who_would_have_got_what_and_when(engine: sa.Engine) -> None:
    _shop(engine)
    _saved(engine, CART)
    before = table_counts(engine)
    seen: list[tuple[int, int]] = []
    report = dry_run(
        engine, "abandoned-cart", START, END, progress=lambda d, t: seen.append((d, t))
    )
    assert table_counts(engine) == before  # nothing kept, not even the runs
    assert sorted(_messages(report), key=lambda m: (m[0], m[3])) == [
        ("ann@example.com", "first", "sent", _at(2)),
        ("ann@example.com", "second", "sent", _at(26)),
        ("cid@example.com", "first", "sent", _at(2.5)),
        ("dan@example.com", "first", "skipped", _at(3)),
        ("dan@example.com", "second", "skipped", _at(27)),
    ]
    # bob's order came before the reminder: he entered, converted, and got nothing
    statuses = {report.label(r.customer_id): r.status for r in report.runs}
    assert statuses == {
        "ann@example.com": "done",
        "bob@example.com": "converted",
        "cid@example.com": "converted",
        "dan@example.com": "done",
    }
    assert report.converted == 2
    assert report.skipped_by_reason() == {"unsubscribed from email": 2}
    sent = next(m for m in report.messages if m.outcome == "sent")
    assert (sent.template, sent.subject, sent.channel) == ("cart", "cart, Ann", "email")
    assert report.by_step() == [("first", "email", 2, 0, 1), ("second", "email", 1, 0, 1)]
    assert seen[-1] == (report.events, report.events) and report.events == 7
    doc = report.to_json()
    assert doc["summary"]["messages"] == {"sent": 3, "deferred": 0, "skipped": 2}
    assert [c["label"] for c in doc["customers"]][:2] == ["ann@example.com", "bob@example.com"]
    json.dumps(doc)  # plain JSON through and through


def test_an_unsaved_definition_with_actions(engine: sa.Engine) -> None:
    _shop(engine)
    before = table_counts(engine)
    report = dry_run(engine, _yaml(WELCOME), START, END)
    assert table_counts(engine) == before
    assert not report.saved and report.scenario_id is None
    assert _messages(report) == [
        ("ann@example.com", "hello", "sent", _at(0)),
        ("ann@example.com", "tips", "sent", _at(24)),
        ("bob@example.com", "hello", "sent", _at(days=2)),  # he ordered before the tips
    ]
    assert [(report.label(a.customer_id), a.action, a.at) for a in report.actions] == [
        ("ann@example.com", "task", _at(24))
    ]
    assert report.exits_by_reason() == {"exit event Order Completed": 1}
    # branches read the store (read-only in a dry run); outcomes are unknown: "else"
    assert report.steps["opened"]["else"] == 1 and report.steps["local"] == {"else": 1}
    # its references are checked against the store, with their paths
    broken = WELCOME.replace("template: welcome}", "template: nope}")
    with pytest.raises(InvalidInput) as err:
        dry_run(engine, _yaml(broken), START, END)
    assert [p.where for p in err.value.problems] == [
        "scenario.steps[0].send.template",
        "scenario.steps[5].send.template",
    ]
    assert table_counts(engine) == before


def _yaml(text: str) -> dict[str, Any]:
    import yaml

    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict)
    return loaded


def test_caps_count_real_history_and_quiet_hours_defer(engine: sa.Engine) -> None:
    pipeline = _shop(engine)
    _person(pipeline, "fay", D - timedelta(days=7))
    _cart(pipeline, "fay", "f1", _at(8))  # 20:00 UTC: the reminder falls in quiet hours
    with writing(engine) as conn:
        save_policy(
            conn,
            {
                "channels": {"email": {"cap": {"max_messages": 1, "days": 1}}},
                "quiet_hours": {"start": "21:00", "end": "09:00", "channels": ["email"]},
            },
            D,
        )
        ann = conn.execute(
            sa.select(customers.c.id).where(customers.c.email == "ann@example.com")
        ).scalar_one()
        # a campaign really reached ann an hour after her cart
        message = QueuedMessage(
            "campaign:1:customer:1", "email", "ann@example.com", "Sale", ann, campaign_id=1
        )
        enqueue(conn, [message], _at(1))
    _saved(engine, CART)
    before = table_counts(engine)
    report = dry_run(engine, "abandoned-cart", START, END)
    assert table_counts(engine) == before
    found = {(report.label(m.customer_id), m.step): m for m in report.messages}
    first = found["ann@example.com", "first"]
    assert (first.outcome, first.reason) == ("skipped", "frequency cap: 1 email per 1 d")
    assert found["ann@example.com", "second"].outcome == "sent"
    fay = [found["fay@example.com", step] for step in ("first", "second")]
    assert [(m.outcome, m.at, m.send_at) for m in fay] == [
        ("deferred", _at(10), _at(21)),
        ("deferred", _at(34), _at(45)),
    ]


def test_segment_moves_on_the_timeline_trigger(engine: sa.Engine) -> None:
    pipeline = Pipeline(engine, SimulatedClock(D))
    with writing(engine) as conn:
        create_segment(conn, "kazan", "", {"attribute": "city", "op": "eq", "value": "Kazan"}, D)
        create_template(
            conn,
            name="hello",
            channel="email",
            kind="text",
            variants={"en": {"subject": "Привет, Казань", "body": "Hi"}},
            now=D,
        )
    for i, (user, city) in enumerate([("ann", "Kazan"), ("bob", "Omsk"), ("cid", "Kazan")]):
        traits = {"email": f"{user}@example.com", "city": city, "consents": {"email": "subscribed"}}
        _ingest(pipeline, {"type": "identify", "userId": user, "traits": traits}, _at(i))
    _saved(
        engine, "name: kazan\ntrigger: {segment: kazan}\nsteps: [{id: hi, send: {template: hello}}]"
    )
    report = dry_run(engine, "kazan", START, END)
    assert _messages(report) == [
        ("ann@example.com", "hi", "sent", _at(0)),
        ("cid@example.com", "hi", "sent", _at(2)),
    ]
    limited = dry_run(engine, "kazan", START, END, limit_customers=1)
    assert _messages(limited) == _messages(report)[:1]
    assert any("first 1 customers" in c for c in limited.caveats)


def test_live_runs_and_live_traffic_are_left_alone(engine: sa.Engine) -> None:
    _shop(engine)
    _saved(engine, CART)
    # a live scenario with a run of ann's that fell due long ago and awaits a worker
    live_id = _saved(engine, CART.replace("abandoned-cart", "live-cart"), status="active")
    with writing(engine) as conn:
        ann = conn.execute(
            sa.select(customers.c.id).where(customers.c.email == "ann@example.com")
        ).scalar_one()
        Engine(ScenarioIndex(ttl=0), StepContext()).react(
            conn, [Observed(ann, "Product Added", {"cart_id": "a1"})], _at(0)
        )
    with engine.connect() as conn:
        live_before = conn.execute(sa.select(scenario_runs)).all()
    assert [(r.scenario_id, r.step) for r in live_before] == [(live_id, "first")]
    # live ingest on its own engine, with short lock waits: blocked, it would fail, not hang
    postgres = engine.dialect.name == "postgresql"
    waits = {"connect_args": {"options": "-c lock_timeout=5000"}} if postgres else {}
    other = create_engine(_url(engine), **waits)
    stored: list[int] = []

    def meanwhile(done: int, total: int) -> None:
        if done < total:
            return
        # the dry run has made every write it makes, and holds its transaction open
        _order(Pipeline(other, SimulatedClock(T0)), "ann", "o-live", T0)
        with other.connect() as conn:
            order = events.c.properties["order_id"].as_string()
            stored.append(
                conn.execute(sa.select(sa.func.count()).where(order == "o-live")).scalar_one()
            )

    try:
        report = dry_run(engine, "abandoned-cart", START, END, progress=meanwhile)
    finally:
        other.dispose()
    assert stored == [1]  # committed while the dry run was under way
    assert len(report.messages) == 5  # neither the live run nor the live order is in it
    with engine.connect() as conn:
        live_after = conn.execute(sa.select(scenario_runs)).all()
        keys = list(conn.execute(sa.select(outbox.c.idempotency_key)).scalars())
    assert live_after == live_before  # not advanced, not locked, not touched
    assert keys == []


def test_the_sandbox_refuses_writes_to_shared_tables(engine: sa.Engine) -> None:
    before = table_counts(engine)
    with sandbox(engine) as conn:
        shadow_tables(conn, T0)
        forbid_shared_writes(conn)
        conn.execute(  # the shadow outbox takes rows
            outbox.insert().values(
                idempotency_key="k",
                channel="email",
                recipient="a@example.com",
                body_text="",
                headers={},
                data={},
                fallback=[],
                status="queued",
                next_attempt_at=T0,
                created_at=T0,
                updated_at=T0,
            )
        )
        assert conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one() == 1
        with pytest.raises(sa.exc.DBAPIError) as err:
            conn.execute(customers.insert().values(created_at=T0, updated_at=T0, traits={}))
        assert _refused_write(err.value)  # what dry_run turns into a DryRunError
    assert table_counts(engine) == before


def test_bad_requests_say_why_and_store_nothing(engine: sa.Engine) -> None:
    _shop(engine)
    _saved(engine, CART)
    before = table_counts(engine)
    with pytest.raises(DryRunError, match="range is empty"):
        dry_run(engine, "abandoned-cart", END, START)
    with pytest.raises(ScenarioNotFound):
        dry_run(engine, "nope", START, END)
    with pytest.raises(DryRunError, match="the range has 7 events to replay beyond the limit of 3"):
        dry_run(engine, "abandoned-cart", START, END, max_events=3)
    with pytest.raises(DryRunError, match="these customers have events to replay beyond"):
        dry_run(engine, "abandoned-cart", START, END, max_events=3, limit_customers=2)
    assert (
        len(dry_run(engine, "abandoned-cart", START, END, max_events=3, limit_customers=1).runs)
        == 1
    )
    birthday = "name: bday\ntrigger: {date: birthday}\nsteps: [{id: hi, send: {template: cart}}]"
    with pytest.raises(DryRunError, match="date triggers are not replayed"):
        dry_run(engine, _yaml(birthday), START, END)
    assert table_counts(engine) == before


def test_cli(engine: sa.Engine, tmp_path: Any) -> None:
    _shop(engine)
    sid = _saved(engine, CART, status="archived")  # any status can be tried
    before = table_counts(engine)
    runner = CliRunner()
    url = ["--database-url", _url(engine)]
    out = tmp_path / "report.json"
    days = ["--from", f"{START:%Y-%m-%d}", "--to", f"{END:%Y-%m-%d}"]
    result = runner.invoke(
        cli, ["scenarios", "dry-run", "abandoned-cart", *days, "--json", str(out), *url]
    )
    assert result.exit_code == 0, result.output
    assert "Nothing was sent or stored" in result.output
    assert "ann@example.com" in result.output and "unsubscribed from email" in result.output
    doc = json.loads(out.read_text())
    assert doc["summary"]["messages"] == {"sent": 3, "deferred": 0, "skipped": 2}
    assert doc["scenario"] == {"id": sid, "name": "abandoned-cart", "version": 1, "saved": True}
    definition = tmp_path / "welcome.yaml"
    definition.write_text(WELCOME)
    result = runner.invoke(cli, ["scenarios", "dry-run", "--file", str(definition), *days, *url])
    assert result.exit_code == 0, result.output
    assert "welcome" in result.output and "task" in result.output
    assert table_counts(engine) == before

    def fails(*args: str) -> str:
        result = runner.invoke(cli, ["scenarios", "dry-run", *args, *url])
        assert result.exit_code == 1, result.output
        return " ".join(result.output.split())

    assert "no scenario named 'nope'" in fails("nope", *days)
    assert "is not before --to" in fails(
        "abandoned-cart", "--from", "2026-02-20", "--to", "2026-02-10"
    )
    assert "'2026-02-31' is neither a day" in fails("abandoned-cart", "--from", "2026-02-31")
    assert "one of them" in fails("--from", "2026-02-01")
    assert "one of them" in fails("abandoned-cart", "--file", str(definition), *days)
    definition.write_text(WELCOME.replace("template: welcome}", "template: nope}", 1))
    assert "scenario.steps[0].send.template: no template 'nope'" in fails(
        "--file", str(definition), *days
    )
    assert table_counts(engine) == before
