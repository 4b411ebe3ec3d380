"""Per-step statistics and the journey map on a small scripted journey, exact to the run,
on SQLite and PostgreSQL: sends, skips, branches, a split with a control group, an exit
event, goals inside and outside the window, message outcomes, and a start-time cohort."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from rapport.clock import SimulatedClock
from rapport.messaging.channels.base import InMemoryBackend
from rapport.messaging.engagement import message_event
from rapport.messaging.outbox import CLICKED, DELIVERED, OPENED
from rapport.messaging.policy import save_policy
from rapport.messaging.templates.store import create_template
from rapport.pipeline import Pipeline
from rapport.scenarios.model import parse_scenario
from rapport.scenarios.stats import scenario_stats, summaries
from rapport.scenarios.steps import _bucket
from rapport.scenarios.store import all_scenarios, create_scenario, get_scenario
from rapport.store.engine import writing
from rapport.worker import ScenarioLoop, dispatcher_for
from tests.conftest import T0, basic, bearer
from tests.shop_helpers import identify

JOURNEY = """
name: journey
trigger: {event: Signed Up}
goal: {event: Order Completed, within_days: 7}
exit_on: [{event: Account Closed}]
steps:
  - {id: hello, send: {template: hi}}
  - {id: pause, wait: {days: 1}}
  - {id: opened, branch: {outcome: opened, step: hello, then: ab, else: nudge}}
  - {id: nudge, send: {template: hi}, next: bye}
  - {id: ab, split: {control: 50, paths: [{name: A, weight: 1, next: offer}]}}
  - {id: offer, send: {template: hi}}
  - {id: bye, exit: true}
"""


def _identify(client: Any, key: str, user: str, consent: bool = True) -> None:
    traits: dict[str, Any] = {"email": f"{user}@example.com"}
    if consent:
        traits["consents"] = {"email": "subscribed"}
    r = client.post("/v1/identify", json={"userId": user, "traits": traits}, headers=basic(key))
    assert r.status_code == 200, r.text


def _track(client: Any, key: str, user: str, event: str, **props: Any) -> None:
    r = client.post(
        "/v1/track", json={"userId": user, "event": event, "properties": props}, headers=basic(key)
    )
    assert r.status_code == 200, r.text


def _outcome(app: Any, key: str, name: str) -> None:
    """What the tracking pixel, a click or a provider's webhook records."""
    pipeline = app.state.pipeline
    with writing(pipeline.engine) as conn:
        _, events = message_event(conn, key, name)
        pipeline.record_many(conn, events)


def _script(client: Any, app: Any, write_key: str, secret_key: str, clock: SimulatedClock) -> None:
    """Six sign-ups; customers 1 and 2 draw control at the split, 3 to 6 path A."""
    assert [_bucket("split", 1, "ab", c) < 50 for c in (1, 3)] == [True, False]
    with writing(app.state.engine) as conn:
        create_template(
            conn,
            name="hi",
            channel="email",
            kind="text",
            variants={"en": {"subject": "Hi", "body": "Hello"}},
            now=T0,
        )
    r = client.post(
        "/api/scenarios?status=active",
        content=JOURNEY,
        headers=bearer(secret_key) | {"content-type": "application/yaml"},
    )
    assert r.status_code == 201, r.text
    for i in range(1, 7):
        _identify(client, write_key, f"u{i}", consent=i != 6)  # u6 gave no consent
    for i in range(1, 7):
        _track(client, write_key, f"u{i}", "Signed Up")
    dispatcher_for(app.state.pipeline, {"email": InMemoryBackend("email")}).run_once()
    for run in (1, 2, 3):
        _outcome(app, f"run:{run}:step:hello", DELIVERED)
    for run in (1, 1, 3):  # two opens of one message are one open
        _outcome(app, f"run:{run}:step:hello", OPENED)
    _outcome(app, "run:3:step:hello", CLICKED)
    clock.advance(timedelta(hours=2))
    _track(client, write_key, "u2", "Account Closed")  # ends u2's run while it waits
    clock.advance(timedelta(days=1))
    assert ScenarioLoop(app.state.pipeline).run_once() == 5
    clock.advance(timedelta(days=1))
    _track(client, write_key, "u1", "Order Completed", order_id="o1")  # control, in time
    _track(client, write_key, "u3", "Order Completed", order_id="o3")  # path A, in time
    _track(client, write_key, "u5", "Order Completed", order_id="o5")  # nudged, in time
    clock.advance(timedelta(days=8))
    _track(client, write_key, "u4", "Order Completed", order_id="o4")  # too late
    _track(client, write_key, "u7", "Order Completed", order_id="o7")  # never in it
    _identify(client, write_key, "u7")
    _track(client, write_key, "u7", "Signed Up")  # a later cohort, still waiting


def _steps(figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in figures["steps"]}


