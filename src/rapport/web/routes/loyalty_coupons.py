"""Loyalty → Coupons: the series with their counts, creating one, pausing and resuming,
generating printed codes and downloading them, looking a code up.

Every call is the coupons domain's, the ones ``/api/coupons`` makes (``parse_settings``,
``store.create_series``, ``set_paused``, ``codes.generate_codes``, ``series_counts``,
``wallet.code_status``), and each change is written to the audit log with the API's
action names in the same transaction. The codes CSV is ``store.series_codes_csv``, as
for ``GET /api/coupons/series/{name}/codes.csv``, so both give the same file. Reading needs ``view``; changes ``edit_marketing``; the CSV ``export``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
import yaml
from fastapi import APIRouter, Depends, Form, Query
from fastapi.responses import RedirectResponse, Response

from rapport.access import audit
from rapport.access.roles import Permission
from rapport.errors import InvalidInput, Problem
from rapport.loyalty.coupons import CouponError, CouponRefused, code_status, parse_settings
from rapport.loyalty.coupons.codes import MAX_PER_REQUEST, generate_codes
from rapport.loyalty.coupons.store import (
    Series,
    all_series,
    create_series,
    get_series,
    series_codes_csv,
    series_counts,
    set_paused,
)
from rapport.segments.rules import load_text
from rapport.store.engine import writing
from rapport.web.context import NotFound, Page, render, require
from rapport.web.customer_refs import customer_refs
from rapport.web.i18n import N_

router = APIRouter(include_in_schema=False)

MAX_SETTINGS_TEXT = 20_000
MAX_CODES = MAX_PER_REQUEST
DONE = {"created", "paused", "resumed", "generated"}
# A code's status (wallet.code_status) as the page says it.
CODE_STATUS = {
    "active": N_("active"),
    "used": N_("used up"),
    "expired": N_("expired"),
    "not_started": N_("not started yet"),
}
EXAMPLE = """name: winback-15
title: We miss you, 15% off
kind: percent
value: 15
codes: unique
prefix: BACK-
valid_days: 14
"""


def _series(conn: sa.Connection, name: str) -> Series:
    try:
        return get_series(conn, name)
    except CouponError:
        raise NotFound(f"coupon series {name}") from None


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _with_times(found: dict[str, Any]) -> dict[str, Any]:
    """The API's answer with its ISO times as datetimes, for the page's date format."""
    return found | {
        "expires_at": _moment(found["expires_at"]),
        "redemptions": [
            r | {"used_at": _moment(r["used_at"]), "released_at": _moment(r["released_at"])}
            for r in found["redemptions"]
        ],
    }


def _list(
    page: Page,
    *,
    text: str = "",
    problems: list[Problem] | None = None,
    code: str = "",
    done: str = "",
    status: int = 200,
) -> Response:
    now = page.clock.now()
    looked_up: dict[str, Any] | None = None
    lookup_problem = None
    with page.engine.connect() as conn:
        found = all_series(conn)
        counts = series_counts(conn, [s.id for s in found])
        if code.strip():
            try:
                looked_up = _with_times(code_status(conn, code, now))
            except CouponRefused as exc:
                lookup_problem = exc.reason
        people = (
            [looked_up["customer_id"], *(r["customer_id"] for r in looked_up["redemptions"])]
            if looked_up
            else []
        )
        refs = customer_refs(conn, people)
    return render(
        page,
        "loyalty_coupons.html",
        {
            "rows": [{"series": s, "counts": counts[s.id]} for s in found],
            "text": text,
            "example": EXAMPLE,
            "problems": problems or [],
            "code": code,
            "looked_up": looked_up,
            "lookup_problem": lookup_problem,
            "code_status": CODE_STATUS,
            "refs": refs,
            "done": done if done in DONE else "",
            "now": now,
        },
        status=status,
    )


@router.get("/loyalty/coupons")
def coupons_page(
    code: str = Query("", max_length=200),
    done: str = Query("", max_length=20),
    page: Page = Depends(require(Permission.VIEW)),
) -> Response:
    """The series; with ``code``, that code's status, owner and uses too."""
    return _list(page, code=code, done=done)


def _conflict_problem(exc: CouponError) -> Problem:
    where = "series.shared_code" if exc.message.startswith("the code") else "series.name"
    return Problem(where, exc.message)


