"""Static lists (management API, Bearer secret key): create, add and remove members, page."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from rapport.api.audit_key import record_key_change
from rapport.api.auth import require_secret_key
from rapport.api.errors import ApiError
from rapport.errors import Problem
from rapport.segments import lists
from rapport.store.engine import writing

router = APIRouter(prefix="/api/lists", tags=["lists"], dependencies=[Depends(require_secret_key)])

MAX_IDENTIFIERS = 10_000
# How many of the customers added or removed at once the audit entry names (all are counted).
AUDITED_IDS = 100


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _fail(exc: lists.ListError) -> ApiError:
    return ApiError(exc.status, exc.message)


class NewList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)


class Members(BaseModel):
    """Customers named by any mix of identifier kinds; other fields are refused (422)."""

    model_config = ConfigDict(extra="forbid")

    customer_ids: list[int | str] = Field(default_factory=list)
    user_ids: list[str | int] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)
    phones: list[str | int] = Field(default_factory=list)


def _resolve(request: Request, body: Members) -> tuple[list[int], dict[str, list[Any]]]:
    """Customer ids named by the body, and the identifiers that name nobody, by field.

    A malformed identifier fails the whole request (422 naming it) before anything is
    stored; a well-formed one that matches no customer is reported back instead.
    """
    given = {f: getattr(body, f) for f in lists.BODY_FIELDS}
    total = sum(len(v) for v in given.values())
    if total == 0:
        raise ApiError(422, "body: give customer_ids, user_ids, emails or phones (not all empty)")
    if total > MAX_IDENTIFIERS:
        raise ApiError(422, f"body: at most {MAX_IDENTIFIERS} identifiers per request, got {total}")
    region = request.app.state.settings.default_phone_region
    problems: list[Problem] = []
    normalized: dict[str, list[str | int]] = {}
    for field_name, values in given.items():
        kind = lists.BODY_FIELDS[field_name]
        for i, value in enumerate(values):
            try:
                normalized.setdefault(field_name, []).append(
                    lists.normalize_identifier(kind, value, region)
                )
            except ValueError as exc:
                problems.append(Problem(f"{field_name}[{i}]", str(exc)))
    if problems:
        raise ApiError(422, "; ".join(str(p) for p in problems[:20]), problems)
    ids: list[int] = []
    missing: dict[str, list[Any]] = {}
    with request.app.state.engine.connect() as conn:
        for field_name, values in normalized.items():
            found = lists.match_customers(conn, lists.BODY_FIELDS[field_name], values)
            ids.extend(found[v] for v in values if v in found)
            unmatched = [v for v in dict.fromkeys(values) if v not in found]
            if unmatched:
                missing[field_name] = unmatched
    return list(dict.fromkeys(ids)), missing


@router.post("", status_code=201)
def create(request: Request, body: NewList) -> Response:
    """A new, empty static list; names are unique across lists and rule segments (409)."""
    try:
        with writing(request.app.state.engine) as conn:
            created = lists.create_list(
                conn, body.name, body.description, request.app.state.clock.now()
            )
            details = {"name": created.name, "kind": "list"}
            record_key_change(conn, request, "list.create", "segment", created.id, details)
    except lists.ListError as exc:
        raise _fail(exc) from None
    return _json(created.as_dict(), 201)


@router.get("")
def all_lists(request: Request) -> Response:
    with request.app.state.engine.connect() as conn:
        return _json({"lists": [lst.as_dict() for lst in lists.all_lists(conn)]})


@router.get("/{list_id}")
def one(request: Request, list_id: int) -> Response:
    try:
        with request.app.state.engine.connect() as conn:
            return _json(lists.get_list(conn, list_id).as_dict())
    except lists.ListError as exc:
        raise _fail(exc) from None


def _change(request: Request, list_id: int, body: Members, adding: bool) -> Response:
    try:
        with request.app.state.engine.connect() as conn:
            lists.get_list(conn, list_id)  # 404 before looking at the body's customers
    except lists.ListError as exc:
        raise _fail(exc) from None
    ids, missing = _resolve(request, body)
    now = request.app.state.clock.now()
    pipeline = request.app.state.pipeline
    try:
        with writing(request.app.state.engine) as conn:
            lst = lists.get_list(conn, list_id)
            if adding:
                changed, unchanged = lists.add_members(conn, pipeline, lst, ids, now)
            else:
                changed, unchanged = lists.remove_members(conn, pipeline, lst, ids, now)
            members = lists.member_count(conn, list_id)
            if changed:
                action = "list.add_members" if adding else "list.remove_members"
                details = {
                    "name": lst.name,
                    "customers": len(changed),
                    "customer_ids": changed[:AUDITED_IDS],
                    "members": members,
                }
                record_key_change(conn, request, action, "segment", list_id, details, now=now)
    except lists.ListError as exc:
        raise _fail(exc) from None
    if adding:
        answer = {"added": changed, "already_members": unchanged}
    else:
        answer = {"removed": changed, "not_members": unchanged}
    return _json({**answer, "not_found": missing, "members": members})


@router.post("/{list_id}/members")
def add(request: Request, list_id: int, body: Members) -> Response:
    """Add customers; each new member gets a `Segment Entered` event on the timeline."""
    return _change(request, list_id, body, adding=True)


@router.delete("/{list_id}/members")
def remove(request: Request, list_id: int, body: Members) -> Response:
    """Remove customers (their stay is closed, not deleted); each gets `Segment Exited`."""
    return _change(request, list_id, body, adding=False)


@router.get("/{list_id}/members")
def members(
    request: Request,
    list_id: int,
    limit: int = Query(50, ge=1, le=1000),
    after: int | None = Query(None, ge=0, description="the next_cursor of the previous page"),
) -> Response:
    """Current members in the order they joined, a page at a time."""
    try:
        with request.app.state.engine.connect() as conn:
            lst = lists.get_list(conn, list_id)
            page, cursor = lists.members_page(conn, list_id, limit=limit, after=after)
    except lists.ListError as exc:
        raise _fail(exc) from None
    return _json({"list": lst.as_dict(), "members": page, "next_cursor": cursor})
