"""Account-manager tasks: "call the customer", left by a scenario's ``task`` action.

A scenario step writes the row (``scenarios/steps.py``); people read, finish, reopen and
take tasks here, from the web page or ``/api/tasks``, through the same functions. Each
change writes its audit entry in the caller's transaction, so neither caller can forget
it, and is made with a conditional UPDATE: marking done a task that is already done (a
double click, a retried request) changes nothing and writes no second entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.access.audit import Actor, record
from rapport.errors import InvalidInput, Problem
from rapport.store.tables import scenarios, tasks

STATUSES = ("open", "done")
# What a list can ask for: one status, or both.
FILTERS = (*STATUSES, "all")
MAX_LIMIT = 500
MAX_ASSIGNEE = 200  # the column's width


class TaskNotFound(LookupError):
    def __init__(self, task_id: int) -> None:
        super().__init__(f"task {task_id} does not exist")
        self.task_id = task_id


@dataclass(frozen=True)
class Task:
    id: int
    customer_id: int
    scenario_id: int | None
    scenario_name: str | None
    run_id: int | None
    title: str
    status: str
    assignee: str | None
    created_at: datetime
    done_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "customer_id": self.customer_id,
            "scenario_id": self.scenario_id,
            "scenario": self.scenario_name,
            "run_id": self.run_id,
            "title": self.title,
            "status": self.status,
            "assignee": self.assignee,
            "created_at": self.created_at.isoformat(),
            "done_at": None if self.done_at is None else self.done_at.isoformat(),
        }


@dataclass(frozen=True)
class TaskQuery:
    """Which tasks a list shows: a status filter, one assignee (None: anyone's), a customer."""

    status: str = "open"
    assignee: str | None = None
    customer_id: int | None = None


def _select() -> sa.Select[Any]:
    t = tasks.c
    return sa.select(
        t.id,
        t.customer_id,
        t.scenario_id,
        scenarios.c.name.label("scenario_name"),
        t.run_id,
        t.title,
        t.status,
        t.assignee,
        t.created_at,
        t.done_at,
    ).select_from(tasks.outerjoin(scenarios, scenarios.c.id == t.scenario_id))


def _task(row: Any) -> Task:
    return Task(
        id=int(row.id),
        customer_id=int(row.customer_id),
        scenario_id=None if row.scenario_id is None else int(row.scenario_id),
        scenario_name=row.scenario_name,
        run_id=None if row.run_id is None else int(row.run_id),
        title=row.title,
        status=row.status,
        assignee=row.assignee,
        created_at=row.created_at,
        done_at=row.done_at,
    )


def _where(query: TaskQuery, where: str) -> list[sa.ColumnElement[bool]]:
    at = f"{where}." if where else ""
    if query.status not in FILTERS:
        raise InvalidInput(
            [Problem(f"{at}status", f"one of {', '.join(FILTERS)}, not {query.status!r}")]
        )
    conditions: list[sa.ColumnElement[bool]] = []
    if query.status != "all":
        conditions.append(tasks.c.status == query.status)
    if query.assignee is not None:
        conditions.append(tasks.c.assignee == query.assignee)
    if query.customer_id is not None:
        conditions.append(tasks.c.customer_id == query.customer_id)
    return conditions


def list_tasks(
    conn: sa.Connection,
    query: TaskQuery,
    *,
    limit: int = 100,
    offset: int = 0,
    where: str = "",
) -> list[Task]:
    """Open tasks first, then done ones; newest first within each. A bad filter is an
    ``InvalidInput`` at ``{where}.status``."""
    conditions = _where(query, where)
    limit = max(1, min(limit, MAX_LIMIT))
    open_first = sa.case((tasks.c.status == "open", 0), else_=1)
    rows = conn.execute(
        _select()
        .where(*conditions)
        .order_by(open_first, tasks.c.created_at.desc(), tasks.c.id.desc())
        .limit(limit)
        .offset(max(offset, 0))
    ).all()
    return [_task(r) for r in rows]


def count_tasks(conn: sa.Connection, query: TaskQuery, where: str = "") -> int:
    conditions = _where(query, where)
    return int(
        conn.execute(sa.select(sa.func.count()).select_from(tasks).where(*conditions)).scalar_one()
    )


def get_task(conn: sa.Connection, task_id: int) -> Task:
    row = conn.execute(_select().where(tasks.c.id == task_id)).first()
    if row is None:
        raise TaskNotFound(task_id)
    return _task(row)


def _change(
    conn: sa.Connection,
    task_id: int,
    values: dict[str, Any],
    needed: sa.ColumnElement[bool],
    audit: tuple[Actor, str, datetime, dict[str, Any]],
) -> tuple[Task, bool]:
    """Apply ``values`` to the row if ``needed`` holds; audit only a real change."""
    before = get_task(conn, task_id)
    changed = conn.execute(
        tasks.update().where(tasks.c.id == task_id, needed).values(**values)
    ).rowcount
    after = get_task(conn, task_id)
    if changed:
        actor, action, now, details = audit
        record(
            conn,
            actor,
            action,
            "task",
            task_id,
            now,
            {"title": before.title, "customer_id": before.customer_id, **details},
        )
    return after, bool(changed)


def complete(conn: sa.Connection, task_id: int, actor: Actor, now: datetime) -> tuple[Task, bool]:
    """Mark a task done: (the task, whether it changed). Done already: nothing changes."""
    return _change(
        conn,
        task_id,
        {"status": "done", "done_at": now},
        tasks.c.status != "done",
        (actor, "task.complete", now, {}),
    )


def reopen(conn: sa.Connection, task_id: int, actor: Actor, now: datetime) -> tuple[Task, bool]:
    """Open a done task again (its done time is cleared). Open already: nothing changes."""
    return _change(
        conn,
        task_id,
        {"status": "open", "done_at": None},
        tasks.c.status != "open",
        (actor, "task.reopen", now, {}),
    )


def check_assignee(assignee: str | None, where: str = "assignee") -> str | None:
    """Who a task goes to (a user's email, or any name a team uses); None: nobody."""
    if assignee is None:
        return None
    cleaned = assignee.strip()
    if not cleaned:
        raise InvalidInput([Problem(where, "give who takes the task, or null for nobody")])
    if len(cleaned) > MAX_ASSIGNEE:
        raise InvalidInput([Problem(where, f"at most {MAX_ASSIGNEE} characters")])
    return cleaned


def assign(
    conn: sa.Connection,
    task_id: int,
    assignee: str | None,
    actor: Actor,
    now: datetime,
    where: str = "assignee",
) -> tuple[Task, bool]:
    """Give the task to ``assignee`` (None takes it from whoever had it)."""
    who = check_assignee(assignee, where)
    current = get_task(conn, task_id)
    col = tasks.c.assignee
    differs = col.is_not(None) if who is None else sa.or_(col.is_(None), col != who)
    return _change(
        conn,
        task_id,
        {"assignee": who},
        differs,
        (actor, "task.assign", now, {"assignee": [current.assignee, who]}),
    )
