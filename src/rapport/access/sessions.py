"""Server-side sessions of the web UI.

The browser holds a random token in a cookie; the store holds its SHA-256, the user and
the session's CSRF token. Ending a session is deleting its row, so logout, disabling a
user and changing a password take effect on the next request. A session ends after
``IDLE`` without a request and at most ``ABSOLUTE`` after login.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from rapport.access.users import User, get_user
from rapport.store.engine import writing
from rapport.store.tables import web_sessions

IDLE = timedelta(hours=12)
ABSOLUTE = timedelta(days=7)
# last_seen_at is written at most this often: a page view is a read, not a write.
TOUCH_EVERY = timedelta(minutes=5)


@dataclass(frozen=True)
class Session:
    user: User
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class Started:
    token: str
    csrf_token: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(
    conn: sa.Connection,
    user_id: int,
    now: datetime,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
) -> Started:
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    conn.execute(
        web_sessions.insert().values(
            token_hash=_hash(token),
            user_id=user_id,
            csrf_token=csrf,
            created_at=now,
            last_seen_at=now,
            expires_at=min(now + IDLE, now + ABSOLUTE),
            ip=ip,
            user_agent=(user_agent or "")[:300] or None,
        )
    )
    # Expired rows of anybody go now: the table stays the size of the live sessions.
    conn.execute(web_sessions.delete().where(web_sessions.c.expires_at <= now))
    return Started(token, csrf)


def session_for(engine: sa.Engine, token: str | None, now: datetime) -> Session | None:
    """The live session of this cookie value with its (active) user, else None."""
    if not token:
        return None
    s = web_sessions.c
    digest = _hash(token)
    with engine.connect() as conn:
        row = conn.execute(sa.select(web_sessions).where(s.token_hash == digest)).first()
        if row is None or row.expires_at <= now:
            return None
        user = get_user(conn, int(row.user_id))
    if user is None or not user.active:
        return None
    expires = row.expires_at
    if now - row.last_seen_at >= TOUCH_EVERY:
        expires = min(now + IDLE, row.created_at + ABSOLUTE)
        with writing(engine) as conn:
            conn.execute(
                web_sessions.update()
                .where(s.token_hash == digest)
                .values(last_seen_at=now, expires_at=expires)
            )
    return Session(user, row.csrf_token, expires)


def end_session(conn: sa.Connection, token: str) -> bool:
    return bool(
        conn.execute(
            web_sessions.delete().where(web_sessions.c.token_hash == _hash(token))
        ).rowcount
    )
