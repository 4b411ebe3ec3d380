"""Loyalty: the programme at a glance (settings, tiers with their customers, points
outstanding, the latest ledger entries) and editing the programme; coupons are in
``loyalty_coupons`` (its router is included here, so the section is one module to mount).

The programme is read with ``loyalty.programme.load_stored`` and saved with
``loyalty.programme.save`` — what ``GET``/``PUT /api/loyalty/programme`` call — after the
same Pydantic model has checked it, so the page stores exactly what the API would, as a
new version with its ``loyalty.programme.update`` audit entry in the same transaction.
Everyone signed in reads; editing needs ``edit_marketing``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query
from fastapi.responses import RedirectResponse, Response

from rapport.access.roles import Permission
from rapport.errors import InvalidInput, Problem
from rapport.loyalty import programme as programme_store
from rapport.store.engine import writing
from rapport.web import loyalty_overview as overview
from rapport.web.context import Page, render, require
from rapport.web.customer_refs import customer_refs
from rapport.web.routes import loyalty_coupons

router = APIRouter(include_in_schema=False)
router.include_router(loyalty_coupons.router)

MAX_PROGRAMME_TEXT = 100_000


@router.get("/loyalty")
def loyalty_page(
    done: str = Query("", max_length=20), page: Page = Depends(require(Permission.VIEW))
) -> Response:
    now = page.clock.now()
    with page.engine.connect() as conn:
        stored = programme_store.load_stored(conn)
        tiers = overview.tier_rows(stored.programme, overview.tier_counts(conn))
        totals = overview.point_totals(conn, now)
        entries = overview.recent_entries(conn)
        refs = customer_refs(conn, (e["customer_id"] for e in entries))
    return render(
        page,
        "loyalty.html",
        {
            "stored": stored,
            "p": stored.programme,
            "tiers": tiers,
            "totals": totals,
            "entries": entries,
            "refs": refs,
            "kind_labels": overview.KIND_LABELS,
            "done": done == "saved",
        },
    )


def _editor(
    page: Page,
    text: str,
    stored: programme_store.Stored,
    problems: list[Problem] | None = None,
    status: int = 200,
) -> Response:
    return render(
        page,
        "loyalty_programme.html",
        {"text": text, "stored": stored, "problems": problems or []},
        status=status,
    )


@router.get("/loyalty/programme")
def edit_programme(page: Page = Depends(require(Permission.EDIT_MARKETING))) -> Response:
    with page.engine.connect() as conn:
        stored = programme_store.load_stored(conn)
    return _editor(page, overview.programme_text(stored.programme), stored)


@router.post("/loyalty/programme")
def save_programme(
    programme: Annotated[str, Form(max_length=MAX_PROGRAMME_TEXT)] = "",
    page: Page = Depends(require(Permission.EDIT_MARKETING)),
) -> Response:
    """Check the text with the API's model and store it as a new version (audited)."""
    now = page.clock.now()
    try:
        checked = overview.parse_programme_text(programme)
    except InvalidInput as exc:
        with page.engine.connect() as conn:
            stored = programme_store.load_stored(conn)
        return _editor(page, programme, stored, exc.problems, status=422)
    with writing(page.engine) as conn:
        programme_store.save(conn, checked, page.actor, now)
    return RedirectResponse("/loyalty?done=saved", status_code=303)
