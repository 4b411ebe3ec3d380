"""The people who use the web UI: created, given a role, disabled; never deleted, so the
audit log keeps naming who did what.

Every change takes the :class:`~rapport.access.audit.Actor` making it and writes its
audit entry in the same transaction. Bad input raises :class:`InvalidInput` naming each
field before anything is written. The reasons are fixed wordings (no values inside) so
the web UI can show them translated; ``N_`` marks them for the catalogs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.access import audit
from rapport.access.audit import Actor
from rapport.access.passwords import hash_password, needs_rehash, verify_password
from rapport.access.roles import ROLES
from rapport.errors import InvalidInput, Problem
from rapport.ingest.normalize import normalize_email
from rapport.store.engine import writing
from rapport.store.tables import users, web_sessions


def N_(text: str) -> str:
    """Marks a wording the web UI translates (the Babel extraction looks for ``N_``)."""
    return text


MIN_PASSWORD = 10
# argon2 hashes any length, but a megabyte "password" is a denial of service, not a secret.
MAX_PASSWORD = 256
MAX_NAME = 200

BAD_EMAIL = N_("must be an email address")
EMAIL_TAKEN = N_("a user with this email already exists")
BAD_ROLE = N_("must be one of admin, marketer, analyst, viewer")
SHORT_PASSWORD = N_("must be at least 10 characters long")
LONG_PASSWORD = N_("must be at most 256 characters long")
BAD_NAME = N_("must be 1 to 200 characters long")
LAST_ADMIN = N_("the last active admin must stay an active admin")
NO_SUCH_USER = N_("no such user")


@dataclass(frozen=True)
class User:
    id: int
    email: str
    name: str
    role: str
    disabled_at: datetime | None
    created_at: datetime
    last_login_at: datetime | None

    @property
    def active(self) -> bool:
        return self.disabled_at is None


def _user(row: Any) -> User:
    return User(
        id=int(row.id),
        email=row.email,
        name=row.name,
        role=row.role,
        disabled_at=row.disabled_at,
        created_at=row.created_at,
        last_login_at=row.last_login_at,
    )


def _email(value: object, problems: list[Problem]) -> str:
    try:
        return normalize_email(value)
    except ValueError:
        problems.append(Problem("email", BAD_EMAIL))
        return ""


def _password(value: object, problems: list[Problem]) -> None:
    if not isinstance(value, str) or len(value) < MIN_PASSWORD:
        problems.append(Problem("password", SHORT_PASSWORD))
    elif len(value) > MAX_PASSWORD:
        problems.append(Problem("password", LONG_PASSWORD))


def _role(value: object, problems: list[Problem]) -> None:
    if value not in ROLES:
        problems.append(Problem("role", BAD_ROLE))


def get_user(conn: sa.Connection, user_id: int) -> User | None:
    row = conn.execute(sa.select(users).where(users.c.id == user_id)).first()
    return None if row is None else _user(row)


def find_user(conn: sa.Connection, email: str) -> User | None:
    row = conn.execute(sa.select(users).where(users.c.email == email.strip().lower())).first()
    return None if row is None else _user(row)


def list_users(conn: sa.Connection) -> list[User]:
    return [_user(r) for r in conn.execute(sa.select(users).order_by(users.c.id))]


def create_user(
    conn: sa.Connection,
    *,
    email: str,
    name: str,
    role: str,
    password: str,
    now: datetime,
    actor: Actor,
) -> User:
    problems: list[Problem] = []
    address = _email(email, problems)
    clean_name = (name or "").strip()
    if not 1 <= len(clean_name) <= MAX_NAME:
        problems.append(Problem("name", BAD_NAME))
    _role(role, problems)
    _password(password, problems)
    if address and find_user(conn, address) is not None:
        problems.append(Problem("email", EMAIL_TAKEN))
    if problems:
        raise InvalidInput(problems)
    user_id = conn.execute(
        users.insert()
        .values(
            email=address,
            name=clean_name,
            role=role,
            password_hash=hash_password(password),
            created_at=now,
            updated_at=now,
        )
        .returning(users.c.id)
    ).scalar_one()
    audit.record(conn, actor, "user.create", "user", user_id, now, {"email": address, "role": role})
    created = get_user(conn, int(user_id))
    assert created is not None
    return created


def _existing(conn: sa.Connection, user_id: int) -> User:
    user = get_user(conn, user_id)
    if user is None:
        raise InvalidInput([Problem("user", NO_SUCH_USER)])
    return user


def _other_active_admins(conn: sa.Connection, user_id: int) -> int:
    u = users.c
    return int(
        conn.execute(
            sa.select(sa.func.count()).where(
                u.role == "admin", u.disabled_at.is_(None), u.id != user_id
            )
        ).scalar_one()
    )


def set_role(conn: sa.Connection, user_id: int, role: str, now: datetime, actor: Actor) -> User:
    """A new role takes effect at the user's next request (sessions read it each time)."""
    problems: list[Problem] = []
    _role(role, problems)
    if problems:
        raise InvalidInput(problems)
    user = _existing(conn, user_id)
    if user.role == role:
        return user
    if user.role == "admin" and user.active and not _other_active_admins(conn, user_id):
        raise InvalidInput([Problem("role", LAST_ADMIN)])
    conn.execute(users.update().where(users.c.id == user_id).values(role=role, updated_at=now))
    audit.record(
        conn, actor, "user.set_role", "user", user_id, now, {"from": user.role, "to": role}
    )
    return _existing(conn, user_id)


