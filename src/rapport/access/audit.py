"""The audit log: who changed what, when.

Every change made by a person (the web UI), a secret key or the command line calls
:func:`record` inside the transaction that makes the change, so an entry exists exactly
when the change does. Entries are never updated or deleted by Rapport; the admin reads
them on the audit page (web/routes/audit.py) or straight from the ``audit_log`` table.

``details`` holds what changed, never a secret: no password, no key, no token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.store.tables import audit_log

ACTOR_KINDS = ("user", "key", "cli", "system")
_FORBIDDEN_DETAILS = frozenset({"password", "password_hash", "key", "token", "csrf_token"})


@dataclass(frozen=True)
class Actor:
    """Who acts: a user (id, email), a secret key (id, name), the command line or Rapport."""

    kind: str
    id: str | None
    name: str
    ip: str | None = None

    @classmethod
    def cli(cls) -> Actor:
        return cls("cli", None, "command line")

    @classmethod
    def system(cls) -> Actor:
        return cls("system", None, "rapport")


@dataclass(frozen=True)
class Entry:
    id: int
    at: datetime
    actor_kind: str
    actor_id: str | None
    actor_name: str
    action: str
    object_type: str
    object_id: str | None
    details: dict[str, Any]
    ip: str | None


def record(
    conn: sa.Connection,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: object,
    now: datetime,
    details: dict[str, Any] | None = None,
) -> None:
    """Write one entry in the caller's transaction (commits or rolls back with the change)."""
    if actor.kind not in ACTOR_KINDS:
        raise ValueError(f"actor kind must be one of {', '.join(ACTOR_KINDS)}")
    leaked = _FORBIDDEN_DETAILS & set(details or {})
    if leaked:
        raise ValueError(f"audit details must not hold secrets: {', '.join(sorted(leaked))}")
    conn.execute(
        audit_log.insert().values(
            at=now,
            actor_kind=actor.kind,
            actor_id=actor.id,
            actor_name=actor.name,
            action=action,
            object_type=object_type,
            object_id=None if object_id is None else str(object_id),
            details=details or {},
            ip=actor.ip,
        )
    )


def entries(
    conn: sa.Connection,
    *,
    limit: int = 50,
    before_id: int | None = None,
    action: str | None = None,
    actor: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
) -> list[Entry]:
    """A page of entries, newest first; ``before_id`` is the id of the last one shown.

    ``action`` matches a prefix (``user.`` finds every change to users); ``actor`` a part
    of the actor's name.
    """
    a = audit_log.c
    query = sa.select(audit_log)
    if before_id is not None:
        query = query.where(a.id < before_id)
    if action:
        query = query.where(a.action.startswith(action, autoescape=True))
    if actor:
        query = query.where(
            sa.func.lower(a.actor_name).contains(actor.strip().lower(), autoescape=True)
        )
    if object_type:
        query = query.where(a.object_type == object_type)
    if object_id:
        query = query.where(a.object_id == object_id)
    query = query.order_by(a.id.desc()).limit(limit)
    return [
        Entry(
            id=int(r.id),
            at=r.at,
            actor_kind=r.actor_kind,
            actor_id=r.actor_id,
            actor_name=r.actor_name,
            action=r.action,
            object_type=r.object_type,
            object_id=r.object_id,
            details=r.details or {},
            ip=r.ip,
        )
        for r in conn.execute(query)
    ]
