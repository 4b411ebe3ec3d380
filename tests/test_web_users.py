"""Users and keys administered in the UI and with `rapport users`; every change audited."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from rapport.access import audit
from rapport.access.audit import Actor
from rapport.access.passwords import hash_password, verify_password
from rapport.access.users import create_user, find_user
from rapport.store.engine import writing
from rapport.store.tables import api_keys, users, web_sessions
from tests.conftest import T0
from tests.helpers import count, table_counts
from tests.test_web_support import (
    PASSWORD,
    audit_rows,
    csrf_of,
    login,
    make_user,
    quick_hashes,
    signed_in,
    text_of,
    web_client,  # noqa: F401  (the `web` fixture)
)


def test_passwords_are_argon2id_with_the_library_defaults() -> None:
    stored = hash_password(PASSWORD)
    assert stored.startswith("$argon2id$")
    params = PasswordHasher()
    assert f"m={params.memory_cost},t={params.time_cost},p={params.parallelism}" in stored
    assert verify_password(stored, PASSWORD)
    assert not verify_password(stored, PASSWORD + "!")
    assert not verify_password(None, PASSWORD) and not verify_password("garbage", PASSWORD)


def test_an_admin_creates_a_user_and_the_audit_log_says_who(
    web: TestClient, engine: sa.Engine
) -> None:
    admin = signed_in(web, engine, "admin")
    token = csrf_of(web)
    answer = web.post(
        "/settings/users",
        data={
            "email": "Mia@Example.com",
            "name": " Mia ",
            "role": "analyst",
            "password": PASSWORD,
            "csrf_token": token,
        },
    )
    assert answer.status_code == 200 and "The user was created." in answer.text
    with engine.connect() as conn:
        mia = find_user(conn, "mia@example.com")
    assert mia is not None and (mia.name, mia.role, mia.active) == ("Mia", "analyst", True)
    [entry] = audit_rows(engine, "user.create")[1:]  # the first is the admin, made by the CLI
    assert (entry.actor_kind, entry.actor_id, entry.actor_name) == (
        "user",
        str(admin.id),
        admin.email,
    )
    assert (entry.object_type, entry.object_id) == ("user", str(mia.id))
    assert entry.details == {"email": "mia@example.com", "role": "analyst"}
    assert PASSWORD not in str(entry.details)
    web.cookies.clear()
    assert login(web, "mia@example.com").status_code == 303


def test_a_bad_user_form_names_each_problem_and_stores_nothing(
    web: TestClient, engine: sa.Engine
) -> None:
    signed_in(web, engine, "admin")
    token = csrf_of(web)
    before = table_counts(engine)
    answer = web.post(
        "/settings/users",
        data={
            "email": "not-an-email",
            "name": "",
            "role": "boss",
            "password": "short",
            "csrf_token": token,
        },
    )
    assert answer.status_code == 422
    text = text_of(answer.text)
    assert "Nothing was saved:" in text
    for problem in (
        "Email: must be an email address",
        "Name: must be 1 to 200 characters long",
        "Role: must be one of admin, marketer, analyst, viewer",
        "Password: must be at least 10 characters long",
    ):
        assert problem in text, problem
    duplicate = web.post(
        "/settings/users",
        data={
            "email": "admin@example.com",
            "name": "Again",
            "role": "viewer",
            "password": PASSWORD,
            "csrf_token": token,
        },
    )
    assert duplicate.status_code == 422
    assert "Email: a user with this email already exists" in text_of(duplicate.text)
    assert table_counts(engine) == before


def test_roles_change_and_disabling_logs_the_user_out(
    app, web: TestClient, engine: sa.Engine
) -> None:  # type: ignore[no-untyped-def]
    signed_in(web, engine, "admin")
    bob = make_user(engine, "viewer", "bob@example.com")
    other = TestClient(app, base_url="http://127.0.0.1")
    assert login(other, "bob@example.com").status_code == 303
    assert other.get("/settings/users").status_code == 403
    token = csrf_of(web)
    web.post(f"/settings/users/{bob.id}/role", data={"role": "admin", "csrf_token": token})
    # The new role applies from Bob's next page; no new login needed.
    assert other.get("/settings/users").status_code == 200
    answer = web.post(f"/settings/users/{bob.id}/disable", data={"csrf_token": token})
    assert "disabled and logged out" in answer.text
    assert other.get("/", follow_redirects=False).status_code == 303
    with engine.connect() as conn:
        left = conn.execute(
            sa.select(sa.func.count()).where(web_sessions.c.user_id == bob.id)
        ).scalar_one()
    assert left == 0
    web.post(f"/settings/users/{bob.id}/enable", data={"csrf_token": token})
    assert login(TestClient(app, base_url="http://127.0.0.1"), "bob@example.com").status_code == 303
    actions = [(e.action, e.details) for e in audit_rows(engine) if e.object_id == str(bob.id)]
    assert actions == [
        ("user.create", {"email": "bob@example.com", "role": "viewer"}),
        ("session.login", {}),
        ("user.set_role", {"from": "viewer", "to": "admin"}),
        ("user.disable", {}),
        ("user.enable", {}),
        ("session.login", {}),
    ]


def test_the_last_admin_stays_an_admin(web: TestClient, engine: sa.Engine) -> None:
    admin = signed_in(web, engine, "admin")
    token = csrf_of(web)
    before = table_counts(engine)
    for path, form in (
        (f"/settings/users/{admin.id}/role", {"role": "viewer"}),
        (f"/settings/users/{admin.id}/disable", {}),
    ):
        answer = web.post(path, data=form | {"csrf_token": token})
        assert answer.status_code == 422
        assert "the last active admin must stay an active admin" in answer.text
    assert table_counts(engine) == before
    missing = web.post("/settings/users/999/role", data={"role": "viewer", "csrf_token": token})
    assert missing.status_code == 404


def test_an_admin_makes_a_viewer_key_shown_once_and_revokes_it(
    web: TestClient, engine: sa.Engine
) -> None:
    signed_in(web, engine, "admin")
    token = csrf_of(web, "/settings/keys")
    answer = web.post(
        "/settings/keys",
        data={"kind": "secret", "name": "BI tool", "role": "viewer", "csrf_token": token},
    )
    assert answer.status_code == 201
    key = re.search(r'<code class="secret" id="new-key">(sk_[^<]+)</code>', answer.text)
    assert key
    assert (
        web.get("/api/segments", headers={"Authorization": f"Bearer {key.group(1)}"}).status_code
        == 200
    )
    assert key.group(1) not in web.get("/settings/keys").text  # shown once
    [entry] = audit_rows(engine, "key.create")
    assert entry.details["role"] == "viewer" and key.group(1) not in str(entry.details)
    bad = web.post(
        "/settings/keys", data={"kind": "master", "name": "", "role": "x", "csrf_token": token}
    )
    assert bad.status_code == 422
    assert "Kind: must be write or secret" in text_of(bad.text)
    assert count(engine, api_keys) == 1
    with engine.connect() as conn:
        key_id = conn.execute(sa.select(api_keys.c.id)).scalar_one()
    web.post(f"/settings/keys/{key_id}/revoke", data={"csrf_token": token})
    assert [e.action for e in audit_rows(engine)][-1] == "key.revoke"
    assert (
        web.post(f"/settings/keys/{key_id}/revoke", data={"csrf_token": token}).status_code == 404
    )


def test_the_audit_page_lists_and_filters(web: TestClient, engine: sa.Engine) -> None:
    admin = signed_in(web, engine, "admin")
    make_user(engine, "viewer", "v1@example.com")
    page = text_of(web.get("/audit").text)
    assert "user.create" in page and "session.login" in page and admin.email in page
    only_logins = text_of(web.get("/audit", params={"action": "session."}).text)
    assert "session.login" in only_logins and "user.create" not in only_logins
    assert "No entries." in text_of(web.get("/audit", params={"actor": "nobody"}).text)


def test_audit_entries_never_hold_secrets(engine: sa.Engine) -> None:
    before = table_counts(engine)
    with (
        pytest.raises(ValueError, match="must not hold secrets: password"),
        writing(engine) as conn,
    ):
        audit.record(conn, Actor.cli(), "user.create", "user", 1, T0, {"password": "x"})
    with pytest.raises(ValueError, match="actor kind"), writing(engine) as conn:
        audit.record(conn, Actor("robot", None, "r"), "x", "y", None, T0)
    assert table_counts(engine) == before


def _cli(engine: sa.Engine, *args: str, password_input: str | None = None):  # type: ignore[no-untyped-def]
    from rapport.cli import app as cli

    url = engine.url.render_as_string(hide_password=False)
    return CliRunner().invoke(cli, [*args, "--database-url", url], input=password_input)


def test_the_first_admin_is_made_with_the_command_line(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    quick_hashes(monkeypatch)
    made = _cli(
        engine,
        "users",
        "create",
        "--email",
        "root@example.com",
        "--role",
        "admin",
        password_input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert made.exit_code == 0, made.output
    assert "Created user #1 root@example.com (admin)" in made.output
    assert PASSWORD not in made.output
    with engine.connect() as conn:
        root = find_user(conn, "root@example.com")
    assert root is not None and root.name == "root"
    [entry] = audit_rows(engine)
    assert (entry.actor_kind, entry.action) == ("cli", "user.create")

    before = table_counts(engine)
    bad = _cli(engine, "users", "create", "--email", "x", "--role", "boss", "--password", "short")
    assert bad.exit_code == 1
    for problem in (
        "--email: must be an email address",
        "--role: must be one of",
        "--password: must be at least 10",
    ):
        assert problem in " ".join(bad.output.split()), problem
    assert _cli(engine, "users", "disable", "--email", "root@example.com").exit_code == 1
    assert (
        _cli(
            engine, "users", "set-role", "--email", "nobody@example.com", "--role", "viewer"
        ).exit_code
        == 1
    )
    assert table_counts(engine) == before

    made = _cli(
        engine,
        "users",
        "create",
        "--email",
        "ana@example.com",
        "--role",
        "viewer",
        "--name",
        "Ana",
        "--password",
        PASSWORD,
    )
    assert made.exit_code == 0, made.output
    assert (
        _cli(
            engine, "users", "set-role", "--email", "ana@example.com", "--role", "analyst"
        ).exit_code
        == 0
    )
    assert _cli(engine, "users", "disable", "--email", "ana@example.com").exit_code == 0
    listed = _cli(engine, "users", "list")
    assert "ana@example" in listed.output and "disabled" in listed.output
    assert _cli(engine, "users", "enable", "--email", "ana@example.com").exit_code == 0
    assert (
        _cli(
            engine,
            "users",
            "set-password",
            "--email",
            "ana@example.com",
            "--password",
            "another password",
        ).exit_code
        == 0
    )
    with engine.connect() as conn:
        row = conn.execute(sa.select(users).where(users.c.email == "ana@example.com")).one()
    assert (row.role, row.disabled_at) == ("analyst", None)
    assert verify_password(row.password_hash, "another password")
    assert [e.action for e in audit_rows(engine)][-5:] == [
        "user.create",
        "user.set_role",
        "user.disable",
        "user.enable",
        "user.set_password",
    ]


def test_create_user_refuses_a_taken_email_inside_one_transaction(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    quick_hashes(monkeypatch)
    make_user(engine, "viewer", "same@example.com")
    from rapport.errors import InvalidInput

    before = table_counts(engine)
    with (
        pytest.raises(InvalidInput, match="email: a user with this email already exists"),
        writing(engine) as conn,
    ):
        create_user(
            conn,
            email="SAME@example.com",
            name="x",
            role="viewer",
            password=PASSWORD,
            now=T0,
            actor=Actor.cli(),
        )
    assert table_counts(engine) == before
