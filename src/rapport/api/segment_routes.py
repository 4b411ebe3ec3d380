"""Rule segments (management API, Bearer secret key): define, preview, page, export."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from rapport.api.audit_key import record_key_change
from rapport.api.auth import require_secret_key
from rapport.api.errors import ApiError
from rapport.customers.card import summaries
from rapport.errors import InvalidInput
from rapport.scenarios.segment_usage import blocking
from rapport.segments import definitions
from rapport.segments.export import export_rows
from rapport.segments.preview import preview as preview_rule
from rapport.segments.preview import refill
from rapport.store.engine import writing
from rapport.store.tables import segment_members


def _unprocessable(request: Request) -> Iterator[None]:
    """A rule that does not check out is 422 (the body was well-formed JSON), with paths."""
    try:
        yield
    except InvalidInput as exc:
        raise ApiError(422, str(exc), exc.problems) from None
    except definitions.SegmentConflict as exc:
        raise ApiError(409, str(exc)) from None


router = APIRouter(
    prefix="/api/segments",
    tags=["segments"],
    dependencies=[Depends(require_secret_key), Depends(_unprocessable)],
)
SAMPLE = 20


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status_code=status,
        media_type="application/json",
    )


class NewSegment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    rules: dict[str, Any]


class SegmentChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    rules: dict[str, Any] | None = None


class Preview(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: dict[str, Any]


def _segment(request: Request, segment_id: int) -> definitions.Segment:
    with request.app.state.engine.connect() as conn:
        try:
            return definitions.get_segment(conn, segment_id)
        except definitions.SegmentNotFound as exc:
            raise ApiError(404, str(exc)) from None


def _about(seg: definitions.Segment) -> dict[str, Any]:
    """The audit details of a save, as the segment builder writes them."""
    return {"name": seg.name, "version": seg.version, "rules": seg.rules}


def _recompute(conn: sa.Connection, segment_id: int, now: datetime) -> None:
    """A new or changed rule: membership filled in the same transaction (``refill``)."""
    refill(conn, segment_id, now)


@router.get("")
def list_segments(request: Request) -> Response:
    """Every segment and list with its current size."""
    with request.app.state.engine.connect() as conn:
        sizes = definitions.sizes(conn)
        found = definitions.all_segments(conn)
    return _json({"segments": [s.as_dict() | {"size": sizes.get(s.id, 0)} for s in found]})


@router.post("", status_code=201)
def create(request: Request, body: NewSegment) -> Response:
    """Define a segment; its membership is computed at once. A bad rule answers 422 with the
    path of the bad node."""
    now = request.app.state.clock.now()
    with writing(request.app.state.engine) as conn:
        seg = definitions.create_segment(conn, body.name, body.description, body.rules, now)
        _recompute(conn, seg.id, now)
        record_key_change(conn, request, "segment.create", "segment", seg.id, _about(seg), now=now)
    request.app.state.pipeline.segment_index.invalidate()
    return _json(_with_size(request, seg), 201)


def _with_size(request: Request, seg: definitions.Segment) -> dict[str, Any]:
    with request.app.state.engine.connect() as conn:
        size = definitions.sizes(conn).get(seg.id, 0)
    return seg.as_dict() | {"size": size}


@router.get("/{segment_id}")
def get(request: Request, segment_id: int) -> Response:
    return _json(_with_size(request, _segment(request, segment_id)))


@router.patch("/{segment_id}")
def change(request: Request, segment_id: int, body: SegmentChange) -> Response:
    """Rename, describe or change the rule (the version goes up; membership is recomputed)."""
    _segment(request, segment_id)
    now = request.app.state.clock.now()
    with writing(request.app.state.engine) as conn:
        try:
            seg = definitions.update_segment(
                conn,
                segment_id,
                now,
                name=body.name,
                description=body.description,
                rules=body.rules,
            )
        except definitions.SegmentNotFound as exc:
            raise ApiError(404, str(exc)) from None
        if body.rules is not None:
            _recompute(conn, segment_id, now)
        record_key_change(conn, request, "segment.update", "segment", seg.id, _about(seg), now=now)
    request.app.state.pipeline.segment_index.invalidate()
    return _json(_with_size(request, seg))


@router.delete("/{segment_id}")
def delete(request: Request, segment_id: int) -> Response:
    """Delete a segment nothing acts on any more (409 names what still reads it: segments,
    scenarios not archived, campaigns not sent); its memberships are closed."""
    seg = _segment(request, segment_id)
    with writing(request.app.state.engine) as conn:
        users = blocking(conn, segment_id)
        if users:
            named = ", ".join(f"{u.kind} {u.id} {u.name!r} ({u.how})" for u in users)
            raise ApiError(409, f"segment {segment_id} is used by {named}; change them first")
        definitions.delete_segment(conn, segment_id, request.app.state.clock.now())
        details = {"name": seg.name, "kind": seg.kind}
        record_key_change(conn, request, "segment.delete", "segment", segment_id, details)
    request.app.state.pipeline.segment_index.invalidate()
    return _json({"success": True})


@router.post("/preview")
def preview(request: Request, body: Preview) -> Response:
    """The count and a sample of 20 for a rule that is not saved (the live count)."""
    now = request.app.state.clock.now()
    with request.app.state.engine.connect() as conn:
        found = preview_rule(conn, body.rules, now, sample=SAMPLE)
        sample = summaries(conn, found.sample)
    return _json({"count": found.count, "sample": sample})


@router.get("/{segment_id}/members")
def members(
    request: Request,
    segment_id: int,
    limit: int = Query(100, ge=1, le=1000),
    after: int = Query(0, ge=0, description="the next_cursor of the previous page"),
) -> Response:
    """Current members (stored membership), in id order, a page at a time."""
    _segment(request, segment_id)
    sm = segment_members.c
    with request.app.state.engine.connect() as conn:
        ids = list(
            conn.execute(
                sa.select(sm.customer_id)
                .where(sm.segment_id == segment_id, sm.until.is_(None), sm.customer_id > after)
                .order_by(sm.customer_id)
                .limit(limit)
            ).scalars()
        )
        page = summaries(conn, ids)
    return _json({"members": page, "next_cursor": ids[-1] if len(ids) == limit else None})


@router.get("/{segment_id}/export.csv")
def export(request: Request, segment_id: int) -> StreamingResponse:
    """Members as CSV, evaluated now, streamed."""
    seg = _segment(request, segment_id)
    if seg.kind != "rules":
        raise ApiError(422, "export: lists are exported from /api/lists")
    rows = export_rows(request.app.state.engine, seg.rule(), request.app.state.clock.now())
    return StreamingResponse(
        rows,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="segment-{segment_id}.csv"'},
    )
