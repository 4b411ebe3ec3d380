"""Logging in and out, and the language switch.

The login form has no session yet, so its CSRF check is a double-submit cookie: a random
value in an HttpOnly cookie and the same value in the form. Failed logins are counted per
email and address (access/ratelimit.py); the sixth within the window answers 429 without
checking the password at all.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from rapport.access import audit, ratelimit
from rapport.access.audit import Actor
from rapport.access.roles import Permission
from rapport.access.sessions import IDLE, end_session, start_session
from rapport.access.users import authenticate
from rapport.store.engine import writing
from rapport.web.context import Page, current_session, language_of, render, require
from rapport.web.i18n import LANGUAGES
from rapport.web.security import (
    LANGUAGE_COOKIE,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    clear_cookie,
    client_ip,
    insecure_transport,
    new_token,
    safe_next,
    set_cookie,
    tokens_match,
)

router = APIRouter(include_in_schema=False)

LANGUAGE_MAX_AGE = 365 * 24 * 3600


def _login_page(
    request: Request,
    *,
    next_path: str,
    email: str = "",
    error: str | None = None,
    minutes: int | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    token = new_token()
    response = render(
        None,
        "login.html",
        {
            "login_csrf": token,
            "next_path": next_path,
            "email": email,
            "error": error,
            "minutes": minutes,
            "insecure": insecure_transport(request),
        },
        status=status,
        request=request,
        headers=headers,
    )
    set_cookie(request, response, LOGIN_CSRF_COOKIE, token, max_age=3600)
    return response


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    next_path = safe_next(next)
    if current_session(request) is not None:
        return RedirectResponse(next_path, status_code=303)
    return _login_page(request, next_path=next_path)


@router.post("/login")
def login(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    next_path = safe_next(next)
    engine = request.app.state.engine
    now = request.app.state.clock.now()
    ip = client_ip(request)
    email = email.strip()
    if not tokens_match(csrf_token, request.cookies.get(LOGIN_CSRF_COOKIE)):
        return _login_page(request, next_path=next_path, email=email, error="csrf", status=403)
    with engine.connect() as conn:
        wait = ratelimit.retry_after(conn, email, ip, now)
    if wait is not None:
        minutes = max(1, -(-int(wait.total_seconds()) // 60))
        return _login_page(
            request,
            next_path=next_path,
            email=email,
            error="rate_limited",
            minutes=minutes,
            status=429,
            headers={"Retry-After": str(int(wait.total_seconds()))},
        )
    user = authenticate(engine, email, password, now) if email and password else None
    if user is None:
        with writing(engine) as conn:
            ratelimit.record_failure(conn, email, ip, now)
        return _login_page(request, next_path=next_path, email=email, error="wrong", status=401)
    with writing(engine) as conn:
        ratelimit.clear_failures(conn, email, ip)
        started = start_session(
            conn, user.id, now, ip=ip, user_agent=request.headers.get("user-agent")
        )
        audit.record(
            conn, Actor("user", str(user.id), user.email, ip), "session.login", "user", user.id, now
        )
    response = RedirectResponse(next_path, status_code=303)
    set_cookie(request, response, SESSION_COOKIE, started.token, max_age=int(IDLE.total_seconds()))
    clear_cookie(request, response, LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, page: Page = Depends(require(Permission.VIEW))) -> Response:
    now = page.clock.now()
    with writing(page.engine) as conn:
        end_session(conn, request.cookies.get(SESSION_COOKIE, ""))
        audit.record(conn, page.actor, "session.logout", "user", page.user.id, now)
    response = RedirectResponse("/login", status_code=303)
    clear_cookie(request, response, SESSION_COOKIE)
    return response


@router.get("/lang/{language}")
def switch_language(request: Request, language: str, next: str = "/") -> Response:
    """Sets the language cookie and goes back; the language is a preference, not data."""
    if language not in LANGUAGES:
        return render(
            None,
            "problem.html",
            {"problem": "not_found", "what": language},
            status=404,
            request=request,
            language=language_of(request),
        )
    response = RedirectResponse(safe_next(next), status_code=303)
    set_cookie(request, response, LANGUAGE_COOKIE, language, max_age=LANGUAGE_MAX_AGE)
    return response
