"""`rapport users`: the people who log in to the web UI (the first admin is made here).

Every change is written to the audit log as made by the command line.
"""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
import typer
from rich.table import Table

from rapport.cli.common import DatabaseUrl, app, console, settings_for
from rapport.clock import SystemClock
from rapport.store.engine import create_engine

users_app = typer.Typer(
    help="Users of the web UI and their roles: admin, marketer, analyst, viewer.",
    no_args_is_help=True,
)
app.add_typer(users_app, name="users")


def _fail(message: str) -> None:
    console.print(f"[red]{message}[/red]", highlight=False)
    raise typer.Exit(1)


def _engine(database_url: str | None) -> sa.Engine:
    from rapport.store.migrate import upgrade

    engine = create_engine(settings_for(database_url).database_url)
    upgrade(engine)  # the users table may be newer than the store
    return engine


def _user_id(engine: sa.Engine, email: str) -> int:
    from rapport.access.users import find_user

    with engine.connect() as conn:
        user = find_user(conn, email)
    if user is None:
        _fail(f"--email: no user with the email {email!r}")
        raise AssertionError  # not reached: _fail exits
    return user.id


@users_app.command("create")
def create(
    email: Annotated[str, typer.Option("--email", help="the login")],
    role: Annotated[str, typer.Option("--role", help="admin, marketer, analyst or viewer")],
    name: Annotated[str | None, typer.Option("--name", help="shown in the UI")] = None,
    password: Annotated[
        str | None,
        typer.Option("--password", help="at least 10 characters; asked for when left out"),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a user. Without --password the password is asked for twice, hidden."""
    from rapport.access.audit import Actor
    from rapport.access.users import create_user
    from rapport.errors import InvalidInput
    from rapport.store.engine import writing

    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    engine = _engine(database_url)
    try:
        with writing(engine) as conn:
            user = create_user(
                conn,
                email=email,
                name=name or email.split("@")[0],
                role=role,
                password=password,
                now=SystemClock().now(),
                actor=Actor.cli(),
            )
    except InvalidInput as exc:
        _fail("; ".join(f"--{p.where}: {p.reason}" for p in exc.problems))
        return
    console.print(f"Created user #{user.id} {user.email} ({user.role})", highlight=False)


@users_app.command("list")
def list_(database_url: DatabaseUrl = None) -> None:
    """List users with their role, status and last login."""
    from rapport.access.users import list_users

    engine = _engine(database_url)
    with engine.connect() as conn:
        everyone = list_users(conn)
    table = Table("id", "email", "name", "role", "status", "last login", "created")
    for u in everyone:
        table.add_row(
            str(u.id),
            u.email,
            u.name,
            u.role,
            "active" if u.active else "disabled",
            str(u.last_login_at or "")[:19],
            str(u.created_at)[:19],
        )
    console.print(table)


@users_app.command("set-role")
def set_role_cmd(
    email: Annotated[str, typer.Option("--email")],
    role: Annotated[str, typer.Option("--role", help="admin, marketer, analyst or viewer")],
    database_url: DatabaseUrl = None,
) -> None:
    """Change a user's role; it applies from their next page."""
    from rapport.access.audit import Actor
    from rapport.access.users import set_role
    from rapport.errors import InvalidInput
    from rapport.store.engine import writing

    engine = _engine(database_url)
    user_id = _user_id(engine, email)
    try:
        with writing(engine) as conn:
            user = set_role(conn, user_id, role, SystemClock().now(), Actor.cli())
    except InvalidInput as exc:
        _fail("; ".join(f"--{p.where}: {p.reason}" for p in exc.problems))
        return
    console.print(f"{user.email} is now {user.role}", highlight=False)


def _set_disabled(email: str, disabled: bool, database_url: str | None) -> None:
    from rapport.access.audit import Actor
    from rapport.access.users import set_disabled
    from rapport.errors import InvalidInput
    from rapport.store.engine import writing

    engine = _engine(database_url)
    user_id = _user_id(engine, email)
    try:
        with writing(engine) as conn:
            user = set_disabled(conn, user_id, disabled, SystemClock().now(), Actor.cli())
    except InvalidInput as exc:
        _fail("; ".join(f"--email: {p.reason}" for p in exc.problems))
        return
    state = "disabled (logged out everywhere)" if disabled else "enabled"
    console.print(f"{user.email} is {state}", highlight=False)


@users_app.command("disable")
def disable(
    email: Annotated[str, typer.Option("--email")], database_url: DatabaseUrl = None
) -> None:
    """Disable a user: they are logged out and cannot log in. Nothing is deleted."""
    _set_disabled(email, True, database_url)


@users_app.command("enable")
def enable(
    email: Annotated[str, typer.Option("--email")], database_url: DatabaseUrl = None
) -> None:
    """Let a disabled user log in again."""
    _set_disabled(email, False, database_url)


@users_app.command("set-password")
def set_password_cmd(
    email: Annotated[str, typer.Option("--email")],
    password: Annotated[
        str | None, typer.Option("--password", help="asked for when left out")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Set a new password (for an admin who lost theirs); the user's sessions end."""
    from rapport.access.audit import Actor
    from rapport.access.users import set_password
    from rapport.errors import InvalidInput
    from rapport.store.engine import writing

    engine = _engine(database_url)
    user_id = _user_id(engine, email)
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        with writing(engine) as conn:
            set_password(conn, user_id, password, SystemClock().now(), Actor.cli())
    except InvalidInput as exc:
        _fail("; ".join(f"--{p.where}: {p.reason}" for p in exc.problems))
        return
    console.print(f"New password set for {email}", highlight=False)