@router.post("/loyalty/coupons")
def create(
    series: Annotated[str, Form(max_length=MAX_SETTINGS_TEXT)] = "",
    page: Page = Depends(require(Permission.EDIT_MARKETING)),
) -> Response:
    """A new series from its settings as YAML or JSON, checked as the API checks them."""
    now = page.clock.now()
    try:
        data = load_text(series, "series")
        settings = parse_settings(data, "series")
        with writing(page.engine) as conn:
            made = create_series(conn, settings, now)
            audit.record(
                conn,
                page.actor,
                "coupon_series.create",
                "coupon_series",
                made.name,
                now,
                {"settings": settings.stored()},
            )
    except InvalidInput as exc:
        return _list(page, text=series, problems=exc.problems, status=422)
    except CouponError as exc:
        return _list(page, text=series, problems=[_conflict_problem(exc)], status=422)
    return RedirectResponse(f"/loyalty/coupons/{made.name}?done=created", status_code=303)


def _detail(
    page: Page,
    name: str,
    *,
    done: str = "",
    generated: int | None = None,
    count: str = "",
    problems: list[Problem] | None = None,
    status: int = 200,
) -> Response:
    with page.engine.connect() as conn:
        found = _series(conn, name)
        counts = series_counts(conn, [found.id])[found.id]
    return render(
        page,
        "loyalty_series.html",
        {
            "series": found,
            "s": found.settings,
            "counts": counts,
            "settings_text": yaml.safe_dump(
                found.settings.model_dump(mode="json"), allow_unicode=True, sort_keys=False
            ),
            "done": done if done in DONE else "",
            "generated": generated,
            "count": count,
            "max_codes": MAX_CODES,
            "problems": problems or [],
        },
        status=status,
    )


@router.get("/loyalty/coupons/{name}")
def series_page(
    name: str,
    done: str = Query("", max_length=20),
    n: int | None = Query(None, ge=0),
    page: Page = Depends(require(Permission.VIEW)),
) -> Response:
    return _detail(page, name, done=done, generated=n)


def _pause(page: Page, name: str, paused: bool) -> Response:
    now = page.clock.now()
    with writing(page.engine) as conn:
        _series(conn, name)
        set_paused(conn, name, paused, now)
        action = "coupon_series.pause" if paused else "coupon_series.resume"
        audit.record(conn, page.actor, action, "coupon_series", name, now)
    done = "paused" if paused else "resumed"
    return RedirectResponse(f"/loyalty/coupons/{name}?done={done}", status_code=303)


@router.post("/loyalty/coupons/{name}/pause")
def pause(name: str, page: Page = Depends(require(Permission.EDIT_MARKETING))) -> Response:
    """Every code of the series is refused at the checkout, and none is issued."""
    return _pause(page, name, True)


@router.post("/loyalty/coupons/{name}/resume")
def resume(name: str, page: Page = Depends(require(Permission.EDIT_MARKETING))) -> Response:
    return _pause(page, name, False)


def _count(text: str) -> int:
    value = text.strip().replace(",", "").replace(" ", "")
    if not value.isdigit() or not 1 <= int(value) <= MAX_CODES:
        raise InvalidInput([Problem("count", f"a whole number from 1 to {MAX_CODES:,}")])
    return int(value)


@router.post("/loyalty/coupons/{name}/codes")
def generate(
    name: str,
    count: Annotated[str, Form(max_length=20)] = "",
    page: Page = Depends(require(Permission.EDIT_MARKETING)),
) -> Response:
    """Printed codes (belonging to nobody), all or none, in one transaction."""
    now = page.clock.now()
    try:
        wanted = _count(count)
        with writing(page.engine) as conn:
            found = _series(conn, name)
            codes = generate_codes(conn, found.id, found.settings, wanted, now)
            audit.record(
                conn,
                page.actor,
                "coupon_series.generate",
                "coupon_series",
                name,
                now,
                {"count": len(codes)},
            )
    except InvalidInput as exc:
        return _detail(page, name, count=count, problems=exc.problems, status=422)
    except CouponError as exc:
        where, sep, reason = exc.message.partition(": ")
        problem = Problem(where, reason) if sep and where in ("count", "codes") else None
        problem = problem or Problem("count", exc.message)
        return _detail(page, name, count=count, problems=[problem], status=422)
    return RedirectResponse(
        f"/loyalty/coupons/{name}?done=generated&n={len(codes)}", status_code=303
    )


@router.get("/loyalty/coupons/{name}/codes.csv")
def codes_csv(name: str, page: Page = Depends(require(Permission.EXPORT))) -> Response:
    """Every code of the series with owner, issue time, end and uses (audited download)."""
    now = page.clock.now()
    with page.engine.connect() as conn:
        _series(conn, name)
        text = series_codes_csv(conn, name)
    with writing(page.engine) as conn:
        audit.record(conn, page.actor, "coupon_series.export", "coupon_series", name, now)
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="coupons-{name}.csv"'},
    )
