"""API keys: write keys for ingest, secret keys for the management API.

A secret key has a role, as a user does (access/roles.py): what it may do through the
management API. Keys made before roles existed are admin keys.

Keys are 32 random bytes, so a fast SHA-256 is the right hash (argon2's slowness protects
guessable passwords, not random keys) and lets every ingest request be checked cheaply.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from rapport.access.roles import check_role
from rapport.store.engine import writing
from rapport.store.tables import api_keys

KINDS = ("write", "secret")
_PREFIX = {"write": "wk_", "secret": "sk_"}


@dataclass(frozen=True)
class CreatedKey:
    id: int
    kind: str
    name: str
    key: str
    role: str | None = None


@dataclass(frozen=True)
class KeyInfo:
    """A valid key: its id and name (who acted, for the audit log), kind and role."""

    id: int
    kind: str
    name: str
    role: str | None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    engine: sa.Engine, kind: str, name: str, now: datetime, role: str | None = None
) -> CreatedKey:
    """A new key; a secret key is an admin key unless ``role`` says otherwise."""
    with writing(engine) as conn:
        return create_key_in(conn, kind, name, now, role)


def create_key_in(
    conn: sa.Connection, kind: str, name: str, now: datetime, role: str | None = None
) -> CreatedKey:
    """As :func:`create_key`, inside the caller's transaction (beside its audit entry)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if kind == "write" and role is not None:
        raise ValueError("role: a write key only sends events and has no role")
    if kind == "secret":
        role = check_role(role or "admin")
    key = _PREFIX[kind] + secrets.token_urlsafe(32)
    key_id = conn.execute(
        api_keys.insert()
        .values(
            kind=kind, name=name, prefix=key[:10], key_hash=_hash(key), created_at=now, role=role
        )
        .returning(api_keys.c.id)
    ).scalar_one()
    return CreatedKey(int(key_id), kind, name, key, role)


def revoke_key(engine: sa.Engine, key_id: int, now: datetime) -> bool:
    with writing(engine) as conn:
        return revoke_key_in(conn, key_id, now)


def revoke_key_in(conn: sa.Connection, key_id: int, now: datetime) -> bool:
    done = conn.execute(
        api_keys.update()
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    ).rowcount
    return bool(done)


def list_keys(engine: sa.Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.id)).all()
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "name": r.name,
            "prefix": r.prefix,
            "role": r.role,
            "created_at": r.created_at,
            "revoked_at": r.revoked_at,
        }
        for r in rows
    ]


class KeyChecker:
    """Answers "is this a valid key of this kind" with a short cache (revocation lag ≤ ttl)."""

    def __init__(self, engine: sa.Engine, ttl: float = 5.0) -> None:
        self.engine = engine
        self.ttl = ttl
        self._cache: dict[str, tuple[float, KeyInfo | None]] = {}

    def lookup(self, key: str) -> KeyInfo | None:
        """The key's id, name, kind and role; None for an unknown or revoked key."""
        digest = _hash(key)
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        k = api_keys.c
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(k.id, k.kind, k.name, k.role).where(
                    k.key_hash == digest, k.revoked_at.is_(None)
                )
            ).first()
        info = None if row is None else KeyInfo(int(row.id), row.kind, row.name, row.role)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now, info)
        return info

    def kind_of(self, key: str) -> str | None:
        info = self.lookup(key)
        return None if info is None else info.kind

    def check(self, key: str | None, kind: str) -> bool:
        return bool(key) and self.kind_of(key or "") == kind
