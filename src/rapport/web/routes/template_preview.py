"""The template editor's preview: Russian and English side by side, rendered by the real
renderer for a chosen customer or for a sample one.

``messaging.templates.preview`` does the work, the function behind
``POST /api/templates/{id}/preview``. While someone types, htmx posts the editor's form
here (debounced); the draft is compiled as saving would compile it — so a template error
shows at once with its line and column — and rendered, and nothing is stored. Each
locale's HTML is its own document in a sandboxed frame (``web.message_frame``): a GET
route serves the saved version, and for a draft the partial carries a small form that
app.js posts into the frame. A real customer's message may hold their address, so
choosing a customer needs ``view_personal``; everyone else sees the sample customer.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from rapport.access.roles import Permission
from rapport.customers import card as cards
from rapport.errors import InvalidInput
from rapport.messaging.templates import store
from rapport.messaging.templates.preview import (
    PreviewCustomerNotFound,
    draft_template,
    preview_template,
)
from rapport.messaging.templates.render import RenderError
from rapport.web.context import Forbidden, NotFound, Page, render, require
from rapport.web.form_problems import problems_by_field
from rapport.web.message_frame import frame_problem, frame_response
from rapport.web.routes.customers import find
from rapport.web.template_forms import EDIT_LOCALES, TemplateForm, form_from_post

router = APIRouter(include_in_schema=False)


def _customer(page: Page, raw: Any) -> int | None:
    """The customer to preview for, when one is given and this person may see them."""
    if raw is None or str(raw).strip() == "":
        return None
    text = str(raw).strip()
    if not text.isdigit():
        return None
    if not page.can(Permission.VIEW_PERSONAL):
        raise Forbidden(Permission.VIEW_PERSONAL)
    return int(text)


def _render_locales(
    page: Page, conn: sa.Connection, template: store.StoredTemplate, customer_id: int | None
) -> list[dict[str, Any]]:
    """Each edited locale as the reader of that language gets it (a locale the template
    lacks shows its default, and says so)."""
    now = page.clock.now()
    out: list[dict[str, Any]] = []
    for asked in EDIT_LOCALES:
        try:
            found = preview_template(conn, template, customer_id, now, locale=asked)
        except RenderError as exc:
            out.append({"asked": asked, "error": str(exc)})
            continue
        out.append({"asked": asked, "preview": found, "fallback": found.locale != asked})
    return out


def editor_preview(
    page: Page,
    template: store.StoredTemplate,
    customer_id: int | None,
    *,
    draft: TemplateForm | None = None,
) -> dict[str, Any]:
    """What the preview partial shows: both locales, and who they are rendered for."""
    with page.engine.connect() as conn:
        who = None
        if customer_id is not None:
            if not page.can(Permission.VIEW_PERSONAL):
                customer_id = None
            else:
                found = cards.summaries(conn, [customer_id])
                who = found[0] if found else None
                if who is None:
                    return {"missing_customer": customer_id, "locales": [], "draft": draft}
        locales = _render_locales(page, conn, template, customer_id)
    return {
        "template": template,
        "customer": who,
        "customer_id": customer_id,
        "locales": locales,
        "draft": draft,
        "missing_customer": None,
    }


def _draft(page: Page, form: TemplateForm) -> store.StoredTemplate:
    variants = form.variants()
    return draft_template(
        name=form.name or "draft",
        channel=form.channel,
        kind=form.kind,
        variants=variants,
        default_locale=form.default_for(variants),
        now=page.clock.now(),
    )


async def _read_form(page: Page = Depends(require(Permission.EDIT_MARKETING))) -> Page:
    page.request.state.form = await page.request.form()
    return page


@router.post("/templates/preview")
def live_preview(page: Page = Depends(_read_form)) -> Response:
    """The editor's draft, compiled and rendered in both locales; nothing is stored."""
    raw = page.request.state.form
    form = form_from_post(raw)
    customer_id = _customer(page, raw.get("customer_id"))
    try:
        template = _draft(page, form)
    except InvalidInput as exc:
        context = {
            "preview": None,
            "compile_problems": exc.problems,
            "compile_errors": problems_by_field(exc.problems),
        }
        return render(page, "_template_preview.html", context)
    preview = editor_preview(page, template, customer_id, draft=form)
    context = {"preview": preview, "compile_problems": [], "draft_fields": raw}
    return render(page, "_template_preview.html", context)


@router.post("/templates/frame")
def draft_frame(page: Page = Depends(_read_form)) -> Response:
    """One locale of the draft as its own document, posted into the preview's frame."""
    raw = page.request.state.form
    form = form_from_post(raw)
    locale = str(raw.get("frame_locale", ""))
    if locale not in EDIT_LOCALES:
        return frame_problem(f"frame_locale must be one of {', '.join(EDIT_LOCALES)}")
    try:
        template = _draft(page, form)
        with page.engine.connect() as conn:
            found = preview_template(
                conn,
                template,
                _customer(page, raw.get("customer_id")),
                page.clock.now(),
                locale=locale,
            )
    except InvalidInput as exc:
        return frame_problem(str(exc))
    except (RenderError, PreviewCustomerNotFound) as exc:
        return frame_problem(str(exc))
    return frame_response(found.html)


@router.get("/templates/customers")
def pick_customer(
    q: str = Query("", max_length=200),
    page: Page = Depends(require(Permission.VIEW_PERSONAL)),
) -> Response:
    """Customers matching the text, to preview the template for."""
    results = None
    if q.strip():
        with page.engine.connect() as conn:
            results = cards.summaries(conn, find(page, q))
    return render(page, "_template_customers.html", {"results": results, "q": q})


@router.get("/templates/{template_id:int}/frame/{locale}.html")
def saved_frame(
    template_id: int,
    locale: str,
    customer_id: str | None = Query(None, max_length=20),
    page: Page = Depends(require(Permission.VIEW)),
) -> Response:
    """One locale of the saved version as its own document, for a sandboxed frame."""
    if locale not in EDIT_LOCALES:
        raise NotFound(f"locale {locale}")
    cid = _customer(page, customer_id)
    with page.engine.connect() as conn:
        try:
            template = store.get_template(conn, template_id)
        except store.TemplateNotFound:
            raise NotFound(f"template {template_id}") from None
        try:
            found = preview_template(conn, template, cid, page.clock.now(), locale=locale)
        except PreviewCustomerNotFound:
            raise NotFound(f"customer {cid}") from None
        except RenderError as exc:
            return frame_problem(str(exc))
    return frame_response(found.html)
