"""The campaigns and policy API on SQLite and PostgreSQL: create, change, start (the send
runs after the answer), report, preview with tracking links, cancel; 422 naming the bad
field with nothing stored, 404 and 409; and the CLI over the same store."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from rapport.cli import app as cli
from rapport.clock import SimulatedClock
from rapport.store.tables import outbox
from tests.conftest import T0, bearer
from tests.helpers import table_counts
from tests.test_campaigns import audience, people, rows, subscribe, template


def _spec(engine: sa.Engine, ids: list[int], **extra: Any) -> dict[str, Any]:
    return {
        "name": "spring",
        "channel": "email",
        "segment_id": audience(engine, ids),
        "variants": [
            {"name": "A", "template_id": template(engine, "ta", "A for {{ customer.first_name }}")},
            {"name": "B", "template_id": template(engine, "tb", "B for {{ customer.first_name }}")},
        ],
    } | extra


def test_policy_api(client: TestClient, secret_key: str, engine: sa.Engine) -> None:
    auth = bearer(secret_key)
    assert client.get("/api/policy").status_code == 401
    got = client.get("/api/policy", headers=auth).json()
    assert got["quiet_hours"] is None and got["default_timezone"] == "UTC"
    doc = {
        "channels": {"sms": {"require_consent": True, "cap": {"max_messages": 2, "days": 7}}},
        "global_cap": {"max_messages": 5, "days": 7},
        "quiet_hours": {"start": "21:00", "end": "09:00"},
    }
    r = client.put("/api/policy", json=doc, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["quiet_hours"]["channels"] == ["sms", "push", "webpush", "telegram"]
    before = table_counts(engine)
    r = client.put(
        "/api/policy",
        json={"quiet_hours": {"start": "21:00", "end": "nine"}, "channels": {"fax": {}}},
        headers=auth,
    )
    assert r.status_code == 422
    assert {e["where"] for e in r.json()["errors"]} == {"quiet_hours.end", "channels.fax"}
    assert table_counts(engine) == before
    assert client.get("/api/policy", headers=auth).json()["global_cap"]["max_messages"] == 5


def test_campaign_lifecycle(
    client: TestClient, secret_key: str, engine: sa.Engine, clock: SimulatedClock
) -> None:
    auth = bearer(secret_key)
    ids = people(engine, 12)
    subscribe(engine, "email", ids[:10])
    spec = _spec(engine, ids, control_percent=0)
    r = client.post("/api/campaigns", json=spec, headers=auth)
    assert r.status_code == 201, r.text
    created = r.json()
    cid = created["id"]
    assert created["status"] == "draft" and created["priority"] == "marketing"
    assert client.post("/api/campaigns", json=spec, headers=auth).status_code == 409

    r = client.patch(f"/api/campaigns/{cid}", json={"control_percent": 25}, headers=auth)
    assert r.status_code == 200 and r.json()["control_percent"] == 25
    assert [c["id"] for c in client.get("/api/campaigns", headers=auth).json()["campaigns"]] == [
        cid
    ]

    r = client.post(f"/api/campaigns/{cid}/preview", json={"customer_id": ids[0]}, headers=auth)
    assert r.status_code == 200, r.text
    preview = r.json()
    assert preview["assigned"] in ("A", "B", "control")
    assert preview["policy"] == {"allowed": True, "reason": None, "send_at": None}
    a, b = preview["variants"]
    assert a["subject"].startswith("A for P") and b["subject"].startswith("B for P")
    assert "/t/c/" in a["html"] and "/t/o/" in a["html"]  # the links the customer will get
    r = client.post(f"/api/campaigns/{cid}/preview", json={"customer_id": 999}, headers=auth)
    assert r.status_code == 404
    assert rows(engine, outbox) == []  # a preview stores nothing

    # Start: the answer comes at once, the send runs after it (here, before the client
    # returns) and the campaign is sent.
    r = client.post(f"/api/campaigns/{cid}/start", headers=auth)
    assert r.status_code == 200 and r.json()["status"] == "sending"
    assert client.get(f"/api/campaigns/{cid}", headers=auth).json()["status"] == "sent"
    assert (
        client.patch(f"/api/campaigns/{cid}", json={"name": "x"}, headers=auth).status_code == 409
    )
    assert client.post(f"/api/campaigns/{cid}/start", headers=auth).status_code == 409

    report = client.get(f"/api/campaigns/{cid}/report", headers=auth).json()
    messages = rows(engine, outbox)
    assert report["audience"] == 12
    assert report["control"] + report["total"]["audience"] == 12
    queued = [m for m in messages if m.status == "queued"]
    assert report["total"]["queued"] == len(queued) > 0
    assert {m.customer_id for m in queued} <= set(ids[:10])  # the consenting ones
    skipped = report["total"]["skipped_by_reason"]
    assert skipped in ({}, {"no consent for email": report["total"]["skipped"]})
    assert report["total"]["skipped"] == len(messages) - len(queued)
    for name in ("A", "B"):
        waiting = sum(1 for m in queued if m.variant == name)
        assert report["variants"][name]["messages"]["waiting"] == waiting
    assert client.get("/api/campaigns/999/report", headers=auth).status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/campaigns/{campaign_id}/preview", "/api/policy"} <= set(paths)
    # Nothing was delivered yet (no dispatcher ran): cancelling still stops every message.
    r = client.post(f"/api/campaigns/{cid}/cancel", headers=auth)
    assert r.status_code == 200 and r.json()["messages_cancelled"] == len(queued)
    assert {m.status for m in rows(engine, outbox)} == {"skipped"}
    assert client.post(f"/api/campaigns/{cid}/cancel", headers=auth).status_code == 409


def test_scheduled_start_and_cancel(
    client: TestClient, secret_key: str, engine: sa.Engine, clock: SimulatedClock
) -> None:
    auth = bearer(secret_key)
    ids = people(engine, 2)
    when = (T0 + timedelta(days=1)).isoformat()
    cid = client.post("/api/campaigns", json=_spec(engine, ids, send_at=when), headers=auth).json()[
        "id"
    ]
    r = client.post(f"/api/campaigns/{cid}/start", headers=auth)
    assert r.json()["status"] == "scheduled"
    r = client.patch(f"/api/campaigns/{cid}", json={"local_hour": 10}, headers=auth)
    assert r.status_code == 200 and r.json()["status"] == "scheduled"
    r = client.post(f"/api/campaigns/{cid}/cancel", headers=auth)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert (
        client.get("/api/campaigns?status=cancelled", headers=auth).json()["campaigns"][0]["id"]
        == cid
    )


def test_bad_input_names_the_field_and_stores_nothing(
    client: TestClient, secret_key: str, engine: sa.Engine
) -> None:
    auth = bearer(secret_key)
    spec = _spec(engine, people(engine, 1))
    before = table_counts(engine)
    cases = {
        "variants[1].template_id": {
            "variants": [*spec["variants"][:1], {"name": "B", "template_id": 9}]
        },
        "segment_id": {"segment_id": 4242},
        "body.control_percent": {"control_percent": 75},
        "body.variants.0.weight": {"variants": [{"name": "A", "template_id": 1, "weight": -1}]},
        "body.local_hour": {"local_hour": 30},
        "body.send_at": {"send_at": "tomorrow"},
        "body.priority": {"priority": "urgent"},
        "body.surprise": {"surprise": True},
    }
    for where, change in cases.items():
        r = client.post("/api/campaigns", json=spec | change, headers=auth)
        assert r.status_code == 422, (where, r.text)
        got = {e["where"].replace("[0]", ".0") for e in r.json()["errors"]}
        assert where.replace("[0]", ".0") in got, (where, r.json())
    assert table_counts(engine) == before
    assert client.get("/api/campaigns/77", headers=auth).status_code == 404
    r = client.patch("/api/campaigns/77", json={"name": "x"}, headers=auth)
    assert r.status_code == 404
    cid = client.post("/api/campaigns", json=spec, headers=auth).json()["id"]
    r = client.patch(f"/api/campaigns/{cid}", json={"control_percent": 51}, headers=auth)
    assert r.status_code == 422 and r.json()["errors"][0]["where"] == "control_percent"


def _url(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_cli_create_send_report(engine: sa.Engine, tmp_path: Any, monkeypatch: Any) -> None:
    ids = people(engine, 6)
    subscribe(engine, "email", ids)
    audience(engine, ids, "vip")
    template(engine, "spring-a", "Spring A")
    template(engine, "spring-b", "Spring B")
    doc = {
        "name": "Spring sale",
        "channel": "email",
        "segment": "vip",
        "variants": [
            {"name": "A", "template": "spring-a", "weight": 50},
            {"name": "B", "template": "spring-b", "weight": 50},
        ],
    }
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(doc))
    runner = CliRunner()
    url = ["--database-url", _url(engine)]
    r = runner.invoke(cli, ["campaigns", "create", "--file", str(path), *url])
    assert r.exit_code == 0, r.output
    cid = r.output.strip().splitlines()[-1]
    r = runner.invoke(cli, ["campaigns", "send", cid, *url])
    assert r.exit_code == 0, r.output
    assert "6 queued" in r.output
    assert len(rows(engine, outbox)) == 6
    r = runner.invoke(cli, ["campaigns", "report", "Spring sale", *url])
    assert r.exit_code == 0 and "audience 6" in r.output, r.output
    r = runner.invoke(cli, ["campaigns", "list", *url])
    assert "Spring" in r.output and "sent" in r.output
    path.write_text(yaml.safe_dump(doc | {"name": "other", "segment": "nope"}))
    r = runner.invoke(cli, ["campaigns", "create", "--file", str(path), *url])
    assert r.exit_code == 1 and "segment" in r.output


def test_cli_send_deliver_runs_the_dispatcher_until_every_message_is_final(
    engine: sa.Engine, tmp_path: Any
) -> None:
    from rapport.messaging.channel_config import parse_channels, save_channels
    from rapport.store.engine import writing

    ids = people(engine, 4)
    subscribe(engine, "email", ids[:3])
    with writing(engine) as conn:
        save_channels(conn, parse_channels({"email": {"backend": "memory"}}), T0)
    doc = {
        "name": "now",
        "channel": "email",
        "segment_id": audience(engine, ids),
        "variants": [{"name": "A", "template_id": template(engine, "t", "Hi")}],
    }
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(doc))
    url = ["--database-url", _url(engine)]
    runner = CliRunner()
    cid = runner.invoke(cli, ["campaigns", "create", "--file", str(path), *url]).output.split()[-1]
    r = runner.invoke(cli, ["campaigns", "send", cid, "--deliver", *url])
    assert r.exit_code == 0, r.output
    status = sorted(m.status for m in rows(engine, outbox))
    assert status == ["sent", "sent", "sent", "skipped"]