def set_disabled(
    conn: sa.Connection, user_id: int, disabled: bool, now: datetime, actor: Actor
) -> User:
    """Disabling ends the user's sessions at once; enabling lets them log in again."""
    user = _existing(conn, user_id)
    if disabled == (not user.active):
        return user
    if disabled and user.role == "admin" and not _other_active_admins(conn, user_id):
        raise InvalidInput([Problem("user", LAST_ADMIN)])
    conn.execute(
        users.update()
        .where(users.c.id == user_id)
        .values(disabled_at=now if disabled else None, updated_at=now)
    )
    if disabled:
        conn.execute(web_sessions.delete().where(web_sessions.c.user_id == user_id))
    audit.record(conn, actor, "user.disable" if disabled else "user.enable", "user", user_id, now)
    return _existing(conn, user_id)


def set_password(
    conn: sa.Connection, user_id: int, password: str, now: datetime, actor: Actor
) -> None:
    """A new password ends every session of the user (a stolen cookie stops working)."""
    problems: list[Problem] = []
    _password(password, problems)
    if problems:
        raise InvalidInput(problems)
    _existing(conn, user_id)
    conn.execute(
        users.update()
        .where(users.c.id == user_id)
        .values(password_hash=hash_password(password), updated_at=now)
    )
    conn.execute(web_sessions.delete().where(web_sessions.c.user_id == user_id))
    audit.record(conn, actor, "user.set_password", "user", user_id, now)


def authenticate(engine: sa.Engine, email: str, password: str, now: datetime) -> User | None:
    """The active user with this email and password, else None (whichever was wrong).

    The slow hash is checked outside any write transaction (it must not hold the store's
    write lock); then the login time is kept, and a hash made with older argon2 parameters
    is replaced by one with today's.
    """
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(users).where(users.c.email == (email or "").strip().lower())
        ).first()
    if not verify_password(None if row is None else row.password_hash, password or ""):
        return None
    assert row is not None
    if row.disabled_at is not None:
        return None
    values: dict[str, Any] = {"last_login_at": now}
    if needs_rehash(row.password_hash):
        values["password_hash"] = hash_password(password)
    with writing(engine) as conn:
        conn.execute(users.update().where(users.c.id == row.id).values(**values))
        return get_user(conn, int(row.id))
