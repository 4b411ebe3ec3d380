"""Cookies, CSRF tokens and the security headers of every page.

**Secure cookies.** The session cookie is ``HttpOnly`` and ``SameSite=Lax`` always, and
``Secure`` unless the request itself came over plain HTTP to a loopback address
(``http://127.0.0.1``, ``http://localhost``, ``http://[::1]``): that is a developer on
their own machine, where no certificate exists and nothing crosses a network. Any other
host gets a ``Secure`` cookie, so a deployment reached over plain HTTP cannot log in at
all (the login page says so) rather than send the session in clear. Behind a TLS proxy,
run uvicorn with ``--proxy-headers`` (``rapport serve`` trusts the proxy on 127.0.0.1) so
the request's scheme is https.

**CSRF.** Every session has a random token (access/sessions.py). Every POST, PUT, PATCH
and DELETE to the UI must carry it: forms in a hidden ``csrf_token`` field, htmx requests
in the ``X-CSRF-Token`` header (static/app.js adds it from the page's ``<meta>``). The
login form, which has no session yet, uses a double-submit cookie instead.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import Response

SESSION_COOKIE = "rapport_session"
LANGUAGE_COOKIE = "rapport_lang"
LOGIN_CSRF_COOKIE = "rapport_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Scripts and styles only from /static: no inline script can run, whatever a customer
    # typed into a name. htmx's own indicator styles are turned off (base.html).
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
}


def is_local_http(request: Request) -> bool:
    return request.url.scheme == "http" and (request.url.hostname or "") in LOOPBACK


def cookie_secure(request: Request) -> bool:
    return not is_local_http(request)


def insecure_transport(request: Request) -> bool:
    """Plain HTTP to another host: the browser would drop the Secure session cookie."""
    return request.url.scheme == "http" and not is_local_http(request)


def set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=cookie_secure(request),
        httponly=True,
        samesite="lax",
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(
        name, path="/", secure=cookie_secure(request), httponly=True, samesite="lax"
    )


def tokens_match(given: object, expected: str | None) -> bool:
    return (
        isinstance(given, str)
        and bool(given)
        and bool(expected)
        and secrets.compare_digest(given.encode(), (expected or "").encode())
    )


def new_token() -> str:
    return secrets.token_urlsafe(32)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def safe_next(value: str | None, default: str = "/") -> str:
    """A local path to go back to; anything else (another site, a scheme) is ignored."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value
