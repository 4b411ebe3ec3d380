"""Who is asking, in which language, and what they may do: the dependencies every page
uses, and the one ``render`` that turns a template into a response.

A page asks for a permission, never for a role::

    @router.get("/segments")
    def segments(page: Page = Depends(require(Permission.VIEW))) -> Response:
        return render(page, "segments.html", {...})

``require`` logs the person in from the session cookie (or sends the browser to the
login page), checks the CSRF token of any request that changes something, and checks
the permission (403 with a page that says which role is needed).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response

from rapport.access.audit import Actor
from rapport.access.masking import mask_document, mask_email, mask_phone
from rapport.access.roles import PERMISSIONS, Permission, can
from rapport.access.sessions import Session, session_for
from rapport.access.users import User
from rapport.clock import Clock
from rapport.web import nav
from rapport.web.i18n import choose_language, environment
from rapport.web.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    LANGUAGE_COOKIE,
    PAGE_HEADERS,
    SAFE_METHODS,
    SESSION_COOKIE,
    client_ip,
    tokens_match,
)


class LoginRequired(Exception):
    """No live session: the browser goes to the login page and comes back after."""


class Forbidden(Exception):
    def __init__(self, permission: Permission) -> None:
        super().__init__(permission.value)
        self.permission = permission


class CsrfRejected(Exception):
    """A change without this session's CSRF token: refused, nothing done."""


class NotFound(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@dataclass(frozen=True)
class Page:
    """One request of a signed-in person: their session, language and permissions."""

    request: Request
    session: Session
    language: str

    @property
    def user(self) -> User:
        return self.session.user

    @property
    def engine(self) -> sa.Engine:
        return self.request.app.state.engine

    @property
    def clock(self) -> Clock:
        return self.request.app.state.clock

    @property
    def actor(self) -> Actor:
        """The person, for the audit log of any change this request makes."""
        return Actor("user", str(self.user.id), self.user.email, client_ip(self.request))

    def can(self, permission: Permission | str) -> bool:
        return can(self.user.role, Permission(permission))

    @property
    def htmx(self) -> bool:
        return self.request.headers.get("hx-request") == "true"


def language_of(request: Request) -> str:
    return choose_language(
        request.cookies.get(LANGUAGE_COOKIE), request.headers.get("accept-language")
    )


def current_session(request: Request) -> Session | None:
    return session_for(
        request.app.state.engine,
        request.cookies.get(SESSION_COOKIE),
        request.app.state.clock.now(),
    )


async def _check_csrf(request: Request, session: Session) -> None:
    if request.method in SAFE_METHODS:
        return
    given: object = request.headers.get(CSRF_HEADER)
    if not given:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            given = (await request.form()).get(CSRF_FIELD)
    if not tokens_match(given, session.csrf_token):
        raise CsrfRejected()


def _session(request: Request) -> Session | None:
    """A plain function, so FastAPI runs it in its thread pool: the store is never read on
    the event loop (a session lookup may wait for SQLite's write lock)."""
    return current_session(request)


def require(permission: Permission) -> Callable[..., Coroutine[Any, Any, Page]]:
    """A dependency: the signed-in person, checked for CSRF and for ``permission``."""

    async def dependency(request: Request, session: Session | None = Depends(_session)) -> Page:
        if session is None:
            raise LoginRequired()
        await _check_csrf(request, session)
        page = Page(request, session, language_of(request))
        request.state.page = page
        if not page.can(permission):
            raise Forbidden(permission)
        return page

    return dependency


def personal(page: Page) -> Callable[[Any, str], Any]:
    """A template filter: an email or phone as it is, or masked for this person's role."""
    allowed = page.can(Permission.VIEW_PERSONAL)

    def show(value: Any, kind: str = "") -> Any:
        if allowed or value is None:
            return value
        if kind == "email":
            return mask_email(str(value))
        if kind == "phone":
            return mask_phone(str(value))
        return mask_document(value, kind)

    return show


def render(
    page: Page | None,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    request: Request | None = None,
    language: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The template in the request's language, with what every page needs in its context."""
    request = request or (page.request if page else None)
    assert request is not None
    language = language or (page.language if page else language_of(request))
    values: dict[str, Any] = {
        "request": request,
        "path": request.url.path,
        "full_path": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        "page": page,
        "user": page.user if page else None,
        "csrf_token": page.session.csrf_token if page else None,
        "can": page.can if page else (lambda _p: False),
        "P": Permission,
        "personal": personal(page) if page else (lambda v, _k="": v),
        "sections": [s for s in nav.SECTIONS if page and page.can(s.permission)],
        "current_section": nav.section_of(request.url.path),
        "static": static_url,
    }
    values.update(context or {})
    body = environment(language).get_template(template).render(values)
    response = HTMLResponse(body, status_code=status)
    response.headers.update(PAGE_HEADERS)
    response.headers["Content-Language"] = language
    if headers:
        response.headers.update(headers)
    return response


def static_url(name: str) -> str:
    """A static file's URL, with the version so a new release is never served stale."""
    from rapport import __version__

    return f"/static/{name}?v={__version__}"


def role_names(permission: Permission) -> list[str]:
    return sorted(PERMISSIONS[permission])
