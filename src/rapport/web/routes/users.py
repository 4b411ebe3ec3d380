"""Settings → Users (admin): list, create, change a role, disable or enable.

Every change goes through access/users.py, which writes the audit entry in the same
transaction. Forms are plain POSTs answered with a redirect (so a reload does not repeat
them); a rejected form is shown again with each problem beside its field, and nothing is
stored.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form
from fastapi.responses import RedirectResponse, Response

from rapport.access import users as people
from rapport.access.roles import ROLES, Permission
from rapport.errors import InvalidInput
from rapport.store.engine import writing
from rapport.web.context import NotFound, Page, render, require

router = APIRouter(include_in_schema=False)

DONE = ("created", "role", "disabled", "enabled")


def _page(
    page: Page,
    *,
    form: dict[str, Any] | None = None,
    problems: Any = None,
    status: int = 200,
    done: str | None = None,
) -> Response:
    with page.engine.connect() as conn:
        everyone = people.list_users(conn)
    return render(
        page,
        "users.html",
        {
            "users": everyone,
            "roles": ROLES,
            "form": form or {"role": "marketer"},
            "problems": problems or [],
            "done": done if done in DONE else None,
        },
        status=status,
    )


@router.get("/settings/users")
def users_page(
    done: str | None = None, page: Page = Depends(require(Permission.MANAGE_USERS))
) -> Response:
    return _page(page, done=done)


@router.post("/settings/users")
def create(
    email: Annotated[str, Form(max_length=320)] = "",
    name: Annotated[str, Form(max_length=500)] = "",
    role: Annotated[str, Form(max_length=20)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    page: Page = Depends(require(Permission.MANAGE_USERS)),
) -> Response:
    try:
        with writing(page.engine) as conn:
            people.create_user(
                conn,
                email=email,
                name=name,
                role=role,
                password=password,
                now=page.clock.now(),
                actor=page.actor,
            )
    except InvalidInput as exc:
        form = {"email": email, "name": name, "role": role}
        return _page(page, form=form, problems=exc.problems, status=422)
    return RedirectResponse("/settings/users?done=created", status_code=303)


def _change(page: Page, user_id: int, change: str, value: str = "") -> Response:
    now = page.clock.now()
    try:
        with writing(page.engine) as conn:
            if people.get_user(conn, user_id) is None:
                raise NotFound(f"user {user_id}")
            if change == "role":
                people.set_role(conn, user_id, value, now, page.actor)
            else:
                people.set_disabled(conn, user_id, change == "disabled", now, page.actor)
    except InvalidInput as exc:
        return _page(page, problems=exc.problems, status=422)
    return RedirectResponse(f"/settings/users?done={change}", status_code=303)


@router.post("/settings/users/{user_id}/role")
def change_role(
    user_id: int,
    role: Annotated[str, Form(max_length=20)] = "",
    page: Page = Depends(require(Permission.MANAGE_USERS)),
) -> Response:
    return _change(page, user_id, "role", role)


@router.post("/settings/users/{user_id}/disable")
def disable(user_id: int, page: Page = Depends(require(Permission.MANAGE_USERS))) -> Response:
    return _change(page, user_id, "disabled")


@router.post("/settings/users/{user_id}/enable")
def enable(user_id: int, page: Page = Depends(require(Permission.MANAGE_USERS))) -> Response:
    return _change(page, user_id, "enabled")
