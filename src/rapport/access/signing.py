"""The key that signs links Rapport puts in messages (tracking, unsubscribe, deep links).

An operator may set ``RAPPORT_SECRET_KEY``; otherwise a random key is made the first time
one is needed and kept in ``app_settings``, so every process on the same store signs and
verifies with the same key and links in old messages keep working after a restart.
"""

from __future__ import annotations

import secrets
from datetime import datetime

import sqlalchemy as sa

from rapport.store.engine import upsert, writing
from rapport.store.tables import app_settings

KEY = "signing_key"


def signing_key(engine: sa.Engine, configured: str | None, now: datetime) -> bytes:
    """The configured key, else the stored one, else a new one stored now."""
    if configured:
        return configured.encode()
    with writing(engine) as conn:
        stmt = upsert(conn, app_settings).values(
            key=KEY, value={"key": secrets.token_urlsafe(32)}, updated_at=now
        )
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))
        value = conn.execute(
            sa.select(app_settings.c.value).where(app_settings.c.key == KEY)
        ).scalar_one()
    return str(value["key"]).encode()
