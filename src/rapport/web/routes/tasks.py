"""Tasks: what scenarios left for account managers ("call the customer"), open first.

The list and every change go through ``rapport.customers.tasks``, the functions behind
``/api/tasks``; those write the audit entry (``task.complete``, ``task.reopen``,
``task.assign``) in the transaction of the change. Everyone signed in reads the list (a
viewer sees addresses masked); marking done, reopening and taking a task need
``edit_marketing``. "Mine" is the tasks assigned to the signed-in person's email, which
is what "Assign to me" writes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, Query
from fastapi.responses import RedirectResponse, Response

from rapport.access.audit import Actor
from rapport.access.roles import Permission
from rapport.access.users import list_users
from rapport.customers import tasks
from rapport.errors import InvalidInput, Problem
from rapport.store.engine import writing
from rapport.web.context import NotFound, Page, render, require
from rapport.web.customer_refs import customer_refs
from rapport.web.i18n import N_
from rapport.web.security import safe_next

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 100
STATUS_CHOICES = (("open", N_("Open")), ("done", N_("Done")), ("all", N_("All")))
WHO_CHOICES = (("all", N_("Everyone's")), ("mine", N_("Mine")))
DONE = {"done": N_("The task is done."), "reopened": N_("The task is open again.")}
DONE |= {"assigned": N_("The task is yours.")}


def _id(text: str) -> int:
    if not text.isdigit() or len(text) > 15:
        raise NotFound(f"task {text}")
    return int(text)


@router.get("/tasks")
def tasks_page(
    status: str = Query("open", max_length=10),
    who: str = Query("all", max_length=10),
    offset: int = Query(0, ge=0, le=10_000_000),
    done: str = Query("", max_length=20),
    page: Page = Depends(require(Permission.VIEW)),
) -> Response:
    return _list(page, status, who, offset, done=done)


def _list(
    page: Page,
    status: str,
    who: str,
    offset: int,
    *,
    done: str = "",
    problems: list[Problem] | None = None,
    code: int = 200,
) -> Response:
    status = status if status in tasks.FILTERS else "open"
    who = who if who in dict(WHO_CHOICES) else "all"
    query = tasks.TaskQuery(status=status, assignee=page.user.email if who == "mine" else None)
    with page.engine.connect() as conn:
        found = tasks.list_tasks(conn, query, limit=PAGE_SIZE, offset=offset)
        total = tasks.count_tasks(conn, query)
        refs = customer_refs(conn, (t.customer_id for t in found))
        names = {u.email: u.name for u in list_users(conn)}
    here = "/tasks?" + urlencode({"status": status, "who": who, "offset": offset})
    more = offset + PAGE_SIZE < total
    return render(
        page,
        "tasks.html",
        {
            "tasks": found,
            "total": total,
            "refs": refs,
            "names": names,
            "status": status,
            "who": who,
            "offset": offset,
            "page_size": PAGE_SIZE,
            "next_offset": offset + PAGE_SIZE if more else None,
            "status_choices": STATUS_CHOICES,
            "who_choices": WHO_CHOICES,
            "here": here,
            "done": DONE.get(done),
            "problems": problems or [],
        },
        status=code,
    )


Change = Callable[[sa.Connection, int, Actor], tuple[tasks.Task, bool]]


def _change(page: Page, task_id: str, change: Change, done: str, back: str) -> Response:
    number = _id(task_id)
    try:
        with writing(page.engine) as conn:
            change(conn, number, page.actor)
    except tasks.TaskNotFound:
        raise NotFound(f"task {number}") from None
    target = safe_next(back, "/tasks")
    joiner = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{joiner}done={done}", status_code=303)


@router.post("/tasks/{task_id}/done")
def mark_done(
    task_id: str,
    next_path: Annotated[str, Form(alias="next", max_length=500)] = "/tasks",
    page: Page = Depends(require(Permission.EDIT_MARKETING)),
) -> Response:
    now = page.clock.now()
    return _change(page, task_id, lambda c, i, a: tasks.complete(c, i, a, now), "done", next_path)


@router.post("/tasks/{task_id}/reopen")
def reopen(
    task_id: str,
    next_path: Annotated[str, Form(alias="next", max_length=500)] = "/tasks",
    page: Page = Depends(require(Permission.EDIT_MARKETING)),
) -> Response:
    now = page.clock.now()
    return _change(page, task_id, lambda c, i, a: tasks.reopen(c, i, a, now), "reopened", next_path)


@router.post("/tasks/{task_id}/assign")
def assign_to_me(
    task_id: str,
    next_path: Annotated[str, Form(alias="next", max_length=500)] = "/tasks",
    page: Page = Depends(require(Permission.EDIT_MARKETING)),
) -> Response:
    """The signed-in person takes the task (their email is what "Mine" looks for)."""
    now = page.clock.now()
    me = page.user.email
    try:
        return _change(
            page, task_id, lambda c, i, a: tasks.assign(c, i, me, a, now), "assigned", next_path
        )
    except InvalidInput as exc:  # an email longer than the column: said, nothing stored
        return _list(page, "open", "all", 0, problems=exc.problems, code=422)
