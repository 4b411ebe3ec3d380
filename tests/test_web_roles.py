"""Roles: one permission table for the UI and the management API; viewers read, masked."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.access.keys import KeyChecker, create_key, list_keys
from rapport.access.roles import PERMISSIONS, ROLES, Permission, api_permission, can
from rapport.store.tables import api_keys
from tests.conftest import T0, basic, bearer
from tests.helpers import table_counts
from tests.test_web_support import (
    PASSWORD,
    csrf_of,
    signed_in,
    text_of,
    web_client,  # noqa: F401  (the `web` fixture)
)


def test_the_permission_table_reads_as_the_roles_are_described() -> None:
    def allowed(role: str) -> set[Permission]:
        return {p for p in Permission if can(role, p)}

    assert allowed("admin") == set(Permission)
    assert allowed("marketer") == {
        Permission.VIEW,
        Permission.VIEW_PERSONAL,
        Permission.EXPORT,
        Permission.EDIT_MARKETING,
    }
    assert allowed("analyst") == {Permission.VIEW, Permission.VIEW_PERSONAL, Permission.EXPORT}
    assert allowed("viewer") == {Permission.VIEW}
    assert not can(None, Permission.VIEW) and not can("boss", Permission.VIEW)
    assert set(PERMISSIONS) == set(Permission)
    assert all(roles <= set(ROLES) for roles in PERMISSIONS.values())


@pytest.mark.parametrize(
    ("method", "path", "needed"),
    [
        ("GET", "/api/segments", Permission.VIEW),
        ("GET", "/api/reports/messages.svg", Permission.VIEW),
        ("POST", "/api/segments", Permission.EDIT_MARKETING),
        ("DELETE", "/api/templates/welcome", Permission.EDIT_MARKETING),
        ("PUT", "/api/channels", Permission.MANAGE_CHANNELS),
        ("POST", "/api/channels/email/test", Permission.MANAGE_CHANNELS),
        ("PUT", "/api/policy", Permission.MANAGE_CHANNELS),
        ("GET", "/api/customers", Permission.VIEW_PERSONAL),
        ("GET", "/api/customers/7/timeline", Permission.VIEW_PERSONAL),
        ("GET", "/api/customers/7/export", Permission.EXPORT),
        ("GET", "/api/reports/orders.csv", Permission.EXPORT),
        ("PATCH", "/api/customers/7", Permission.EDIT_MARKETING),
    ],
)
def test_what_each_api_request_needs(method: str, path: str, needed: Permission) -> None:
    assert api_permission(method, path) == needed


def test_keys_made_before_roles_are_admin_keys_and_write_keys_have_none(engine: sa.Engine) -> None:
    secret = create_key(engine, "secret", "old", T0)
    write = create_key(engine, "write", "site", T0)
    assert (secret.role, write.role) == ("admin", None)
    checker = KeyChecker(engine)
    assert checker.lookup(secret.key).role == "admin"  # type: ignore[union-attr]
    assert checker.lookup(write.key).role is None  # type: ignore[union-attr]
    assert checker.lookup("sk_nothing") is None
    assert [k["role"] for k in list_keys(engine)] == ["admin", None]
    before = table_counts(engine)
    with pytest.raises(ValueError, match="role: a write key only sends events"):
        create_key(engine, "write", "x", T0, role="viewer")
    with pytest.raises(ValueError, match="role must be one of admin, marketer, analyst, viewer"):
        create_key(engine, "secret", "x", T0, role="boss")
    assert table_counts(engine) == before


def test_the_management_api_honours_the_role_of_a_key(
    client: TestClient, engine: sa.Engine, secret_key: str
) -> None:
    keys = {role: create_key(engine, "secret", role, T0, role=role).key for role in ROLES}
    rule = {
        "name": "buyers",
        "rules": {"all": [{"computed": "orders_count", "op": "ge", "value": 1}]},
    }
    # The fixture's key predates roles in spirit: it is an admin key and still works.
    assert client.get("/api/segments", headers=bearer(secret_key)).status_code == 200
    for role in ROLES:
        assert client.get("/api/segments", headers=bearer(keys[role])).status_code == 200, role
    denied = client.post("/api/segments", json=rule, headers=bearer(keys["viewer"]))
    assert denied.status_code == 403
    assert denied.json()["message"] == (
        "authorization: this key's role (viewer) does not allow POST /api/segments "
        "(it needs the edit_marketing permission)"
    )
    assert (
        client.post("/api/segments", json=rule, headers=bearer(keys["analyst"])).status_code == 403
    )
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM segments")).scalar_one() == 0
    made = client.post("/api/segments", json=rule, headers=bearer(keys["marketer"]))
    assert made.status_code in (200, 201), made.text
    # The customer API answers unmasked personal data: not for a viewer key.
    assert client.get("/api/customers?q=a", headers=bearer(keys["viewer"])).status_code == 403
    assert client.get("/api/customers?q=a", headers=bearer(keys["analyst"])).status_code == 200
    # Channels are an admin's.
    channels = client.put("/api/channels", json={}, headers=bearer(keys["marketer"]))
    assert channels.status_code == 403


def test_the_migration_made_existing_secret_keys_admin(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            api_keys.insert().values(
                kind="secret", name="legacy", prefix="sk_x", key_hash="h" * 64, created_at=T0
            )
        )
        conn.execute(
            sa.text("UPDATE api_keys SET role = 'admin' WHERE kind = 'secret' AND role IS NULL")
        )
    # (The statement above is the migration's own; tests/test_migrations.py runs it for real.)
    assert [k["role"] for k in list_keys(engine)] == ["admin"]


def _customer(client: TestClient, write_key: str, **traits: str) -> int:
    answer = client.post(
        "/v1/identify", json={"userId": "u-42", "traits": traits}, headers=basic(write_key)
    )
    assert answer.status_code == 200, answer.text
    with client.app.state.engine.connect() as conn:  # type: ignore[attr-defined]
        return int(conn.execute(sa.text("SELECT max(id) FROM customers")).scalar_one())


def test_a_viewer_reads_with_emails_and_phones_masked(
    web: TestClient, engine: sa.Engine, write_key: str
) -> None:
    cid = _customer(
        web, write_key, email="ann.lee@example.com", phone="+79161234567", firstName="Ann"
    )
    signed_in(web, engine, "viewer")
    for path in (f"/customers?q={cid}", f"/customers/{cid}", "/customers?q=ann.lee@example.com"):
        page = web.get(path)
        assert page.status_code == 200, path
        shown = page.text.split('id="results"')[-1]  # past the search box, which echoes q
        assert "ann.lee@example.com" not in shown, path
        assert "9161234567" not in shown, path
        assert "a***@example.com" in shown, path
    card = web.get(f"/customers/{cid}").text
    assert "+7***67" in card
    # The identify event on the timeline carries the traits: masked there too.
    assert "Identify" in card and "ann.lee" not in card
    # Guessing addresses by their parts finds nothing for a viewer.
    assert "No customer matches" in web.get("/customers?q=ann.lee@").text
    assert "No customer matches" in web.get("/customers?q=7916123").text


def test_a_marketer_sees_them_as_they_are(
    web: TestClient, engine: sa.Engine, write_key: str
) -> None:
    cid = _customer(web, write_key, email="ann.lee@example.com", phone="+79161234567")
    signed_in(web, engine, "marketer")
    card = web.get(f"/customers/{cid}").text
    assert "ann.lee@example.com" in card and "+79161234567" in card


def test_a_viewer_cannot_change_anything(web: TestClient, engine: sa.Engine) -> None:
    viewer = signed_in(web, engine, "viewer")
    token = csrf_of(web)
    before = table_counts(engine)
    attempts = [
        (
            "/settings/users",
            {"email": "x@example.com", "name": "X", "role": "admin", "password": PASSWORD},
        ),
        (f"/settings/users/{viewer.id}/role", {"role": "admin"}),
        (f"/settings/users/{viewer.id}/disable", {}),
        ("/settings/keys", {"kind": "secret", "name": "mine", "role": "admin"}),
        ("/settings/keys/1/revoke", {}),
    ]
    for path, form in attempts:
        answer = web.post(path, data=form | {"csrf_token": token}, follow_redirects=False)
        assert answer.status_code == 403, path
        assert "It needs one of these roles: Admin." in text_of(answer.text), path
    assert table_counts(engine) == before
    for path in ("/settings/users", "/settings/keys", "/audit"):
        assert web.get(path).status_code == 403, path
    # The navigation shows what the role may open, and no form to change anything.
    dashboard = web.get("/").text
    assert 'href="/audit"' not in dashboard
    assert "/settings/users" not in web.get("/settings").text


def test_a_marketer_cannot_manage_users_or_read_the_audit_log(
    web: TestClient, engine: sa.Engine
) -> None:
    signed_in(web, engine, "marketer")
    assert web.get("/settings/users").status_code == 403
    assert web.get("/audit").status_code == 403
    assert web.get("/customers").status_code == 200
