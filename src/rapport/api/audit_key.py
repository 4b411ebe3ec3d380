"""The audit log for changes made through the management API.

``require_secret_key`` leaves the key that passed on ``request.state.api_key``; a route
that changes something calls :func:`record_key_change` inside the transaction of the
change, so the entry exists exactly when the change does, with the key's name as the
actor. Action names are the web UI's (``segment.create``, ``scenario.activate``, …), so the
audit page reads the same whichever door a change came through.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from fastapi import Request

from rapport.access import audit
from rapport.access.audit import Actor


def key_actor(request: Request) -> Actor:
    """The secret key that made this request, as an audit actor (kind "key")."""
    key = request.state.api_key
    ip = request.client.host if request.client else None
    return Actor("key", str(key.id), key.name, ip)


def record_key_change(
    conn: sa.Connection,
    request: Request,
    action: str,
    object_type: str,
    object_id: object,
    details: dict[str, Any] | None = None,
    *,
    now: datetime | None = None,
) -> None:
    """One audit entry for this request's key, in ``conn``'s transaction."""
    at = now if now is not None else request.app.state.clock.now()
    audit.record(conn, key_actor(request), action, object_type, object_id, at, details)
