"""Customers: search by id, email, phone or name, and the card with its timeline.

Lookups reuse the card API's domain functions (customers/card.py, customers/timeline.py).
For a role without view_personal, emails and phones are masked before rendering, and a
search text that looks like an email or a phone only finds an exact match: a viewer can
find the customer whose address they have, not guess addresses letter by letter.
"""

from __future__ import annotations

import base64
import contextlib
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from rapport.access.roles import Permission
from rapport.customers import card as cards
from rapport.customers.profile import live_id
from rapport.customers.timeline import timeline
from rapport.ingest.normalize import normalize_email, normalize_phone
from rapport.loyalty.card import programme_sections
from rapport.store.tables import customers, events
from rapport.web.context import NotFound, Page, render, require

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
TIMELINE_PAGE = 30
_PHONE_LIKE = re.compile(r"^\+?[\d\s()\-.]{7,}$")


def find(page: Page, text: str) -> list[int]:
    """Exact matches first (id, user id, email, phone), then names, emails and phones
    that contain the text; each customer once."""
    text = text.strip()
    region = page.request.app.state.settings.default_phone_region
    personal = page.can(Permission.VIEW_PERSONAL)
    found: list[int] = []
    with page.engine.connect() as conn:
        if text.isdigit() and len(text) <= 18:
            cid = live_id(conn, int(text))
            if cid is not None:
                found.append(cid)
        exact: list[tuple[str, str]] = [("user_id", text)]
        if "@" in text:
            with contextlib.suppress(ValueError):  # not an address: no exact match
                exact.append(("email", normalize_email(text)))
        if _PHONE_LIKE.match(text):
            with contextlib.suppress(ValueError):
                exact.append(("phone", normalize_phone(text, region)))
        for kind, value in exact:
            cid = cards.find_by_identity(conn, kind, value)
            if cid is not None:
                found.append(cid)
        looks_personal = "@" in text or _PHONE_LIKE.match(text) is not None
        if personal or not looks_personal:
            found.extend(cards.search(conn, text, PAGE_SIZE))
        unique = list(dict.fromkeys(found))[:PAGE_SIZE]
        return unique


@router.get("/customers")
def customers_page(
    q: str = Query("", max_length=200), page: Page = Depends(require(Permission.VIEW))
) -> Response:
    results: list[dict[str, Any]] | None = None
    if q.strip():
        ids = find(page, q)
        with page.engine.connect() as conn:
            results = cards.summaries(conn, ids)
    context = {"q": q, "results": results, "limit": PAGE_SIZE}
    if page.htmx and page.request.headers.get("hx-target") == "results":
        url = "/customers?" + urlencode({"q": q}) if q.strip() else "/customers"
        return render(page, "_customer_results.html", context, headers={"HX-Replace-Url": url})
    return render(page, "customers.html", context)


def _cursor(row: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(
        f"{row['occurred_at'].isoformat()}|{row['id']}".encode()
    ).decode()


def _uncursor(value: str) -> tuple[datetime, int] | None:
    try:
        at, _, event_id = base64.urlsafe_b64decode(value.encode()).decode().partition("|")
        return datetime.fromisoformat(at), int(event_id)
    except (ValueError, UnicodeDecodeError):
        return None


def _timeline_page(
    page: Page, cid: int, before: str | None, names: list[str], sources: list[str]
) -> dict[str, Any]:
    cursor = _uncursor(before) if before else None
    if before and cursor is None:
        raise NotFound(f"timeline cursor {before!r}")
    with page.engine.connect() as conn:
        rows = timeline(
            conn,
            cid,
            limit=TIMELINE_PAGE,
            before=cursor,
            names=[n for n in names if n] or None,
            sources=[s for s in sources if s] or None,
        )
    return {
        "events": rows,
        "next_cursor": _cursor(rows[-1]) if len(rows) == TIMELINE_PAGE else None,
        "names": names,
        "sources": sources,
        "cid": cid,
    }


def _choices(conn: sa.Connection, cid: int) -> tuple[list[str], list[str]]:
    e = events.c
    names = conn.execute(
        sa.select(e.name).where(e.customer_id == cid).group_by(e.name).order_by(e.name)
    ).scalars()
    sources = conn.execute(
        sa.select(e.source).where(e.customer_id == cid).group_by(e.source).order_by(e.source)
    ).scalars()
    return list(names), list(sources)


@router.get("/customers/{customer_id}")
def card_page(
    customer_id: int,
    before: str | None = Query(None, max_length=200),
    name: list[str] = Query([]),
    source: list[str] = Query([]),
    page: Page = Depends(require(Permission.VIEW)),
) -> Response:
    now = page.clock.now()
    with page.engine.connect() as conn:
        data = cards.card(conn, customer_id, now)
        if data is None:
            raise NotFound(f"customer {customer_id}")
        predicted = conn.execute(
            sa.select(
                customers.c.predicted_clv,
                customers.c.expected_purchases_90d,
                customers.c.churn_risk,
                customers.c.clv_scored_at,
            ).where(customers.c.id == data["id"])
        ).one()
        event_names, event_sources = _choices(conn, data["id"])
        programme = programme_sections(conn, data["id"], now)
    context = {
        "card": data,
        "programme": programme,
        "predicted": predicted._asdict(),
        "event_names": event_names,
        "event_sources": event_sources,
        **_timeline_page(page, data["id"], before, name, source),
    }
    return render(page, "customer_card.html", context)


@router.get("/customers/{customer_id}/timeline")
def timeline_rows(
    customer_id: int,
    before: str | None = Query(None, max_length=200),
    name: list[str] = Query([]),
    source: list[str] = Query([]),
    page: Page = Depends(require(Permission.VIEW)),
) -> Response:
    """A page of the timeline: rows for htmx to append, or to replace after a filter."""
    with page.engine.connect() as conn:
        cid = live_id(conn, customer_id)
    if cid is None:
        raise NotFound(f"customer {customer_id}")
    return render(page, "_timeline_rows.html", _timeline_page(page, cid, before, name, source))
