"""Write keys (HTTP Basic username, or ``writeKey`` in the body) and secret keys (Bearer).

A secret key has a role; what each request needs is decided by
:func:`rapport.access.roles.api_permission` (a viewer key reads, it cannot change).
"""

from __future__ import annotations

import base64
import binascii

from fastapi import Request

from rapport.access.keys import KeyChecker
from rapport.access.roles import api_permission, can
from rapport.api.errors import ApiError


def basic_username(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError(401, "authorization: malformed Basic credentials") from None
    return decoded.partition(":")[0] or None


def require_write_key(request: Request, checker: KeyChecker, body_key: object) -> None:
    key = basic_username(request)
    if key is None and isinstance(body_key, str) and body_key:
        key = body_key
    if key is None:
        raise ApiError(
            401, "a write key is required: HTTP Basic with the key as username, or writeKey"
        )
    kind = checker.kind_of(key)
    if kind == "secret":
        raise ApiError(401, "authorization: a secret key cannot send events; use a write key")
    if kind != "write":
        raise ApiError(401, "authorization: the write key is not valid (unknown or revoked)")


def require_secret_key(request: Request) -> None:
    """FastAPI dependency for the management API: a valid secret key whose role allows
    the request. The key is left on ``request.state.api_key`` (who acted, for an audit)."""
    checker: KeyChecker = request.app.state.keys
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "authorization: Bearer <secret key> is required")
    info = checker.lookup(token.strip())
    if info is not None and info.kind == "write":
        raise ApiError(
            401, "authorization: a write key cannot use the management API; use a secret key"
        )
    if info is None or info.kind != "secret":
        raise ApiError(401, "authorization: the secret key is not valid (unknown or revoked)")
    needed = api_permission(request.method, request.url.path)
    if not can(info.role, needed):
        raise ApiError(
            403,
            f"authorization: this key's role ({info.role}) does not allow "
            f"{request.method} {request.url.path} (it needs the {needed.value} permission)",
        )
    request.state.api_key = info
