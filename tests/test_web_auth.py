"""Logging in: sessions, cookie flags, wrong passwords, the rate limit, CSRF, logout."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.access import ratelimit
from rapport.clock import SimulatedClock
from rapport.store.tables import login_failures, users, web_sessions
from tests.helpers import count, table_counts
from tests.test_web_support import (
    PASSWORD,
    audit_rows,
    csrf_of,
    login,
    login_token,
    make_user,
    signed_in,
    web_client,  # noqa: F401  (the `web` fixture)
)


def test_pages_send_a_stranger_to_the_login_page(web: TestClient) -> None:
    answer = web.get("/customers?q=ann", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/customers%3Fq%3Dann"
    htmx = web.get("/dashboard/panel", headers={"HX-Request": "true"}, follow_redirects=False)
    assert htmx.headers["HX-Redirect"] == "/login"
    # A change without a session is refused and says why.
    posted = web.post("/settings/users", data={"email": "x@example.com"}, follow_redirects=False)
    assert posted.status_code == 401
    assert "session has ended" in posted.text


def test_login_starts_a_session_with_a_safe_cookie(web: TestClient, engine: sa.Engine) -> None:
    user = make_user(engine, "marketer")
    answer = login(web, "  Marketer@Example.com ", next_path="/customers")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/customers"
    cookie = next(
        c for c in answer.headers.get_list("set-cookie") if c.startswith("rapport_session=")
    )
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    # Plain HTTP to 127.0.0.1 is a developer's machine: no Secure flag there only.
    assert "Secure" not in cookie
    assert count(engine, web_sessions) == 1
    with engine.connect() as conn:
        token_hash = conn.execute(sa.select(web_sessions.c.token_hash)).scalar_one()
        assert conn.execute(sa.select(users.c.last_login_at)).scalar_one() is not None
    # The store keeps a hash of the cookie's token, never the token itself.
    assert token_hash not in cookie
    assert web.get("/customers").status_code == 200
    [entry] = audit_rows(engine, "session.login")
    assert (entry.actor_kind, entry.actor_name, entry.object_id) == (
        "user",
        user.email,
        str(user.id),
    )


def test_the_cookie_is_secure_anywhere_but_local_http(app, engine: sa.Engine) -> None:  # type: ignore[no-untyped-def]
    make_user(engine, "viewer")
    # (No lifespan needed for pages: the clients are not entered as context managers.)
    answer = login(TestClient(app, base_url="https://rapport.example.com"), "viewer@example.com")
    cookie = answer.headers["set-cookie"]
    assert "rapport_session=" in cookie and "Secure" in cookie
    # Plain HTTP elsewhere: the page warns that the Secure cookie cannot come back.
    plain = TestClient(app, base_url="http://rapport.example.com")
    assert "plain HTTP" in plain.get("/login").text
    assert "plain HTTP" not in TestClient(app, base_url="http://127.0.0.1").get("/login").text


def test_wrong_password_and_unknown_email_say_the_same(web: TestClient, engine: sa.Engine) -> None:
    make_user(engine, "viewer")
    before = count(engine, web_sessions)
    for email, password in [
        ("viewer@example.com", "not the password"),
        ("nobody@example.com", PASSWORD),
    ]:
        answer = login(web, email, password)
        assert answer.status_code == 401
        assert "Wrong email or password." in answer.text
    assert count(engine, web_sessions) == before
    assert count(engine, login_failures) == 2
    assert web.get("/", follow_redirects=False).status_code == 303


def test_a_disabled_user_cannot_log_in(web: TestClient, engine: sa.Engine) -> None:
    make_user(engine, "admin")
    user = make_user(engine, "viewer")
    with engine.begin() as conn:
        conn.execute(users.update().where(users.c.id == user.id).values(disabled_at=sa.func.now()))
    assert login(web, user.email).status_code == 401


def test_the_sixth_failure_in_fifteen_minutes_is_refused(
    web: TestClient, engine: sa.Engine, clock: SimulatedClock
) -> None:
    make_user(engine, "analyst")
    for _ in range(ratelimit.MAX_FAILURES):
        assert login(web, "analyst@example.com", "wrong password!").status_code == 401
    # Even the right password is not checked now.
    limited = login(web, "analyst@example.com")
    assert limited.status_code == 429
    assert "Too many failed logins" in limited.text and "15 minutes" in limited.text
    assert int(limited.headers["Retry-After"]) == 15 * 60
    assert count(engine, web_sessions) == 0
    # Another email from the same address is not held back.
    make_user(engine, "viewer")
    assert login(web, "viewer@example.com").status_code == 303
    web.cookies.clear()
    # When the oldest failure leaves the window, the next try is checked again.
    clock.advance(ratelimit.WINDOW + timedelta(seconds=1))
    assert login(web, "analyst@example.com").status_code == 303
    with engine.connect() as conn:
        left = conn.execute(
            sa.select(sa.func.count()).where(login_failures.c.email == "analyst@example.com")
        ).scalar_one()
    assert left == 0  # a good login clears the failures


def test_login_without_its_form_token_is_refused(web: TestClient, engine: sa.Engine) -> None:
    make_user(engine, "admin")
    login_token(web)  # the cookie half is set, the form half is missing
    answer = web.post(
        "/login",
        data={"email": "admin@example.com", "password": PASSWORD},
        follow_redirects=False,
    )
    assert answer.status_code == 403
    assert "form had expired" in answer.text
    assert count(engine, web_sessions) == 0


def test_changes_without_the_csrf_token_are_refused(web: TestClient, engine: sa.Engine) -> None:
    signed_in(web, engine, "admin")
    form = {"email": "new@example.com", "name": "New", "role": "viewer", "password": PASSWORD}
    before = table_counts(engine)
    for extra in ({}, {"csrf_token": "forged"}):
        answer = web.post("/settings/users", data=form | extra, follow_redirects=False)
        assert answer.status_code == 403
        assert "security token" in answer.text
    assert table_counts(engine) == before  # nothing stored, not even an audit entry
    token = csrf_of(web)
    # htmx sends the token in a header; a form sends it in a field. Both are accepted.
    answer = web.post(
        "/settings/users", data=form, headers={"X-CSRF-Token": token}, follow_redirects=False
    )
    assert answer.status_code == 303
    answer = web.post(
        "/settings/users",
        data=form | {"email": "other@example.com", "csrf_token": token},
        follow_redirects=False,
    )
    assert answer.status_code == 303


def test_logout_ends_the_session(web: TestClient, engine: sa.Engine) -> None:
    signed_in(web, engine, "viewer")
    token = csrf_of(web)
    cookie = web.cookies.get("rapport_session")
    answer = web.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert count(engine, web_sessions) == 0
    # The old cookie, replayed, opens nothing.
    web.cookies.set("rapport_session", cookie or "", domain="127.0.0.1")
    assert web.get("/", follow_redirects=False).status_code == 303
    assert [e.action for e in audit_rows(engine)] == [
        "user.create",
        "session.login",
        "session.logout",
    ]


def test_sessions_end_after_twelve_idle_hours(
    web: TestClient, engine: sa.Engine, clock: SimulatedClock
) -> None:
    signed_in(web, engine, "viewer")
    clock.advance(timedelta(hours=11))
    assert web.get("/settings", follow_redirects=False).status_code == 200  # slides on
    clock.advance(timedelta(hours=11))
    assert web.get("/settings", follow_redirects=False).status_code == 200
    clock.advance(timedelta(hours=12, seconds=1))
    assert web.get("/settings", follow_redirects=False).status_code == 303


def test_login_goes_back_only_to_a_local_page(web: TestClient, engine: sa.Engine) -> None:
    make_user(engine, "viewer")
    for target in ("//evil.example.com/x", "https://evil.example.com/", "/\\evil.example.com"):
        answer = login(web, "viewer@example.com", next_path=target)
        assert answer.headers["location"] == "/", target
        web.cookies.clear()
