"""Changes made through the management API are in the audit log, on SQLite and PostgreSQL.

For each router a representative change made with a secret key writes one entry, in the
transaction of the change, with the key's name as the actor and the action the web UI
uses for the same change; the admin reads it on the audit page. A rejected change (422,
or a conflict found inside the transaction) writes nothing at all.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.access.keys import create_key
from rapport.store.engine import writing
from rapport.store.tables import audit_log
from tests.conftest import T0, bearer
from tests.helpers import table_counts
from tests.test_campaigns import audience, people, template
from tests.test_scenarios_api import WELCOME
from tests.test_scenarios_api import _template as hi_template
from tests.test_web_support import (
    audit_rows,
    signed_in,
    text_of,
    web_client,  # noqa: F401  (the `web` fixture)
)

KEY_NAME = "back-office sync"


@pytest.fixture
def key(engine: sa.Engine) -> tuple[int, dict[str, str]]:
    """A secret key with a recognisable name: its id and the Authorization header."""
    created = create_key(engine, "secret", KEY_NAME, T0)
    return created.id, bearer(created.key)


def _by_key(engine: sa.Engine, key_id: int, action: str) -> sa.Row:
    [row] = audit_rows(engine, action)
    assert (row.actor_kind, row.actor_id, row.actor_name) == ("key", str(key_id), KEY_NAME)
    return row


def _ok(answer: Any) -> dict[str, Any]:
    assert answer.status_code in (200, 201), answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_segments_and_lists(web: TestClient, engine: sa.Engine, key: Any) -> None:
    key_id, auth = key
    rule = {"attribute": "city", "op": "eq", "value": "Kazan"}
    made = _ok(web.post("/api/segments", json={"name": "kazan", "rules": rule}, headers=auth))
    row = _by_key(engine, key_id, "segment.create")
    assert (row.object_type, row.object_id) == ("segment", str(made["id"]))
    assert row.details["name"] == "kazan" and row.details["rules"] == made["rules"]

    _ok(web.patch(f"/api/segments/{made['id']}", json={"name": "kazan-2"}, headers=auth))
    assert _by_key(engine, key_id, "segment.update").details["version"] == 2
    _ok(web.delete(f"/api/segments/{made['id']}", headers=auth))
    assert _by_key(engine, key_id, "segment.delete").details == {"name": "kazan-2", "kind": "rules"}

    ids = people(engine, 3)
    lst = _ok(web.post("/api/lists", json={"name": "vip"}, headers=auth))
    assert _by_key(engine, key_id, "list.create").object_id == str(lst["id"])
    body = {"customer_ids": ids[:2]}
    _ok(web.post(f"/api/lists/{lst['id']}/members", json=body, headers=auth))
    added = _by_key(engine, key_id, "list.add_members")
    assert added.details == {"name": "vip", "customers": 2, "customer_ids": ids[:2], "members": 2}
    # Adding the same customers again changes nothing, and writes nothing.
    _ok(web.post(f"/api/lists/{lst['id']}/members", json=body, headers=auth))
    assert len(audit_rows(engine, "list.add_members")) == 1


def test_scenarios(web: TestClient, engine: sa.Engine, key: Any) -> None:
    key_id, auth = key
    hi_template(engine)
    made = _ok(web.post("/api/scenarios", json={"definition": WELCOME}, headers=auth))
    created = _by_key(engine, key_id, "scenario.create")
    assert created.details == {"name": "welcome", "version": 1, "status": "draft"}
    _ok(web.post(f"/api/scenarios/{made['id']}/activate", headers=auth))
    activated = _by_key(engine, key_id, "scenario.activate")
    assert (activated.details["from"], activated.details["to"]) == ("draft", "active")
    changed = WELCOME | {"description": "v2"}
    _ok(web.put(f"/api/scenarios/{made['id']}", json={"definition": changed}, headers=auth))
    assert _by_key(engine, key_id, "scenario.update").details["version"] == 2


def test_campaigns_and_the_policy(web: TestClient, engine: sa.Engine, key: Any) -> None:
    key_id, auth = key
    ids = people(engine, 4)
    spec = {
        "name": "spring",
        "channel": "email",
        "segment_id": audience(engine, ids),
        "variants": [{"name": "A", "template_id": template(engine, "ta", "A")}],
    }
    made = _ok(web.post("/api/campaigns", json=spec, headers=auth))
    row = _by_key(engine, key_id, "campaign.create")
    assert (row.object_id, row.details) == (str(made["id"]), {"name": "spring", "status": "draft"})
    _ok(web.patch(f"/api/campaigns/{made['id']}", json={"name": "spring-2"}, headers=auth))
    assert _by_key(engine, key_id, "campaign.update").details["name"] == "spring-2"

    policy = {"global_cap": {"max_messages": 5, "days": 7}}
    _ok(web.put("/api/policy", json=policy, headers=auth))
    saved = _by_key(engine, key_id, "policy.update").details["policy"]
    assert saved == web.get("/api/policy", headers=auth).json()
    _ok(web.put("/api/policy/global-control", json={"percent": 5}, headers=auth))
    assert _by_key(engine, key_id, "policy.global_control").details["percent"] == 5


def test_templates_channels_and_attribution(web: TestClient, engine: sa.Engine, key: Any) -> None:
    key_id, auth = key
    body = {
        "name": "hello",
        "channel": "sms",
        "kind": "text",
        "variants": {"en": {"body": "Hi {{ customer.first_name }}"}},
    }
    made = _ok(web.post("/api/templates", json=body, headers=auth))
    row = _by_key(engine, key_id, "template.create")
    assert row.details == {"name": "hello", "channel": "sms", "locales": ["en"]}
    _ok(web.delete(f"/api/templates/{made['id']}", headers=auth))
    assert _by_key(engine, key_id, "template.delete").object_id == str(made["id"])

    config = {"telegram": {"backend": "memory"}, "webhook": {"backend": "webhook", "secret": "s3"}}
    _ok(web.put("/api/channels", json=config, headers=auth))
    entries = audit_rows(engine, "channel.update")
    assert [(r.object_id, r.details["backend"]) for r in entries] == [
        ("telegram", "memory"),
        ("webhook", "webhook"),
    ]
    assert all(r.actor_name == KEY_NAME for r in entries)
    assert "s3" not in str([r.details for r in entries])  # the secret is not in the log
    _ok(web.delete("/api/channels/telegram", headers=auth))
    assert _by_key(engine, key_id, "channel.remove").object_id == "telegram"
    # Sending the same configuration again changes nothing: no entry.
    _ok(
        web.put(
            "/api/channels", json={"webhook": {"backend": "webhook", "secret": "***"}}, headers=auth
        )
    )
    assert len(audit_rows(engine, "channel.update")) == 2

    windows = web.get("/api/settings/attribution", headers=auth).json()
    windows["click_days"] = windows["click_days"] + 1
    _ok(web.put("/api/settings/attribution", json=windows, headers=auth))
    row = _by_key(engine, key_id, "attribution.update")
    assert row.details["click_days"] == windows["click_days"]


def test_customers_and_loyalty(web: TestClient, engine: sa.Engine, key: Any) -> None:
    key_id, auth = key
    [cid, other] = people(engine, 2)
    _ok(web.patch(f"/api/customers/{cid}", json={"city": "Kazan"}, headers=auth))
    # The names of the fields, never their values (personal data goes with an erasure).
    assert _by_key(engine, key_id, "customer.update").details == {"fields": ["city"]}
    consent = {"channel": "email", "status": "subscribed"}
    _ok(web.post(f"/api/customers/{cid}/consents", json=consent, headers=auth))
    assert _by_key(engine, key_id, "customer.consent").details["status"] == "subscribed"
    _ok(web.delete(f"/api/customers/{other}", headers=auth))
    assert _by_key(engine, key_id, "customer.erase").details == {"erased": [other]}

    adjust = {"points": 50, "reason": "apology"}
    _ok(web.post(f"/api/loyalty/customers/{cid}/adjust", json=adjust, headers=auth))
    assert _by_key(engine, key_id, "loyalty.adjust").object_id == str(cid)


def test_the_admin_reads_api_changes_on_the_audit_page(
    web: TestClient, engine: sa.Engine, key: Any
) -> None:
    _, auth = key
    rule = {"attribute": "city", "op": "eq", "value": "Kazan"}
    _ok(web.post("/api/segments", json={"name": "kazan", "rules": rule}, headers=auth))
    signed_in(web, engine, "admin")
    page = web.get("/audit", params={"action": "segment.", "actor": "back-office"})
    assert page.status_code == 200
    text = text_of(page.text)
    assert "segment.create" in text and KEY_NAME in text and "kazan" in text


def _customer(engine: sa.Engine) -> int:
    return people(engine, 1)[0]


REJECTED: list[tuple[str, str, Any]] = [
    ("POST", "/api/segments", {"name": "x", "rules": {"attribute": "city", "op": "nope"}}),
    ("POST", "/api/lists", {"name": ""}),
    ("POST", "/api/scenarios", {"definition": {"name": "x", "steps": []}}),
    ("POST", "/api/campaigns", {"name": "x", "channel": "email"}),
    ("PUT", "/api/policy", {"channels": {"fax": {}}}),
    ("PUT", "/api/policy/global-control", {"percent": 90}),
    (
        "POST",
        "/api/templates",
        {"name": "t", "channel": "sms", "kind": "text", "variants": {"en": {"body": "{% if %}"}}},
    ),
    ("PUT", "/api/channels", {"email": {"backend": "smtp", "port": 0}}),
    ("PUT", "/api/settings/attribution", {"click_days": -1}),
    ("PATCH", "/api/customers/{cid}", {"timezone": "Mars/Olympus"}),
    ("POST", "/api/loyalty/customers/{cid}/adjust", {"points": 5}),
]


@pytest.mark.parametrize(("method", "path", "body"), REJECTED, ids=[p for _, p, _ in REJECTED])
def test_a_rejected_change_writes_nothing(
    web: TestClient, engine: sa.Engine, key: Any, method: str, path: str, body: Any
) -> None:
    _, auth = key
    cid = _customer(engine)
    before = table_counts(engine)
    answer = web.request(method, path.format(cid=cid), json=body, headers=auth)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"], answer.text  # the problems, each with its path
    assert table_counts(engine) == before


def test_a_conflict_found_inside_the_transaction_writes_nothing(
    web: TestClient, engine: sa.Engine, key: Any
) -> None:
    """Pausing a draft fails in ``set_status``, inside the transaction the entry would be
    written in: no entry; nor for a segment another segment reads."""
    _, auth = key
    hi_template(engine)
    made = _ok(web.post("/api/scenarios", json={"definition": WELCOME}, headers=auth))
    rule = {"attribute": "city", "op": "eq", "value": "Kazan"}
    base = _ok(web.post("/api/segments", json={"name": "base", "rules": rule}, headers=auth))
    reads = {"segment": base["id"]}
    _ok(web.post("/api/segments", json={"name": "reader", "rules": reads}, headers=auth))
    with engine.connect() as conn:
        logged = conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one()
    assert web.post(f"/api/scenarios/{made['id']}/pause", headers=auth).status_code == 409
    assert web.delete(f"/api/segments/{base['id']}", headers=auth).status_code == 409
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one() == logged
        )


def test_a_key_without_the_permission_changes_nothing_and_logs_nothing(
    web: TestClient, engine: sa.Engine
) -> None:
    viewer = create_key(engine, "secret", "read only", T0, role="viewer")
    rule = {"attribute": "city", "op": "eq", "value": "Kazan"}
    answer = web.post(
        "/api/segments", json={"name": "kazan", "rules": rule}, headers=bearer(viewer.key)
    )
    assert answer.status_code == 403
    with writing(engine) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one() == 0


def test_suppressions_and_event_subscriptions(web: TestClient, engine: sa.Engine, key: Any) -> None:
    key_id, auth = key
    body = {"channel": "email", "address": "ann@example.com", "reason": "manual"}
    _ok(web.post("/api/suppressions", json=body, headers=auth))
    row = _by_key(engine, key_id, "suppression.add")
    # The address is personal data: the entry keeps the channel and reason, not the address.
    assert (row.object_id, row.details) == ("email", {"reason": "manual"})
    _ok(web.post("/api/suppressions", json=body, headers=auth))  # already there: no entry
    assert len(audit_rows(engine, "suppression.add")) == 1
    _ok(web.delete("/api/suppressions/email/ann@example.com", headers=auth))
    _by_key(engine, key_id, "suppression.remove")

    new = {"name": "crm", "url": "https://partner.example/hook", "event_names": ["Order *"]}
    made = _ok(web.post("/api/event-subscriptions", json=new, headers=auth))
    row = _by_key(engine, key_id, "subscription.create")
    assert row.object_id == str(made["id"]) and "secret" not in row.details
    sid = made["id"]
    _ok(web.patch(f"/api/event-subscriptions/{sid}", json={"rotate_secret": True}, headers=auth))
    assert _by_key(engine, key_id, "subscription.update").details == {
        "fields": ["rotate_secret"],
        "secret_changed": True,
    }
    _ok(web.delete(f"/api/event-subscriptions/{sid}", headers=auth))
    _by_key(engine, key_id, "subscription.delete")

    before = table_counts(engine)
    bad = web.post("/api/event-subscriptions", json={**new, "url": "ftp://x"}, headers=auth)
    assert bad.status_code == 422
    assert web.delete(f"/api/event-subscriptions/{sid}", headers=auth).status_code == 404
    assert table_counts(engine) == before
