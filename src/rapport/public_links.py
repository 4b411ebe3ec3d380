"""The signer of this server's public links, made on first use.

Shared by the API and the web UI (both are parts of one app), so it lives beside them
rather than inside either.

Making it needs the store (the signing key may be kept there), so it is not made while
the app is being built, before ``rapport db upgrade`` may have run.
"""

from __future__ import annotations

import threading

from fastapi import FastAPI, Request

from rapport.access.signing import signing_key
from rapport.messaging.tracking import Links

_lock = threading.Lock()


def links_of(app: FastAPI) -> Links:
    links: Links | None = getattr(app.state, "links", None)
    if links is None:
        with _lock:
            links = getattr(app.state, "links", None)
            if links is None:
                settings = app.state.settings
                key = signing_key(app.state.engine, settings.secret_key, app.state.clock.now())
                links = app.state.links = Links(settings.public_url, key)
    return links


def request_links(request: Request) -> Links:
    """FastAPI dependency form of :func:`links_of`."""
    return links_of(request.app)
