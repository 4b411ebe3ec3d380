"""Write keys (HTTP Basic username, or ``writeKey`` in the body) and secret keys (Bearer)."""

from __future__ import annotations

import base64
import binascii

from fastapi import Request

from rapport.access.keys import KeyChecker
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
    """FastAPI dependency for the management API."""
    checker: KeyChecker = request.app.state.keys
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "authorization: Bearer <secret key> is required")
    kind = checker.kind_of(token.strip())
    if kind == "write":
        raise ApiError(
            401, "authorization: a write key cannot use the management API; use a secret key"
        )
    if kind != "secret":
        raise ApiError(401, "authorization: the secret key is not valid (unknown or revoked)")
