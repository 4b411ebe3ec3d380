"""The marketers' web UI, served by the same app as the API (``rapport serve``, at ``/``).

Server-rendered Jinja2 pages with htmx for the parts that change in place and Chart.js
for charts, both vendored under ``static/vendor`` (nothing to build). Layout:

- ``context.py``   who is asking, the permission check, ``render``
- ``security.py``  cookies, CSRF, the security headers
- ``i18n.py``      languages (Babel catalogs under ``i18n/``), number and date formats
- ``nav.py``       the sections of the navigation, built or coming
- ``routes/``      one module per section
- ``templates/``   one template per page, partials start with ``_``
- ``static/``      CSS, the small app.js, vendored libraries

docs/web.md explains how to add a page.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from rapport.web.context import CsrfRejected, Forbidden, LoginRequired, NotFound, render, role_names
from rapport.web.routes import ROUTERS
from rapport.web.security import safe_next

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Mount the UI on the app: its pages, its static files, its error pages."""
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _: LoginRequired) -> Response:
        if request.headers.get("hx-request") == "true":  # htmx: a full page, not a swap
            current = urlsplit(request.headers.get("hx-current-url", "/"))
            back = safe_next(current.path + (f"?{current.query}" if current.query else ""))
            return Response(status_code=204, headers={"HX-Redirect": _login_url(back)})
        if request.method == "GET":
            back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(_login_url(back), status_code=303)
        return render(None, "problem.html", {"problem": "session"}, status=401, request=request)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        page = getattr(request.state, "page", None)
        return render(
            page,
            "problem.html",
            {"problem": "forbidden", "roles": role_names(exc.permission)},
            status=403,
            request=request,
        )

    @app.exception_handler(CsrfRejected)
    async def _csrf(request: Request, _: CsrfRejected) -> Response:
        return render(None, "problem.html", {"problem": "csrf"}, status=403, request=request)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        page = getattr(request.state, "page", None)
        return render(
            page,
            "problem.html",
            {"problem": "not_found", "what": exc.what},
            status=404,
            request=request,
        )


def _login_url(back: str) -> str:
    return "/login" if back == "/" else f"/login?next={quote(back, safe='/')}"
