"""The scenarios API on SQLite and PostgreSQL: definitions and versions, pause and resume
through the runner, the API trigger, a customer's runs, and every kind of bad input."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from rapport.clock import SimulatedClock
from rapport.messaging.templates.store import create_template
from rapport.store.engine import writing
from rapport.store.tables import events, outbox, scenario_runs
from rapport.worker import ScenarioLoop
from tests.conftest import T0, basic, bearer
from tests.helpers import table_counts

WELCOME: dict[str, Any] = {
    "name": "welcome",
    "trigger": {"event": "Signed Up"},
    "exit_on": [{"event": "Order Completed"}],
    "steps": [
        {"id": "hello", "send": {"template": "hi"}},
        {"id": "later", "wait": {"days": 1}},
        {"id": "again", "send": {"template": "hi"}},
    ],
}

VIP = """
name: vip-call
description: A manager calls when the back office says so.
trigger: {api: true}
entity_key: order_id
entry: {mode: every_time}
steps:
  - {id: hello, send: {template: hi}}
  - {id: later, wait: {days: 1}}
  - {id: again, send: {template: hi}}
"""


def _template(engine: sa.Engine) -> None:
    with writing(engine) as conn:
        create_template(
            conn,
            name="hi",
            channel="email",
            kind="text",
            variants={"en": {"subject": "Hi", "body": "Hello {{ customer.first_name }}"}},
            now=T0,
        )


def _identify(client: Any, write_key: str, user: str) -> None:
    traits = {"email": f"{user}@example.com", "consents": {"email": "subscribed"}}
    r = client.post(
        "/v1/identify", json={"userId": user, "traits": traits}, headers=basic(write_key)
    )
    assert r.status_code == 200, r.text


def _track(client: Any, write_key: str, user: str, event: str, **props: Any) -> None:
    r = client.post(
        "/v1/track",
        json={"userId": user, "event": event, "properties": props},
        headers=basic(write_key),
    )
    assert r.status_code == 200, r.text


def _keys(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(outbox.c.idempotency_key)).scalars())


def _customer_id(client: Any, secret_key: str, user: str) -> int:
    r = client.get("/api/customers", params={"user_id": user}, headers=bearer(secret_key))
    return int(r.json()["customers"][0]["id"])


def test_create_version_and_status(client: Any, secret_key: str, engine: sa.Engine) -> None:
    _template(engine)
    auth = bearer(secret_key)
    r = client.post("/api/scenarios", json={"definition": WELCOME}, headers=auth)
    assert r.status_code == 201, r.text
    made = r.json()
    sid = made["id"]
    assert (made["status"], made["version"], made["live_runs"]) == ("draft", 1, 0)
    assert [v["version"] for v in made["versions"]] == [1]
    assert made["definition"]["steps"][0]["send"]["template"] == "hi"  # stored normalised

    # A new version from the YAML a marketer edited.
    changed = dict(WELCOME, description="Now with a two-day pause")
    changed["steps"] = [*WELCOME["steps"][:1], {"id": "later", "wait": {"days": 2}}]
    r = client.put(
        f"/api/scenarios/{sid}",
        content=yaml.safe_dump(changed),
        headers=auth | {"content-type": "application/yaml"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    assert [v["version"] for v in r.json()["versions"]] == [1, 2]
    r = client.get(f"/api/scenarios/{sid}/versions/1", headers=auth)
    assert r.status_code == 200
    assert r.json()["definition"]["steps"][1]["wait"]["duration"]["days"] == 1
    assert r.json()["version"] == 1 and r.json()["runs"] == 0
    assert client.get(f"/api/scenarios/{sid}/versions/3", headers=auth).status_code == 404

    listed = client.get("/api/scenarios", headers=auth).json()["scenarios"]
    assert [(s["name"], s["status"], s["version"], s["live_runs"]) for s in listed] == [
        ("welcome", "draft", 2, 0)
    ]
    assert listed[0]["description"] == "Now with a two-day pause"
    assert listed[0]["trigger"] == {"event": "Signed Up"}

    # Nothing to pause in a draft; activate, pause, archive, bring back.
    assert client.post(f"/api/scenarios/{sid}/pause", headers=auth).status_code == 409
    for action, status in [
        ("activate", "active"),
        ("activate", "active"),
        ("pause", "paused"),
        ("archive", "archived"),
        ("activate", "active"),
    ]:
        r = client.post(f"/api/scenarios/{sid}/{action}", headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == status
    assert client.post(f"/api/scenarios/{sid}/archive", headers=auth).status_code == 200
    r = client.get("/api/scenarios", params={"status": "active"}, headers=auth)
    assert r.json()["scenarios"] == []
    r = client.get("/api/scenarios", params={"status": "archived"}, headers=auth)
    assert [s["id"] for s in r.json()["scenarios"]] == [sid]

    # The same name again is a conflict, and stores nothing.
    before = table_counts(engine)
    r = client.post("/api/scenarios", json={"definition": WELCOME}, headers=auth)
    assert r.status_code == 409 and "welcome" in r.json()["message"]
    assert table_counts(engine) == before


def test_yaml_create_with_status_and_text_definition(
    client: Any, secret_key: str, engine: sa.Engine
) -> None:
    _template(engine)
    auth = bearer(secret_key)
    r = client.post(
        "/api/scenarios?status=active",
        content=VIP.encode(),
        headers=auth | {"content-type": "application/yaml; charset=utf-8"},
    )
    assert r.status_code == 201, r.text
    assert (r.json()["name"], r.json()["status"]) == ("vip-call", "active")
    # A JSON body may carry the definition as text too.
    r = client.post(
        "/api/scenarios",
        json={"definition": VIP.replace("vip-call", "vip-2"), "status": "paused"},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "paused"


def test_pause_holds_due_runs_and_activate_resumes_them(
    client: Any, app: Any, secret_key: str, write_key: str, engine: sa.Engine, clock: SimulatedClock
) -> None:
    _template(engine)
    auth = bearer(secret_key)
    sid = client.post(
        "/api/scenarios?status=active", json={"definition": WELCOME}, headers=auth
    ).json()["id"]
    _identify(client, write_key, "u1")
    _track(client, write_key, "u1", "Signed Up")
    assert _keys(engine) == ["run:1:step:hello"]
    assert client.get(f"/api/scenarios/{sid}", headers=auth).json()["live_runs"] == 1

    assert client.post(f"/api/scenarios/{sid}/pause", headers=auth).status_code == 200
    _identify(client, write_key, "u2")
    _track(client, write_key, "u2", "Signed Up")  # a paused scenario starts nothing
    loop = ScenarioLoop(app.state.pipeline)
    clock.advance(timedelta(days=2))
    assert loop.run_once() == 0
    assert _keys(engine) == ["run:1:step:hello"]

    assert client.post(f"/api/scenarios/{sid}/activate", headers=auth).status_code == 200
    assert loop.run_once() == 1
    assert _keys(engine) == ["run:1:step:again", "run:1:step:hello"]
    with engine.connect() as conn:
        assert conn.execute(sa.select(scenario_runs.c.status)).scalars().all() == ["done"]


def test_new_version_keeps_runs_in_flight(
    client: Any, app: Any, secret_key: str, write_key: str, engine: sa.Engine, clock: SimulatedClock
) -> None:
    _template(engine)
    auth = bearer(secret_key)
    sid = client.post(
        "/api/scenarios?status=active", json={"definition": WELCOME}, headers=auth
    ).json()["id"]
    _identify(client, write_key, "u1")
    _track(client, write_key, "u1", "Signed Up")
    renamed = dict(WELCOME)
    renamed["steps"] = [*WELCOME["steps"][:2], {"id": "renamed", "send": {"template": "hi"}}]
    r = client.put(f"/api/scenarios/{sid}", json={"definition": renamed}, headers=auth)
    assert r.status_code == 200
    assert [(v["version"], v["live_runs"]) for v in r.json()["versions"]] == [(1, 1), (2, 0)]
    clock.advance(timedelta(days=1, minutes=1))
    assert ScenarioLoop(app.state.pipeline).run_once() == 1
    assert _keys(engine) == ["run:1:step:again", "run:1:step:hello"]  # version 1's step


def test_api_trigger(
    client: Any, app: Any, secret_key: str, write_key: str, engine: sa.Engine, clock: SimulatedClock
) -> None:
    _template(engine)
    auth = bearer(secret_key)
    yaml_auth = auth | {"content-type": "application/yaml"}
    sid = client.post("/api/scenarios?status=active", content=VIP, headers=yaml_auth).json()["id"]
    _identify(client, write_key, "u1")
    cid = _customer_id(client, secret_key, "u1")

    r = client.post(
        f"/api/scenarios/{sid}/runs",
        json={"customer_id": cid, "properties": {"order_id": "o-1", "total": 990}},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    answer = r.json()
    assert answer["started"] is True and answer["run_id"] == 1
    assert (answer["status"], answer["step"]) == ("active", "again")  # waiting a day before it
    assert _keys(engine) == ["run:1:step:hello"]  # queued before the answer
    with engine.connect() as conn:
        names = conn.execute(sa.select(events.c.name).order_by(events.c.id)).scalars().all()
        run = conn.execute(sa.select(scenario_runs)).one()
    assert "Scenario Entered" in names and "Message Queued" in names
    assert run.entity_key == "o-1"
    assert run.context["trigger"] == {
        "name": "API",
        "properties": {"order_id": "o-1", "total": 990},
    }

    # One live run per entity: the same order again starts nothing; another order does.
    r = client.post(
        f"/api/scenarios/{sid}/runs",
        json={"customer_id": cid, "properties": {"order_id": "o-1"}},
        headers=auth,
    )
    assert r.status_code == 200
    assert r.json()["started"] is False and r.json()["run_id"] is None
    r = client.post(
        f"/api/scenarios/{sid}/runs",
        json={"customer_id": cid, "properties": {"order_id": "o-2"}},
        headers=auth,
    )
    assert (r.status_code, r.json()["run_id"]) == (201, 2)

    clock.advance(timedelta(days=1, minutes=1))
    assert ScenarioLoop(app.state.pipeline).run_once() == 2
    assert len(_keys(engine)) == 4

    # Not an API-triggered scenario, or not active: 409, nothing stored.
    other = client.post("/api/scenarios?status=active", json={"definition": WELCOME}, headers=auth)
    before = table_counts(engine)
    r = client.post(
        f"/api/scenarios/{other.json()['id']}/runs", json={"customer_id": cid}, headers=auth
    )
    assert r.status_code == 409 and "trigger" in r.json()["message"]
    client.post(f"/api/scenarios/{sid}/pause", headers=auth)
    before = table_counts(engine)
    r = client.post(
        f"/api/scenarios/{sid}/runs",
        json={"customer_id": cid, "properties": {"order_id": "o-3"}},
        headers=auth,
    )
    assert r.status_code == 409 and "paused" in r.json()["message"]
    assert table_counts(engine) == before


def test_api_trigger_entry_once(
    client: Any, secret_key: str, write_key: str, engine: sa.Engine
) -> None:
    _template(engine)
    auth = bearer(secret_key)
    once = VIP.replace("entry: {mode: every_time}", "entry: {mode: once}")
    sid = client.post(
        "/api/scenarios?status=active",
        content=once,
        headers=auth | {"content-type": "application/yaml"},
    ).json()["id"]
    _identify(client, write_key, "u1")
    cid = _customer_id(client, secret_key, "u1")
    r = client.post(f"/api/scenarios/{sid}/runs", json={"customer_id": cid}, headers=auth)
    assert r.status_code == 201
    r = client.post(
        f"/api/scenarios/{sid}/runs",
        json={"customer_id": cid, "properties": {"order_id": "other"}},
        headers=auth,
    )
    assert r.status_code == 200 and r.json()["started"] is False
    r = client.post(f"/api/scenarios/{sid}/runs", json={"customer_id": 999}, headers=auth)
    assert r.status_code == 404 and "999" in r.json()["message"]


def test_customer_runs(
    client: Any, app: Any, secret_key: str, write_key: str, engine: sa.Engine, clock: SimulatedClock
) -> None:
    _template(engine)
    auth = bearer(secret_key)
    client.post("/api/scenarios?status=active", json={"definition": WELCOME}, headers=auth)
    _identify(client, write_key, "u1")
    _track(client, write_key, "u1", "Signed Up")
    clock.advance(timedelta(hours=3))
    _track(client, write_key, "u1", "Order Completed", order_id="o-1")  # the exit event
    cid = _customer_id(client, secret_key, "u1")
    r = client.get(f"/api/customers/{cid}/runs", headers=auth)
    assert r.status_code == 200, r.text
    (run,) = r.json()["runs"]
    assert run["scenario"] == "welcome" and run["version"] == 1
    assert (run["status"], run["end_reason"]) == ("exited", "exit event Order Completed")
    assert run["entity_key"] == "" and run["wake_at"] is None
    assert run["started_at"].startswith("2026-03-01T12:00")
    assert run["ended_at"].startswith("2026-03-01T15:00")
    assert [(x["step"], x["outcome"]) for x in run["log"]] == [
        ("hello", "entered"),
        ("hello", "sent"),
        ("later", "waiting"),
        ("again", "exited"),
    ]
    assert client.get("/api/customers/999/runs", headers=auth).status_code == 404


# -- bad input ---------------------------------------------------------------------------

BAD_DEFINITIONS = [
    pytest.param(
        dict(WELCOME, steps=[{"id": "hello", "teleport": {"to": "mars"}}]),
        "scenario.steps[0].teleport",
        id="unknown-step-kind",
    ),
    pytest.param(
        dict(WELCOME, steps=[{"id": "hello", "send": {"template": "hi"}, "next": "nowhere"}]),
        "scenario.steps[0].next",
        id="bad-reference",
    ),
    pytest.param(
        dict(WELCOME, steps=[{"id": "hello", "send": {"template": "missing"}}]),
        "scenario.steps[0].send.template",
        id="unknown-template",
    ),
    pytest.param(
        dict(
            WELCOME,
            steps=[
                {"id": "a", "send": {"template": "hi"}, "next": "b"},
                {"id": "b", "send": {"template": "hi"}, "next": "a"},
            ],
        ),
        "scenario.steps",
        id="cycle",
    ),
    pytest.param(
        dict(WELCOME, priority="high", steps="hello"), "scenario.priority", id="wrong-types"
    ),
    pytest.param(dict(WELCOME, trigger={"when": "never"}), "scenario.trigger", id="bad-trigger"),
]


@pytest.mark.parametrize(("definition", "where"), BAD_DEFINITIONS)
def test_bad_definitions_store_nothing(
    client: Any, secret_key: str, engine: sa.Engine, definition: dict[str, Any], where: str
) -> None:
    _template(engine)
    auth = bearer(secret_key)
    sid = client.post("/api/scenarios", json={"definition": WELCOME}, headers=auth).json()["id"]
    before = table_counts(engine)
    r = client.post(
        "/api/scenarios", json={"definition": dict(definition, name="other")}, headers=auth
    )
    assert r.status_code == 422, r.text
    assert where in [e["where"] for e in r.json()["errors"]], r.json()
    r = client.put(f"/api/scenarios/{sid}", json={"definition": definition}, headers=auth)
    assert r.status_code == 422, r.text
    assert where in [e["where"] for e in r.json()["errors"]]
    r = client.put(
        f"/api/scenarios/{sid}",
        content=yaml.safe_dump(definition),
        headers=auth | {"content-type": "application/yaml"},
    )
    assert r.status_code == 422 and where in [e["where"] for e in r.json()["errors"]]
    assert table_counts(engine) == before


@pytest.mark.parametrize(
    ("body", "ctype", "where"),
    [
        pytest.param(b"name: [unclosed", "application/yaml", "scenario", id="bad-yaml"),
        pytest.param(b"\xff\xfe", "application/yaml", "body", id="not-utf8"),
        pytest.param(b"- just\n- a list\n", "application/yaml", "scenario", id="yaml-list"),
        pytest.param(b"{not json", "application/json", "body", id="bad-json"),
        pytest.param(b"[1, 2]", "application/json", "body", id="json-array"),
        pytest.param(b'{"definition": 5}', "application/json", "body.definition", id="type"),
        pytest.param(b'{"steps": []}', "application/json", "body.definition", id="no-definition"),
        pytest.param(
            b'{"definition": {}, "color": "red"}', "application/json", "body.color", id="extra"
        ),
        pytest.param(
            b'{"definition": {}, "status": "running"}', "application/json", "body.status", id="st"
        ),
    ],
)
def test_bad_bodies_are_named(
    client: Any, secret_key: str, engine: sa.Engine, body: bytes, ctype: str, where: str
) -> None:
    before = table_counts(engine)
    r = client.post(
        "/api/scenarios", content=body, headers=bearer(secret_key) | {"content-type": ctype}
    )
    assert r.status_code == 422, r.text
    assert where in [e["where"] for e in r.json()["errors"]], r.json()
    assert table_counts(engine) == before


def test_other_bad_requests(
    client: Any, secret_key: str, write_key: str, engine: sa.Engine
) -> None:
    _template(engine)
    auth = bearer(secret_key)
    sid = client.post(
        "/api/scenarios?status=active",
        content=VIP,
        headers=auth | {"content-type": "application/yaml"},
    ).json()["id"]
    before = table_counts(engine)
    r = client.post(
        "/api/scenarios", content=b"<scenario/>", headers=auth | {"content-type": "text/xml"}
    )
    assert r.status_code == 415
    huge = b"name: big\ndescription: " + b"x" * 1_000_000
    r = client.post("/api/scenarios", content=huge, headers=auth | {"content-type": "text/yaml"})
    assert r.status_code == 413
    r = client.post("/api/scenarios?status=running", json={"definition": WELCOME}, headers=auth)
    assert r.status_code == 422 and r.json()["errors"][0]["where"] == "query.status"
    r = client.post(f"/api/scenarios/{sid}/runs", json={"customer_id": "x"}, headers=auth)
    assert r.status_code == 422 and r.json()["errors"][0]["where"] == "body.customer_id"
    r = client.post(
        f"/api/scenarios/{sid}/runs", json={"customer_id": 1, "props": {}}, headers=auth
    )
    assert r.status_code == 422 and r.json()["errors"][0]["where"] == "body.props"
    r = client.post(
        f"/api/scenarios/{sid}/runs", json={"customer_id": 1, "properties": []}, headers=auth
    )
    assert r.status_code == 422 and r.json()["errors"][0]["where"] == "body.properties"
    r = client.get(f"/api/scenarios/{sid}/stats", params={"since": "yesterday"}, headers=auth)
    assert r.status_code == 422 and r.json()["errors"][0]["where"] == "query.since"
    r = client.get(
        f"/api/scenarios/{sid}/stats",
        params={"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"},
        headers=auth,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["where"] == "query.until"
    r = client.get(f"/api/scenarios/{sid}/graph", params={"version": 0}, headers=auth)
    assert r.status_code == 422 and r.json()["errors"][0]["where"] == "query.version"
    assert client.get(f"/api/scenarios/{sid}/graph?version=7", headers=auth).status_code == 404
    for method, path, where in [
        ("get", "/api/scenarios/abc", "path.scenario_id"),
        ("put", "/api/scenarios/abc", "path.scenario_id"),
        ("post", "/api/scenarios/abc/activate", "path.scenario_id"),
        ("post", "/api/scenarios/abc/pause", "path.scenario_id"),
        ("post", "/api/scenarios/abc/archive", "path.scenario_id"),
        ("get", f"/api/scenarios/{sid}/versions/first", "path.version"),
        ("get", "/api/scenarios/abc/stats", "path.scenario_id"),
        ("get", "/api/customers/abc/runs", "path.customer_id"),
        ("get", "/api/customers/1/runs?limit=0", "query.limit"),
    ]:
        r = client.request(method, path, headers=auth)
        assert r.status_code == 422, (path, r.text)
        assert where in [e["where"] for e in r.json()["errors"]], (path, r.json())
    for method, path, body in [
        ("get", "/api/scenarios/999", None),
        ("put", "/api/scenarios/999", {"definition": WELCOME}),
        ("post", "/api/scenarios/999/activate", None),
        ("post", "/api/scenarios/999/pause", None),
        ("post", "/api/scenarios/999/archive", None),
        ("get", "/api/scenarios/999/versions/1", None),
        ("get", "/api/scenarios/999/stats", None),
        ("get", "/api/scenarios/999/graph", None),
        ("post", "/api/scenarios/999/runs", {"customer_id": 1}),
    ]:
        r = client.request(method, path, json=body, headers=auth)
        assert r.status_code == 404, (path, r.text)
    assert table_counts(engine) == before


def test_activate_refuses_a_scenario_whose_template_is_gone(
    client: Any, secret_key: str, engine: sa.Engine
) -> None:
    _template(engine)
    auth = bearer(secret_key)
    sid = client.post("/api/scenarios", json={"definition": WELCOME}, headers=auth).json()["id"]
    r = client.delete("/api/templates/1", headers=auth)
    assert r.status_code == 200, r.text
    r = client.post(f"/api/scenarios/{sid}/activate", headers=auth)
    assert r.status_code == 422
    assert r.json()["errors"][0]["where"] == "scenario.steps[0].send.template"
    assert client.get(f"/api/scenarios/{sid}", headers=auth).json()["status"] == "draft"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/scenarios"),
        ("post", "/api/scenarios"),
        ("get", "/api/scenarios/1"),
        ("put", "/api/scenarios/1"),
        ("post", "/api/scenarios/1/activate"),
        ("post", "/api/scenarios/1/pause"),
        ("post", "/api/scenarios/1/archive"),
        ("get", "/api/scenarios/1/versions/1"),
        ("get", "/api/scenarios/1/stats"),
        ("get", "/api/scenarios/1/graph"),
        ("post", "/api/scenarios/1/runs"),
        ("get", "/api/customers/1/runs"),
    ],
)
def test_secret_key_required(
    client: Any, write_key: str, engine: sa.Engine, method: str, path: str
) -> None:
    before = table_counts(engine)
    r = client.request(method, path, json={"definition": WELCOME, "customer_id": 1})
    assert r.status_code == 401
    r = client.request(method, path, json={"definition": WELCOME}, headers=bearer(write_key))
    assert r.status_code == 401 and "write key" in r.json()["message"]
    assert table_counts(engine) == before


def test_concurrent_api_triggers_start_one_run(
    live_server: str, secret_key: str, write_key: str, engine: sa.Engine
) -> None:
    """Eight back-office calls at once for one customer and order: one run, seven no-ops."""

    _template(engine)
    auth = bearer(secret_key)
    with httpx.Client(base_url=live_server, timeout=30) as http:
        sid = http.post(
            "/api/scenarios?status=active",
            content=VIP,
            headers=auth | {"content-type": "application/yaml"},
        ).json()["id"]
        _identify(http, write_key, "u1")
        cid = _customer_id(http, secret_key, "u1")

        def call(_: int) -> int:
            body = {"customer_id": cid, "properties": {"order_id": "o-1"}}
            return http.post(f"/api/scenarios/{sid}/runs", json=body, headers=auth).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = sorted(pool.map(call, range(8)))
    assert codes == [200] * 7 + [201]
    assert len(_keys(engine)) == 1  # one run, one message
