"""Static lists: the API, membership history, events, CSV import (all or nothing), CLI."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from rapport.cli import app as cli_app
from rapport.clock import SimulatedClock
from rapport.ingest.importers import ImportFileError
from rapport.pipeline import Pipeline
from rapport.segments.list_import import import_list
from rapport.segments.lists import ENTERED, EXITED, history
from rapport.store.engine import writing
from rapport.store.tables import segment_members, segments
from tests.conftest import T0, bearer
from tests.helpers import event_rows, table_counts
from tests.shop_helpers import identify


class Lists:
    def __init__(self, client: TestClient, secret_key: str) -> None:
        self.client = client
        self.headers = bearer(secret_key)

    def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        r = self.client.request(method, path, headers=self.headers, **kwargs)
        assert r.status_code == status, r.text
        return r.json()

    def create(self, name: str = "VIP") -> int:
        return int(self.call("POST", "/api/lists", 201, json={"name": name})["id"])


@pytest.fixture
def api(client: TestClient, secret_key: str) -> Lists:
    return Lists(client, secret_key)


@pytest.fixture
def people(app: Any) -> dict[str, int]:
    """Three customers created through the real ingest path, with their identifiers."""
    pipeline: Pipeline = app.state.pipeline
    return {
        "ann": identify(pipeline, "u-ann", email="ann@example.com", phone="+79161234567"),
        "bob": identify(pipeline, "u-bob", email="bob@example.com"),
        "cat": identify(pipeline, "u-cat", phone="+79160000001"),
    }


def _members(api: Lists, list_id: int, **params: Any) -> list[int]:
    return [
        m["id"] for m in api.call("GET", f"/api/lists/{list_id}/members", params=params)["members"]
    ]


def _list_events(engine: sa.Engine, cid: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        (e.name, e.properties)
        for e in event_rows(engine, customer_id=cid)
        if e.name in (ENTERED, EXITED)
    ]


def test_add_by_every_identifier_kind_and_page(
    api: Lists, people: dict[str, int], engine: sa.Engine
) -> None:
    list_id = api.create()
    answer = api.call(
        "POST",
        f"/api/lists/{list_id}/members",
        json={
            "user_ids": ["u-ann", "u-nobody"],
            "emails": ["BOB@example.com "],  # normalized like every email
            "phones": ["8 916 000-00-01"],  # read in the default region
        },
    )
    assert answer["added"] == [people["ann"], people["bob"], people["cat"]]
    assert answer["not_found"] == {"user_ids": ["u-nobody"]}
    assert answer["members"] == 3
    again = api.call(
        "POST", f"/api/lists/{list_id}/members", json={"customer_ids": [people["ann"]]}
    )
    assert again == {"added": [], "already_members": [people["ann"]], "not_found": {}, "members": 3}

    first = api.call("GET", f"/api/lists/{list_id}/members", params={"limit": 2})
    assert [m["id"] for m in first["members"]] == [people["ann"], people["bob"]]
    assert first["members"][0]["email"] == "ann@example.com"
    rest = _members(api, list_id, limit=2, after=first["next_cursor"])
    assert rest == [people["cat"]]
    assert api.call("GET", f"/api/lists/{list_id}")["members"] == 3
    assert [lst["name"] for lst in api.call("GET", "/api/lists")["lists"]] == ["VIP"]

    entered = _list_events(engine, people["bob"])
    assert entered == [(ENTERED, {"segment_id": list_id, "segment_name": "VIP"})]


def test_remove_closes_the_stay_and_readding_opens_a_new_one(
    api: Lists, people: dict[str, int], engine: sa.Engine, clock: SimulatedClock
) -> None:
    list_id = api.create()
    ann = people["ann"]
    api.call("POST", f"/api/lists/{list_id}/members", json={"customer_ids": [ann]})
    clock.advance(timedelta(days=3))
    removed = api.call(
        "DELETE",
        f"/api/lists/{list_id}/members",
        json={"emails": ["ann@example.com", "bob@example.com"]},
    )
    assert removed == {
        "removed": [ann],
        "not_members": [people["bob"]],
        "not_found": {},
        "members": 0,
    }
    assert _members(api, list_id) == []
    clock.advance(timedelta(days=2))
    api.call("POST", f"/api/lists/{list_id}/members", json={"user_ids": ["u-ann"]})
    assert _members(api, list_id) == [ann]

    with engine.connect() as conn:
        stays = history(conn, list_id, ann)
    assert stays == [(T0, T0 + timedelta(days=3)), (T0 + timedelta(days=5), None)]
    assert [name for name, _ in _list_events(engine, ann)] == [ENTERED, EXITED, ENTERED]


@pytest.mark.parametrize(
    ("path_suffix", "body", "status", "field"),
    [
        ("999/members", {"user_ids": ["u-ann"]}, 404, "list 999"),
        ("{id}/members", {"ids": ["u-ann"]}, 422, "ids"),
        ("{id}/members", {"emails": "ann@example.com"}, 422, "emails"),
        ("{id}/members", {"emails": ["ann@example.com", "not-an-email"]}, 422, "emails[1]"),
        ("{id}/members", {"phones": ["12"]}, 422, "phones[0]"),
        ("{id}/members", {"customer_ids": ["x"]}, 422, "customer_ids[0]"),
        ("{id}/members", {}, 422, "body"),
    ],
)
def test_bad_input_names_the_field_and_stores_nothing(
    api: Lists,
    people: dict[str, int],
    engine: sa.Engine,
    path_suffix: str,
    body: dict[str, Any],
    status: int,
    field: str,
) -> None:
    list_id = api.create()
    before = table_counts(engine)
    for method in ("POST", "DELETE"):
        answer = api.call(method, "/api/lists/" + path_suffix.format(id=list_id), status, json=body)
        assert field in answer["message"]
    assert table_counts(engine) == before


def test_list_names_are_unique_and_rule_segments_are_not_lists(
    api: Lists, engine: sa.Engine
) -> None:
    api.create("VIP")
    assert "already exists" in api.call("POST", "/api/lists", 409, json={"name": "VIP"})["message"]
    assert "name" in api.call("POST", "/api/lists", 422, json={"name": ""})["message"]
    with writing(engine) as conn:
        rule_id = conn.execute(
            segments.insert()
            .values(name="Rules", kind="rules", rules={}, created_at=T0, updated_at=T0)
            .returning(segments.c.id)
        ).scalar_one()
    answer = api.call("GET", f"/api/lists/{rule_id}/members", 404)
    assert "rule segment" in answer["message"]


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "vip.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_import_is_all_or_nothing_with_a_per_row_report(
    app: Any, people: dict[str, int], engine: sa.Engine, tmp_path: Path
) -> None:
    pipeline: Pipeline = app.state.pipeline
    path = _csv(
        tmp_path,
        "email,note\n"
        "ann@example.com,first\n"
        "nobody@example.com,unknown\n"
        "not-an-email,broken\n"
        "BOB@example.com,second\n"
        "ann@example.com,again\n",
    )
    before = table_counts(engine)
    report = import_list(engine, pipeline, "VIP", path)
    assert not report.committed
    assert [(p.line, p.field) for p in report.problems] == [(3, "email"), (4, "email")]
    assert "no customer has email nobody@example.com" in report.problems[0].reason
    assert table_counts(engine) == before  # not even the list was created
    rejects = (tmp_path / "vip.rejects.csv").read_text(encoding="utf-8").splitlines()
    assert rejects[0] == "_line,_field,_reason,email,note"
    assert rejects[1].startswith("3,email,") and rejects[1].endswith("nobody@example.com,unknown")

    report = import_list(engine, pipeline, "VIP", path, skip_invalid=True)
    assert report.committed
    assert (report.rows_read, report.rows_stored, report.rows_duplicate, report.rows_rejected) == (
        5,
        2,
        1,
        2,
    )
    with engine.connect() as conn:
        members = set(
            conn.execute(
                sa.select(segment_members.c.customer_id).where(segment_members.c.until.is_(None))
            ).scalars()
        )
    assert members == {people["ann"], people["bob"]}
    assert [n for n, _ in _list_events(engine, people["ann"])] == [ENTERED]

    # Importing again adds nobody: everyone named is already a member.
    clean = _csv(tmp_path, "user_id\nu-ann\nu-cat\n")
    report = import_list(engine, pipeline, "VIP", clean)
    assert (report.rows_stored, report.rows_duplicate) == (1, 1)


def test_csv_without_an_identifier_column_is_refused(
    app: Any, engine: sa.Engine, tmp_path: Path
) -> None:
    path = _csv(tmp_path, "name\nAnn\n")
    with pytest.raises(ImportFileError, match="user_id"):
        import_list(engine, app.state.pipeline, "VIP", path)


def test_cli_lists_import(
    app: Any, people: dict[str, int], engine: sa.Engine, tmp_path: Path
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    path = _csv(tmp_path, "phone\n+79161234567\n+79169999999\n")
    result = runner.invoke(cli_app, ["lists", "import", "Phones", str(path), "--database-url", url])
    assert result.exit_code == 1, result.output
    assert "Nothing was imported" in result.output
    result = runner.invoke(
        cli_app,
        ["lists", "import", "Phones", str(path), "--database-url", url, "--skip-invalid"],
    )
    assert result.exit_code == 0, result.output
    assert "Imported" in result.output
    with engine.connect() as conn:
        assert conn.execute(sa.select(segment_members.c.customer_id)).scalars().all() == [
            people["ann"]
        ]
