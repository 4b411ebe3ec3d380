"""Account-manager tasks through ``/api/tasks`` on SQLite and PostgreSQL: tasks a real
scenario's ``task`` action left, listed open first and filtered; done, reopen and assign
change the row and write one audit entry each (a repeat changes nothing and writes none);
a viewer key reads but cannot change; bad input is a 422 naming the field, an unknown
task a 404, and neither stores anything."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.access.keys import create_key
from rapport.clock import SimulatedClock
from rapport.pipeline import Pipeline
from rapport.scenarios.store import create_scenario, set_status
from rapport.store.engine import writing
from rapport.store.tables import audit_log, tasks
from tests.conftest import T0, bearer
from tests.helpers import table_counts
from tests.test_loyalty_support import send, track

CALLS = """
name: support-calls
trigger: {event: Support Call}
entry: {mode: every_time}
steps:
  - {id: call, action: {task: "Call the customer back"}}
"""


def make_tasks(engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock, n: int) -> list[int]:
    """``n`` tasks, each left by the scenario for a customer's support call an hour after
    the last one: the customers' ids in the order their tasks were made."""
    with writing(engine) as conn:
        stored = create_scenario(conn, CALLS, clock.now())
        set_status(conn, stored.id, "active", clock.now())
    pipeline.scenarios.index.invalidate()
    made = []
    for i in range(n):
        cid = send(
            pipeline,
            "identify",
            f"caller-{i}",
            traits={"email": f"caller{i}@example.com", "firstName": f"Caller{i}"},
        )
        track(pipeline, f"caller-{i}", "Support Call")
        made.append(cid)
        clock.advance(timedelta(hours=1))
    return made


def task_rows(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(tasks).order_by(tasks.c.id)).all())


def audit_actions(engine: sa.Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.action, audit_log.c.object_id)
            .where(audit_log.c.action.like("task.%"))
            .order_by(audit_log.c.id)
        ).all()
    return [(r.action, r.object_id) for r in rows]


@pytest.fixture
def pipeline(client: TestClient) -> Pipeline:
    return client.app.state.pipeline  # type: ignore[attr-defined]


def test_the_scenario_leaves_tasks_listed_open_first_newest_first(
    client: TestClient,
    engine: sa.Engine,
    clock: SimulatedClock,
    secret_key: str,
    pipeline: Pipeline,
) -> None:
    customers = make_tasks(engine, pipeline, clock, 3)
    rows = task_rows(engine)
    assert [r.customer_id for r in rows] == customers
    assert {r.title for r in rows} == {"Call the customer back"} and rows[0].scenario_id
    first = rows[0].id
    done = client.post(f"/api/tasks/{first}/done", headers=bearer(secret_key))
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "done" and done.json()["changed"] is True

    listed = client.get("/api/tasks", params={"status": "all"}, headers=bearer(secret_key))
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["total"] == 3
    # Open ones first (the newest first), then the done one.
    assert [t["id"] for t in body["tasks"]] == [rows[2].id, rows[1].id, first]
    assert body["tasks"][0]["scenario"] == "support-calls"
    assert body["tasks"][2]["done_at"] == clock.now().isoformat()

    opened = client.get("/api/tasks", headers=bearer(secret_key)).json()
    assert [t["id"] for t in opened["tasks"]] == [rows[2].id, rows[1].id]
    assert opened["total"] == 2
    only_done = client.get("/api/tasks?status=done", headers=bearer(secret_key)).json()
    assert [t["id"] for t in only_done["tasks"]] == [first]
    theirs = client.get(
        "/api/tasks", params={"customer_id": customers[1]}, headers=bearer(secret_key)
    ).json()
    assert [t["customer_id"] for t in theirs["tasks"]] == [customers[1]]
    paged = client.get("/api/tasks?limit=1&offset=1", headers=bearer(secret_key)).json()
    assert [t["id"] for t in paged["tasks"]] == [rows[1].id] and paged["total"] == 2


