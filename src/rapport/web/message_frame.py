"""A rendered message shown inside a page: its own document, in a sandboxed frame.

An e-mail's HTML is written by template authors and filled with customers' data; it must
not run in the page, and the page's policy (no inline styles) would strip its looks. So it
is served by its own route, as its own document, with a policy of its own:

- ``sandbox`` (and the ``<iframe sandbox>`` that shows it): an opaque origin, no scripts,
  no forms, no popups, no navigation of the page;
- ``default-src 'none'``: nothing loads but styles, fonts and images, inline or over
  https (product pictures, MJML's web fonts), as a mail client would load them; previews
  are rendered with tracking off, so looking at one is never counted as an open or a
  click;
- framed by Rapport's own pages only (``frame-ancestors 'self'``).

The page points the frame at a GET route for what is stored (a campaign, a saved
template) and posts a draft into it (the template editor's live preview, app.js).
"""

from __future__ import annotations

from html import escape

from fastapi.responses import HTMLResponse

FRAME_HEADERS = {
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; style-src 'unsafe-inline' https:; img-src https: data:; "
        "font-src https: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
    ),
    "X-Frame-Options": "SAMEORIGIN",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def frame_response(html: str | None, *, status: int = 200) -> HTMLResponse:
    """The message's HTML as a document for a sandboxed frame (an empty one for None)."""
    return HTMLResponse(html or "<!doctype html><title>-</title>", status, headers=FRAME_HEADERS)


def frame_problem(message: str, *, status: int = 422) -> HTMLResponse:
    """A short plain page in the frame when the message cannot be rendered."""
    body = f"<!doctype html><meta charset=utf-8><title>-</title><p>{escape(message)}</p>"
    return HTMLResponse(body, status, headers=FRAME_HEADERS)
