"""Account-manager tasks (management API, Bearer secret key): list, done, reopen, assign.

Thin over ``rapport.customers.tasks``, the functions the Tasks page calls; every change
writes its audit entry there. Reads take any key; changes a marketer or admin key.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from rapport.api.audit_key import key_actor
from rapport.api.auth import require_secret_key
from rapport.api.errors import ApiError
from rapport.customers import tasks
from rapport.errors import InvalidInput
from rapport.store.engine import writing

router = APIRouter(prefix="/api/tasks", tags=["tasks"], dependencies=[Depends(require_secret_key)])


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


@router.get("")
def list_tasks(
    request: Request,
    status: str = Query("open", description="open, done or all"),
    assignee: str | None = Query(None, max_length=200, description="only this person's"),
    customer_id: int | None = Query(None, description="only this customer's"),
    limit: int = Query(100, ge=1, le=tasks.MAX_LIMIT),
    offset: int = Query(0, ge=0),
) -> Response:
    """Open tasks first, newest first; ``total`` counts every task the filters match."""
    query = tasks.TaskQuery(status=status, assignee=assignee, customer_id=customer_id)
    try:
        with request.app.state.engine.connect() as conn:
            found = tasks.list_tasks(conn, query, limit=limit, offset=offset, where="query")
            total = tasks.count_tasks(conn, query, where="query")
    except InvalidInput as exc:
        raise ApiError(422, str(exc), exc.problems) from None
    return _json({"tasks": [t.as_dict() for t in found], "total": total})


def _change(request: Request, task_id: int, change: Any) -> Response:
    now = request.app.state.clock.now()
    try:
        with writing(request.app.state.engine) as conn:
            task, changed = change(conn, key_actor(request), now)
    except tasks.TaskNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except InvalidInput as exc:
        raise ApiError(422, str(exc), exc.problems) from None
    return _json(task.as_dict() | {"changed": changed})


@router.post("/{task_id}/done")
def done(request: Request, task_id: int) -> Response:
    """Mark the task done; ``changed`` is false when it already was (nothing recorded)."""
    return _change(
        request, task_id, lambda conn, actor, now: tasks.complete(conn, task_id, actor, now)
    )


@router.post("/{task_id}/reopen")
def reopen(request: Request, task_id: int) -> Response:
    """Open a done task again."""
    return _change(
        request, task_id, lambda conn, actor, now: tasks.reopen(conn, task_id, actor, now)
    )


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee: str | None = Field(
        description="who takes the task (a user's email, as the web page writes it); null: nobody"
    )


@router.post("/{task_id}/assign")
def assign(request: Request, task_id: int, body: AssignIn) -> Response:
    """Give the task to someone, or to nobody."""
    return _change(
        request,
        task_id,
        lambda conn, actor, now: tasks.assign(
            conn, task_id, body.assignee, actor, now, where="body.assignee"
        ),
    )