def test_done_reopen_assign_are_audited_once(
    client: TestClient,
    engine: sa.Engine,
    clock: SimulatedClock,
    secret_key: str,
    pipeline: Pipeline,
) -> None:
    make_tasks(engine, pipeline, clock, 1)
    (task,) = task_rows(engine)
    h = bearer(secret_key)
    assert client.post(f"/api/tasks/{task.id}/done", headers=h).json()["changed"] is True
    again = client.post(f"/api/tasks/{task.id}/done", headers=h).json()
    assert again["changed"] is False and again["status"] == "done"
    reopened = client.post(f"/api/tasks/{task.id}/reopen", headers=h).json()
    assert reopened["status"] == "open" and reopened["done_at"] is None
    taken = client.post(f"/api/tasks/{task.id}/assign", headers=h, json={"assignee": " ann@x.io "})
    assert taken.json()["assignee"] == "ann@x.io" and taken.json()["changed"] is True
    same = client.post(f"/api/tasks/{task.id}/assign", headers=h, json={"assignee": "ann@x.io"})
    assert same.json()["changed"] is False
    mine = client.get("/api/tasks?assignee=ann@x.io", headers=h).json()
    assert [t["id"] for t in mine["tasks"]] == [task.id]
    freed = client.post(f"/api/tasks/{task.id}/assign", headers=h, json={"assignee": None})
    assert freed.json()["assignee"] is None
    assert audit_actions(engine) == [
        ("task.complete", str(task.id)),
        ("task.reopen", str(task.id)),
        ("task.assign", str(task.id)),
        ("task.assign", str(task.id)),
    ]
    with engine.connect() as conn:
        details = conn.execute(
            sa.select(audit_log.c.details, audit_log.c.actor_kind)
            .where(audit_log.c.action == "task.assign")
            .order_by(audit_log.c.id)
        ).all()
    assert details[0].details["assignee"] == [None, "ann@x.io"]
    assert details[1].details["assignee"] == ["ann@x.io", None]
    assert details[0].actor_kind == "key"
    assert details[0].details["customer_id"] == task.customer_id


def test_bad_input_and_unknown_tasks_store_nothing(
    client: TestClient,
    engine: sa.Engine,
    clock: SimulatedClock,
    secret_key: str,
    pipeline: Pipeline,
) -> None:
    make_tasks(engine, pipeline, clock, 1)
    (task,) = task_rows(engine)
    h = bearer(secret_key)
    before = table_counts(engine)
    bad_status = client.get("/api/tasks?status=later", headers=h)
    assert bad_status.status_code == 422
    assert [e["where"] for e in bad_status.json()["errors"]] == ["query.status"]
    for body, where in (
        ({"assignee": "   "}, "body.assignee"),
        ({"assignee": "x" * 201}, "body.assignee"),
        ({"who": "ann"}, "body.who"),
    ):
        answer = client.post(f"/api/tasks/{task.id}/assign", headers=h, json=body)
        assert answer.status_code == 422, body
        assert where in [e["where"] for e in answer.json()["errors"]], answer.json()
    missing = client.post("/api/tasks/999999/done", headers=h)
    assert missing.status_code == 404 and "task 999999 does not exist" in missing.text
    assert table_counts(engine) == before
    assert task_rows(engine) == [task]


def test_a_viewer_key_reads_but_cannot_change(
    client: TestClient,
    engine: sa.Engine,
    clock: SimulatedClock,
    pipeline: Pipeline,
) -> None:
    make_tasks(engine, pipeline, clock, 1)
    (task,) = task_rows(engine)
    viewer = create_key(engine, "secret", "viewer", T0, role="viewer").key
    assert client.get("/api/tasks", headers=bearer(viewer)).status_code == 200
    before = table_counts(engine)
    refused = client.post(f"/api/tasks/{task.id}/done", headers=bearer(viewer))
    assert refused.status_code == 403 and "edit_marketing" in refused.text
    assert table_counts(engine) == before and task_rows(engine) == [task]
    assert client.get("/api/tasks").status_code == 401
