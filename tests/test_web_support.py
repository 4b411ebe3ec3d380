"""What the web UI tests share: a browser-like client, users of each role, logging in.

The client talks to http://127.0.0.1, the address a developer uses: the session cookie is
then not Secure (web/security.py), so the cookie jar sends it back over plain HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from rapport.access import passwords
from rapport.access.audit import Actor
from rapport.access.users import User, create_user
from rapport.store.engine import writing
from rapport.store.tables import audit_log
from tests.conftest import T0

PASSWORD = "correct horse battery"
LOCAL = "http://127.0.0.1"


def make_user(
    engine: sa.Engine, role: str, email: str | None = None, name: str | None = None
) -> User:
    with writing(engine) as conn:
        return create_user(
            conn,
            email=email or f"{role}@example.com",
            name=name or role.title(),
            role=role,
            password=PASSWORD,
            now=T0,
            actor=Actor.cli(),
        )


def login_token(client: TestClient) -> str:
    page = client.get("/login")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def login(client: TestClient, email: str, password: str = PASSWORD, next_path: str = "/"):  # type: ignore[no-untyped-def]
    token = login_token(client)
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token, "next": next_path},
        follow_redirects=False,
    )


def csrf_of(client: TestClient, path: str = "/settings") -> str:
    page = client.get(path)
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def audit_rows(
    engine: sa.Engine, action: str | None = None, *, kind: str | None = None
) -> list[sa.Row]:
    """The audit entries, oldest first; ``kind`` keeps one door's (``user``: the UI's, when
    a test also set things up through the API, whose key changes are audited too)."""
    query = sa.select(audit_log).order_by(audit_log.c.id)
    if action:
        query = query.where(audit_log.c.action == action)
    if kind:
        query = query.where(audit_log.c.actor_kind == kind)
    with engine.connect() as conn:
        return list(conn.execute(query).all())


def quick_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 with its smallest cost: the same code path, a millisecond instead of half a
    second per hash on a test machine. test_web_users.py checks the real parameters."""
    quick = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(passwords, "_hasher", quick)
    monkeypatch.setattr(passwords, "_DUMMY", quick.hash("dummy"))


@pytest.fixture(name="web")
def web_client(app, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    quick_hashes(monkeypatch)
    with TestClient(app, base_url=LOCAL) as c:
        yield c


def signed_in(client: TestClient, engine: sa.Engine, role: str) -> User:
    user = make_user(engine, role)
    answer = login(client, user.email)
    assert answer.status_code == 303, answer.text
    return user


def text_of(html: str) -> str:
    """The page's text without tags, for "does the page say X" checks."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
