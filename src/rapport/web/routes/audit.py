"""The audit log page (admin): newest first, filtered by action, actor or object, a page
at a time (the "older" link carries the last id shown)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from rapport.access.audit import entries
from rapport.access.roles import Permission
from rapport.web.context import Page, render, require

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50


@router.get("/audit")
def audit_page(
    action: str = Query("", max_length=100),
    actor: str = Query("", max_length=320),
    object_type: str = Query("", max_length=50),
    object_id: str = Query("", max_length=200),
    before: int | None = Query(None, ge=1),
    page: Page = Depends(require(Permission.READ_AUDIT)),
) -> Response:
    filters = {
        "action": action.strip(),
        "actor": actor.strip(),
        "object_type": object_type.strip(),
        "object_id": object_id.strip(),
    }
    with page.engine.connect() as conn:
        rows = entries(
            conn, limit=PAGE_SIZE, before_id=before, **{k: v or None for k, v in filters.items()}
        )
    older_url = None
    if len(rows) == PAGE_SIZE:
        query = {k: v for k, v in filters.items() if v} | {"before": rows[-1].id}
        older_url = "/audit?" + urlencode(query)
    return render(page, "audit.html", {"entries": rows, "filters": filters, "older_url": older_url})