def test_stats_of_a_scripted_journey(
    client: Any, app: Any, secret_key: str, write_key: str, clock: SimulatedClock
) -> None:
    _script(client, app, write_key, secret_key, clock)
    r = client.get("/api/scenarios/1/stats", headers=bearer(secret_key))
    assert r.status_code == 200, r.text
    figures = r.json()
    assert figures["runs"] == {
        "entered": 7,
        "live": 1,
        "done": 2,  # u4 (converted too late), u6
        "exited": 1,  # u2
        "control": 1,  # u1
        "failed": 0,
        "converted": 2,  # u3, u5
    }
    assert figures["conversion"] == 2 / 7
    steps = _steps(figures)
    assert [s["id"] for s in figures["steps"]] == [
        "hello",
        "pause",
        "opened",
        "nudge",
        "ab",
        "offer",
        "bye",
    ]
    hello = steps["hello"]
    assert (hello["kind"], hello["entered"], hello["sent"], hello["skipped"]) == ("send", 7, 6, 1)
    assert hello["skipped_by_reason"] == {"no consent for email": 1}
    assert hello["messages"] == {
        "waiting": 1,  # u7's, not dispatched yet
        "sent": 5,
        "bounced": 0,
        "failed": 0,
        "skipped": 1,
    }
    assert (hello["delivered"], hello["opened"], hello["clicked"]) == (3, 2, 1)
    assert (hello["open_rate"], hello["click_rate"], hello["click_to_open_rate"]) == (
        2 / 5,
        1 / 5,
        1 / 2,
    )
    pause = steps["pause"]
    assert (pause["entered"], pause["waiting_now"], pause["outcomes"]) == (7, 1, {"waiting": 7})
    opened = steps["opened"]
    # u2 left while waiting before it: not counted as having reached it
    assert (opened["entered"], opened["paths"], opened["exited"]) == (
        5,
        {"then": 2, "else": 3},
        1,
    )
    nudge = steps["nudge"]
    assert (nudge["entered"], nudge["sent"], nudge["skipped"]) == (3, 2, 1)
    assert nudge["skipped_by_reason"] == {"no consent for email": 1}
    assert nudge["messages"]["waiting"] == 2 and nudge["opened"] == 0
    ab = steps["ab"]
    assert (ab["entered"], ab["paths"]) == (2, {"A": 1, "control": 1})
    assert (steps["offer"]["entered"], steps["offer"]["sent"]) == (1, 1)
    assert (steps["bye"]["entered"], steps["bye"]["outcomes"]) == (4, {"done": 4})
    assert all(s["failed"] == 0 and s["deferred"] == 0 for s in figures["steps"])
    # The control group is measured like the path: by the goal event within 7 days.
    assert figures["groups"] == {
        "ab": {
            "A": {"entered": 1, "converted": 1, "conversion": 1.0},
            "control": {"entered": 1, "converted": 1, "conversion": 1.0},
        }
    }


def test_stats_of_a_cohort(
    client: Any, app: Any, secret_key: str, write_key: str, clock: SimulatedClock
) -> None:
    _script(client, app, write_key, secret_key, clock)
    auth = bearer(secret_key)
    first_day = {"until": (T0 + timedelta(days=1)).isoformat()}
    figures = client.get("/api/scenarios/1/stats", params=first_day, headers=auth).json()
    assert (figures["runs"]["entered"], figures["runs"]["live"]) == (6, 0)
    hello = _steps(figures)["hello"]
    assert (hello["entered"], hello["sent"], hello["messages"]["waiting"]) == (6, 5, 0)
    assert (hello["delivered"], hello["opened"], hello["clicked"]) == (3, 2, 1)
    later = {"since": (T0 + timedelta(days=5)).isoformat().replace("+00:00", "")}  # naive: UTC
    figures = client.get("/api/scenarios/1/stats", params=later, headers=auth).json()
    assert figures["runs"] == {
        "entered": 1,
        "live": 1,
        "done": 0,
        "exited": 0,
        "control": 0,
        "failed": 0,
        "converted": 0,
    }
    steps = _steps(figures)
    assert (steps["hello"]["sent"], steps["hello"]["messages"]["waiting"]) == (1, 1)
    assert steps["hello"]["opened"] == 0 and steps["pause"]["waiting_now"] == 1
    assert steps["opened"]["entered"] == 0
    assert figures["groups"]["ab"]["A"] == {"entered": 0, "converted": 0, "conversion": None}


def test_graph(
    client: Any, app: Any, secret_key: str, write_key: str, clock: SimulatedClock
) -> None:
    _script(client, app, write_key, secret_key, clock)
    r = client.get("/api/scenarios/1/graph", headers=bearer(secret_key))
    assert r.status_code == 200, r.text
    graph = r.json()
    assert (graph["start"], graph["version"], graph["trigger"]) == (
        "hello",
        1,
        {"event": "Signed Up"},
    )
    assert [(n["id"], n["kind"], n["stats"]["entered"]) for n in graph["nodes"]] == [
        ("hello", "send", 7),
        ("pause", "wait", 7),
        ("opened", "branch", 5),
        ("nudge", "send", 3),
        ("ab", "split", 2),
        ("offer", "send", 1),
        ("bye", "exit", 4),
    ]
    assert graph["nodes"][0]["definition"] == {
        "send": {"template": "hi", "fallback": [], "transactional": False}
    }
    assert [(e["from"], e["to"], e["label"], e["count"]) for e in graph["edges"]] == [
        ("hello", "pause", "next", None),
        ("pause", "opened", "next", None),
        ("opened", "ab", "then", 2),
        ("opened", "nudge", "else", 3),
        ("nudge", "bye", "next", None),
        ("ab", "offer", "A", 1),
        ("ab", None, "control", 1),
        ("offer", "bye", "next", None),
    ]
    assert graph["runs"]["entered"] == 7


