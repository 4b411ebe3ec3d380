"""Deleting a segment through the API is refused while something still acts on it.

A scenario triggered by the segment, or a campaign not yet sent to it, would otherwise lose
its audience silently. The refusal names each user and changes nothing; once the scenario
is archived and the campaign cancelled, the delete goes through. SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.store.tables import segments
from tests.conftest import bearer
from tests.test_campaigns import audience, people, template
from tests.test_scenarios_api import _template as hi_template


def _exists(engine: sa.Engine, segment_id: int) -> bool:
    with engine.connect() as conn:
        found = conn.execute(sa.select(segments.c.id).where(segments.c.id == segment_id))
        return found.first() is not None


def test_a_used_segment_is_kept_until_its_users_stop(
    client: TestClient, secret_key: str, engine: sa.Engine
) -> None:
    auth = bearer(secret_key)
    hi_template(engine)
    rule = {"attribute": "city", "op": "eq", "value": "Kazan"}
    seg = client.post("/api/segments", json={"name": "kazan", "rules": rule}, headers=auth)
    sid = seg.json()["id"]
    definition = {
        "name": "hello-kazan",
        "trigger": {"segment": "kazan"},
        "steps": [{"id": "hello", "send": {"template": "hi"}}],
    }
    made = client.post("/api/scenarios", json={"definition": definition}, headers=auth)
    assert made.status_code == 201, made.text
    scenario_id = made.json()["id"]

    refused = client.delete(f"/api/segments/{sid}", headers=auth)
    assert refused.status_code == 409
    assert "scenario" in refused.text and "hello-kazan" in refused.text
    assert "trigger" in refused.text
    assert _exists(engine, sid)

    assert client.post(f"/api/scenarios/{scenario_id}/archive", headers=auth).status_code == 200
    assert client.delete(f"/api/segments/{sid}", headers=auth).status_code == 200
    assert not _exists(engine, sid)


def test_a_campaign_not_sent_keeps_its_audience(
    client: TestClient, secret_key: str, engine: sa.Engine
) -> None:
    auth = bearer(secret_key)
    list_id = audience(engine, people(engine, 2), name="spring-list")
    spec = {
        "name": "spring",
        "channel": "email",
        "segment_id": list_id,
        "variants": [{"name": "A", "template_id": template(engine, "ta", "A")}],
    }
    made = client.post("/api/campaigns", json=spec, headers=auth)
    assert made.status_code == 201, made.text

    refused = client.delete(f"/api/segments/{list_id}", headers=auth)
    assert refused.status_code == 409
    assert "campaign" in refused.text and "spring" in refused.text
    assert _exists(engine, list_id)

    cancel = client.post(f"/api/campaigns/{made.json()['id']}/cancel", headers=auth)
    assert cancel.status_code == 200
    assert client.delete(f"/api/segments/{list_id}", headers=auth).status_code == 200
    assert not _exists(engine, list_id)
