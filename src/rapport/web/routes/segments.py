"""Segments: the list with sizes and trends, the builder with a live count, save, delete,
export.

The builder posts its whole form as the marketer edits (htmx, debounced) to
``/segments/preview``, which checks the draft with the API's own code
(``segments.preview.preview``, the function behind ``POST /api/segments/preview``) and
answers the count, a sample, and each problem beside the condition it is about. Saving
goes through ``segments.definitions`` like the API, in one transaction with the refill
of membership and the audit entry. Everyone may look and try rules; ``edit_marketing``
saves and deletes; ``export`` downloads the members.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from rapport.access import audit
from rapport.access.roles import Permission
from rapport.errors import InvalidInput, Problem
from rapport.scenarios.segment_usage import blocking
from rapport.segments import definitions
from rapport.segments.export import export_rows
from rapport.segments.preview import refill
from rapport.segments.rules import parse_rule
from rapport.store.engine import writing
from rapport.web.context import NotFound, Page, render, require
from rapport.web.i18n import N_
from rapport.web.segment_forms import Draft, draft_from_form, draft_of
from rapport.web.segment_pages import (
    builder_context,
    detail_context,
    list_context,
    preview_context,
)
from rapport.web.segment_tree import new_rule_tree

router = APIRouter(include_in_schema=False)

DONE = ("created", "saved", "deleted")
NOT_CONFIRMED = N_("tick the box to confirm the deletion")
IN_USE = N_("it is still in use: change or archive what uses it first (listed under Used by)")


async def form_items(request: Request) -> list[tuple[str, Any]]:
    """The posted form as (name, value) pairs, repeated names kept (checkbox groups)."""
    return list((await request.form()).multi_items())


def _segment(page: Page, segment_id: int) -> definitions.Segment:
    with page.engine.connect() as conn:
        try:
            return definitions.get_segment(conn, segment_id)
        except definitions.SegmentNotFound:
            raise NotFound(f"segment {segment_id}") from None


@router.get("/segments")
def segments_page(
    q: str = Query("", max_length=200),
    done: str | None = None,
    page: Page = Depends(require(Permission.VIEW)),
) -> Response:
    context = list_context(page, q) | {"done": done if done in DONE else None}
    if page.htmx and page.request.headers.get("hx-target") == "segment-rows":
        return render(page, "_segment_rows.html", context)
    return render(page, "segments.html", context)


def _edit_page(
    page: Page,
    draft: Draft,
    segment: definitions.Segment | None,
    problems: list[Problem] | None = None,
    *,
    status: int = 200,
    done: str | None = None,
) -> Response:
    context = builder_context(page, draft, segment, problems)
    if segment is not None:
        context |= detail_context(page, segment)
    context["done"] = done if done in DONE else None
    return render(page, "segment_edit.html", context, status=status)


@router.get("/segments/new")
def new_segment(page: Page = Depends(require(Permission.VIEW))) -> Response:
    return _edit_page(page, Draft("visual", new_rule_tree()), None)


@router.get("/segments/{segment_id:int}")
def segment_page(
    segment_id: int, done: str | None = None, page: Page = Depends(require(Permission.VIEW))
) -> Response:
    segment = _segment(page, segment_id)
    draft = draft_of(segment.rules or {}, segment.name, segment.description)
    return _edit_page(page, draft, segment, done=done)


def _editing(page: Page, items: list[tuple[str, Any]]) -> definitions.Segment | None:
    raw = next((v for k, v in items if k == "segment_id"), "")
    return _segment(page, int(raw)) if isinstance(raw, str) and raw.isdigit() else None


@router.post("/segments/preview")
def preview(
    items: list[tuple[str, Any]] = Depends(form_items),
    page: Page = Depends(require(Permission.VIEW)),
) -> Response:
    """The live count, a sample and the problems of the draft (swapped in by htmx)."""
    segment = _editing(page, items)
    draft = draft_from_form(items)
    context = {"preview": preview_context(page, draft, segment), "slots": True}
    return render(page, "_segment_preview.html", context)


@router.post("/segments/builder")
def builder(
    items: list[tuple[str, Any]] = Depends(form_items),
    page: Page = Depends(require(Permission.VIEW)),
) -> Response:
    """An editor button (add, remove, group, switch view): the builder drawn again from
    the posted draft with the change applied, and its preview. Without htmx, the page."""
    segment = _editing(page, items)
    draft = draft_from_form(items)
    if not page.htmx:
        return _edit_page(page, draft, segment)
    context = builder_context(page, draft, segment, None) | {"oob_preview": True}
    return render(page, "_segment_builder.html", context)


def _save(
    page: Page, items: list[tuple[str, Any]], segment: definitions.Segment | None
) -> Response:
    draft = draft_from_form(items)
    rules, problems = draft.rules()
    now = page.clock.now()
    saved: definitions.Segment | None = None
    if not problems:
        try:
            with writing(page.engine) as conn:
                if segment is None:
                    saved = definitions.create_segment(
                        conn, draft.name, draft.description, rules, now
                    )
                else:
                    saved = definitions.update_segment(
                        conn,
                        segment.id,
                        now,
                        name=draft.name,
                        description=draft.description,
                        rules=rules,
                    )
                refill(conn, saved.id, now)
                audit.record(
                    conn,
                    page.actor,
                    "segment.create" if segment is None else "segment.update",
                    "segment",
                    saved.id,
                    now,
                    {"name": saved.name, "version": saved.version, "rules": saved.rules},
                )
        except InvalidInput as exc:
            problems = exc.problems
        except definitions.SegmentConflict as exc:
            problems = [Problem("name", str(exc).removeprefix("name: "))]
    if problems or saved is None:
        return _edit_page(page, draft, segment, problems, status=422)
    page.request.app.state.pipeline.segment_index.invalidate()
    done = "created" if segment is None else "saved"
    return RedirectResponse(f"/segments/{saved.id}?done={done}", status_code=303)


@router.post("/segments")
def create(
    items: list[tuple[str, Any]] = Depends(form_items),
    page: Page = Depends(require(Permission.EDIT_MARKETING)),
) -> Response:
    return _save(page, items, None)


@router.post("/segments/{segment_id:int}")
def update(
    segment_id: int,
    items: list[tuple[str, Any]] = Depends(form_items),
    page: Page = Depends(require(Permission.EDIT_MARKETING)),
) -> Response:
    segment = _segment(page, segment_id)
    if segment.kind != "rules":
        raise NotFound(f"rule segment {segment_id}")
    return _save(page, items, segment)


@router.post("/segments/{segment_id:int}/delete")
def delete(
    segment_id: int,
    confirm: Annotated[str, Form(max_length=10)] = "",
    page: Page = Depends(require(Permission.EDIT_MARKETING)),
) -> Response:
    """Delete after the confirmation box is ticked, unless something still reads it."""
    segment = _segment(page, segment_id)
    draft = draft_of(segment.rules or {}, segment.name, segment.description)
    if confirm != "yes":
        problem = Problem("confirm", NOT_CONFIRMED)
        return _edit_page(page, draft, segment, [problem], status=422)
    now = page.clock.now()
    try:
        with writing(page.engine) as conn:
            if blocking(conn, segment_id):
                raise definitions.SegmentConflict("in use")
            definitions.delete_segment(conn, segment_id, now)
            audit.record(
                conn,
                page.actor,
                "segment.delete",
                "segment",
                segment_id,
                now,
                {"name": segment.name, "kind": segment.kind},
            )
    except definitions.SegmentConflict:
        return _edit_page(page, draft, segment, [Problem("delete", IN_USE)], status=409)
    page.request.app.state.pipeline.segment_index.invalidate()
    return RedirectResponse("/segments?done=deleted", status_code=303)


@router.get("/segments/{segment_id:int}/export.csv")
def export(segment_id: int, page: Page = Depends(require(Permission.EXPORT))) -> Response:
    """Members evaluated now, streamed as CSV (``segments.export``, as the API's export);
    a static list is exported through the rule that reads its membership."""
    segment = _segment(page, segment_id)
    rule = segment.rule() if segment.kind == "rules" else parse_rule({"segment": segment.id})
    now = page.clock.now()
    with writing(page.engine) as conn:
        audit.record(
            conn, page.actor, "segment.export", "segment", segment_id, now, {"name": segment.name}
        )
    return StreamingResponse(
        export_rows(page.engine, rule, now),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="segment-{segment_id}.csv"',
            "Cache-Control": "no-store",
        },
    )
