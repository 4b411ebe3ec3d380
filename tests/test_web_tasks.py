"""The Tasks page on SQLite and PostgreSQL: the tasks a real scenario left, open first,
each customer linked to the card (the address masked for a viewer); the status and
"mine" filters; done, reopen and "assign to me" through ``customers.tasks`` (the API's
functions), audited as the person, with CSRF; a viewer or analyst sees no button and is
refused (403) with nothing changed."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.clock import SimulatedClock
from rapport.pipeline import Pipeline
from tests.helpers import table_counts
from tests.test_tasks_api import make_tasks, task_rows
from tests.test_web_support import (
    audit_rows,
    csrf_of,
    text_of,
    web_client,  # noqa: F401  (the `web` fixture)
)
from tests.test_web_support import signed_in as _signed_in


def signed_in(client: TestClient, engine: sa.Engine, role: str) -> str:
    """Log in as a new person of ``role`` (forgetting the last one); the CSRF token."""
    client.cookies.clear()
    _signed_in(client, engine, role)
    return csrf_of(client, "/tasks")


@pytest.fixture
def pipeline(web: TestClient) -> Pipeline:
    return web.app.state.pipeline  # type: ignore[attr-defined]


def _listed(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-task="(\d+)"', html)]


def _cell(html: str, task_id: int, figure: str) -> str:
    row = re.search(rf'<tr data-task="{task_id}".*?</tr>', html, re.S)
    assert row, html
    found = re.search(rf'data-figure="{figure}">(.*?)</td>', row.group(0), re.S)
    assert found, row.group(0)
    return text_of(found.group(1)).strip()


def test_open_tasks_first_with_the_customer_linked_and_masked_for_a_viewer(
    web: TestClient, engine: sa.Engine, clock: SimulatedClock, pipeline: Pipeline
) -> None:
    customers = make_tasks(engine, pipeline, clock, 3)
    rows = task_rows(engine)
    token = signed_in(web, engine, "marketer")
    answer = web.post(f"/tasks/{rows[0].id}/done", data={"csrf_token": token})
    assert answer.status_code == 200  # followed to the list

    page = web.get("/tasks").text
    assert _listed(page) == [rows[2].id, rows[1].id]  # open only, newest first
    assert f'href="/customers/{customers[2]}">Caller2</a>' in page
    assert "caller2@example.com" in page
    assert f'href="/scenarios/{rows[2].scenario_id}">support-calls</a>' in page
    everything = web.get("/tasks?status=all").text
    assert _listed(everything) == [rows[2].id, rows[1].id, rows[0].id]
    assert _cell(everything, rows[0].id, "status").startswith("done")
    assert _listed(web.get("/tasks?status=done").text) == [rows[0].id]

    signed_in(web, engine, "viewer")
    seen = web.get("/tasks?status=all").text
    assert _listed(seen) == [rows[2].id, rows[1].id, rows[0].id]
    assert "caller2@example.com" not in seen and "c***@example.com" in seen
    assert _cell(seen, rows[2].id, "address") == "c***@example.com"
    assert f'href="/customers/{customers[2]}"' in seen
    # No button that changes anything.
    assert "/done" not in seen and "/reopen" not in seen and "/assign" not in seen


def test_done_reopen_and_assign_to_me_are_audited_as_the_person(
    web: TestClient, engine: sa.Engine, clock: SimulatedClock, pipeline: Pipeline
) -> None:
    make_tasks(engine, pipeline, clock, 2)
    first, second = task_rows(engine)
    token = signed_in(web, engine, "marketer")
    page = web.get("/tasks").text
    assert f'action="/tasks/{first.id}/done"' in page
    assert f'action="/tasks/{first.id}/assign"' in page

    mine = web.post(
        f"/tasks/{second.id}/assign",
        data={"csrf_token": token, "next": "/tasks?status=open&who=mine&offset=0"},
        follow_redirects=False,
    )
    assert mine.status_code == 303
    assert mine.headers["location"] == "/tasks?status=open&who=mine&offset=0&done=assigned"
    shown = web.get(mine.headers["location"]).text
    assert "The task is yours." in text_of(shown)
    assert _listed(shown) == [second.id]  # only mine
    assert _cell(shown, second.id, "assignee").startswith("Marketer")
    assert f'action="/tasks/{second.id}/assign"' not in shown  # already mine

    done = web.post(f"/tasks/{second.id}/done", data={"csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/tasks?done=done"
    reopened = web.post(
        f"/tasks/{second.id}/reopen",
        data={"csrf_token": token, "next": "https://elsewhere.example/"},
        follow_redirects=False,
    )
    assert reopened.headers["location"] == "/tasks?done=reopened"  # never off the site

    after = {r.id: r for r in task_rows(engine)}
    assert after[second.id].status == "open" and after[second.id].done_at is None
    assert after[second.id].assignee == "marketer@example.com"
    assert after[first.id] == first
    entries = [e for e in audit_rows(engine) if e.action.startswith("task.")]
    assert [(e.action, e.object_id) for e in entries] == [
        ("task.assign", str(second.id)),
        ("task.complete", str(second.id)),
        ("task.reopen", str(second.id)),
    ]
    assert {(e.actor_kind, e.actor_name) for e in entries} == {("user", "marketer@example.com")}


def test_roles_without_edit_marketing_and_forged_forms_change_nothing(
    web: TestClient, engine: sa.Engine, clock: SimulatedClock, pipeline: Pipeline
) -> None:
    make_tasks(engine, pipeline, clock, 1)
    (task,) = task_rows(engine)
    for role in ("viewer", "analyst"):
        token = signed_in(web, engine, role)
        before = table_counts(engine)
        for verb in ("done", "reopen", "assign"):
            refused = web.post(f"/tasks/{task.id}/{verb}", data={"csrf_token": token})
            assert refused.status_code == 403, (role, verb)
            assert "Not allowed" in refused.text
        assert table_counts(engine) == before
    signed_in(web, engine, "admin")
    before = table_counts(engine)
    forged = web.post(f"/tasks/{task.id}/done", data={})
    assert forged.status_code == 403 and "The form was refused" in forged.text
    assert table_counts(engine) == before and task_rows(engine) == [task]
    token = csrf_of(web, "/tasks")
    assert web.post("/tasks/999999/done", data={"csrf_token": token}).status_code == 404
    assert web.post("/tasks/abc/done", data={"csrf_token": token}).status_code == 404
    assert table_counts(engine) == before


def test_unknown_filters_fall_back_and_russian_labels(
    web: TestClient, engine: sa.Engine, clock: SimulatedClock, pipeline: Pipeline
) -> None:
    make_tasks(engine, pipeline, clock, 1)
    signed_in(web, engine, "viewer")
    page = web.get("/tasks?status=later&who=them")
    assert page.status_code == 200
    assert len(_listed(page.text)) == 1
    assert '<option value="open" selected>' in page.text
    web.cookies.set("rapport_lang", "ru")
    russian = text_of(web.get("/tasks").text)
    assert "Задачи" in russian
