"""API keys: write keys for ingest, secret keys for the management API.

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


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(engine: sa.Engine, kind: str, name: str, now: datetime) -> CreatedKey:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    key = _PREFIX[kind] + secrets.token_urlsafe(32)
    with writing(engine) as conn:
        key_id = conn.execute(
            api_keys.insert()
            .values(kind=kind, name=name, prefix=key[:10], key_hash=_hash(key), created_at=now)
            .returning(api_keys.c.id)
        ).scalar_one()
    return CreatedKey(int(key_id), kind, name, key)


def revoke_key(engine: sa.Engine, key_id: int, now: datetime) -> bool:
    with writing(engine) as conn:
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
        self._cache: dict[str, tuple[float, str | None]] = {}

    def kind_of(self, key: str) -> str | None:
        digest = _hash(key)
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        with self.engine.connect() as conn:
            kind = conn.execute(
                sa.select(api_keys.c.kind).where(
                    api_keys.c.key_hash == digest, api_keys.c.revoked_at.is_(None)
                )
            ).scalar()
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now, kind)
        return kind

    def check(self, key: str | None, kind: str) -> bool:
        return bool(key) and self.kind_of(key or "") == kind