def test_graph_of_an_older_version_and_removed_steps(
    client: Any, app: Any, secret_key: str, write_key: str, clock: SimulatedClock
) -> None:
    _script(client, app, write_key, secret_key, clock)
    auth = bearer(secret_key)
    shorter = JOURNEY.replace("  - {id: pause, wait: {days: 1}}\n", "").replace(
        "then: ab, else: nudge", "then: bye, else: bye"
    )
    r = client.put(
        "/api/scenarios/1", content=shorter, headers=auth | {"content-type": "text/yaml"}
    )
    assert r.status_code == 200, r.text
    figures = client.get("/api/scenarios/1/stats", headers=auth).json()
    removed = [s for s in figures["steps"] if s.get("removed")]
    assert [(s["id"], s["entered"], s["kind"]) for s in removed] == [("pause", 7, None)]
    old = client.get("/api/scenarios/1/graph", params={"version": 1}, headers=auth).json()
    assert old["version"] == 1 and "pause" in [n["id"] for n in old["nodes"]]
    new = client.get("/api/scenarios/1/graph", headers=auth).json()
    assert new["version"] == 2 and "pause" not in [n["id"] for n in new["nodes"]]


def test_list_and_detail_count_live_runs(
    client: Any, app: Any, secret_key: str, write_key: str, clock: SimulatedClock, engine: sa.Engine
) -> None:
    _script(client, app, write_key, secret_key, clock)
    auth = bearer(secret_key)
    (listed,) = client.get("/api/scenarios", headers=auth).json()["scenarios"]
    assert listed["live_runs"] == 1
    detail = client.get("/api/scenarios/1", headers=auth).json()
    assert (detail["live_runs"], detail["runs"]) == (1, 7)
    assert detail["versions"][0] | {"created_at": None} == {
        "version": 1,
        "created_at": None,
        "live_runs": 1,
        "runs": 7,
    }


def test_deferred_and_failed_steps(engine: sa.Engine, clock: SimulatedClock) -> None:
    """Quiet hours defer a send (the run goes on); a loop through a window that is always
    open spins until the engine stops the run as failed."""
    pipeline = Pipeline(engine, clock)
    with writing(engine) as conn:
        create_template(
            conn,
            name="hi",
            channel="email",
            kind="text",
            variants={"en": {"subject": "Hi", "body": "Hello"}},
            now=T0,
        )
        quiet = {"start": "11:00", "end": "14:00", "channels": ["email"]}
        save_policy(conn, {"quiet_hours": quiet}, T0)
        create_scenario(
            conn,
            """
name: spin
trigger: {event: Go}
steps:
  - {id: hi, send: {template: hi}}
  - {id: spin, wait: {until_window: "00:00-23:59"}, next: spin}
""",
            T0,
            status="active",
        )
    cid = identify(pipeline, "u1", email="u1@example.com", consents={"email": "subscribed"})
    with writing(engine) as conn:
        pipeline.record(conn, cid, "Go", {})
    with engine.connect() as conn:
        found = get_scenario(conn, 1)
        figures = scenario_stats(conn, found.id, found.parsed())
    steps = _steps(figures)
    assert (steps["hi"]["entered"], steps["hi"]["deferred"], steps["hi"]["sent"]) == (1, 1, 0)
    assert steps["hi"]["messages"]["waiting"] == 1  # queued for the end of the quiet hours
    assert (steps["spin"]["entered"], steps["spin"]["failed"]) == (1, 1)
    assert figures["runs"]["failed"] == 1 and figures["conversion"] == 0
    assert figures["groups"] == {}


def test_summaries_count_as_the_full_report_does(
    client: Any, app: Any, secret_key: str, write_key: str, clock: SimulatedClock
) -> None:
    """The list's grouped figures equal the full report's, for every window."""
    _script(client, app, write_key, secret_key, clock)
    windows = [
        (T0 - timedelta(days=1), T0 + timedelta(days=1)),
        (T0 + timedelta(days=5), T0 + timedelta(days=30)),
        (T0 - timedelta(days=1), T0 + timedelta(days=30)),
    ]
    with app.state.engine.connect() as conn:
        stored = all_scenarios(conn)
        for since, until in windows:
            counted = summaries(conn, since, until)
            for found in stored:
                full = scenario_stats(
                    conn, found.id, parse_scenario(found.definition), since, until
                )
                row = counted.get(found.id, {"entered": 0, "sent": 0, "converted": 0})
                assert row["entered"] == full["runs"]["entered"]
                assert row["converted"] == full["runs"]["converted"]
                assert row["sent"] == sum(step["sent"] for step in full["steps"])
    assert any(row["entered"] for row in counted.values())
