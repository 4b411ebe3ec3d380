"""Templates: the list, the editor (new and existing) and the test send.

Saving goes through ``messaging.templates.store`` as the API's does: the template is
compiled first, a template that does not compile is not saved, and each error is shown
beside its locale's subject or body with its line and column. A save and a test send are
written to the audit log. People who may not edit (analysts, viewers) get the same page
read-only, with the preview of what is saved and no form that changes anything.
The live preview and the frames that show the HTML are in ``template_preview``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import RedirectResponse, Response

from rapport.access import audit
from rapport.access.roles import Permission
from rapport.errors import InvalidInput, Problem
from rapport.messaging.channels.base import CHANNELS
from rapport.messaging.templates import store
from rapport.messaging.templates.test_send import (
    CannotSend,
    ChannelNotConfigured,
    TestCustomerNotFound,
    send_test_message,
)
from rapport.public_links import links_of
from rapport.store.engine import writing
from rapport.web.context import NotFound, Page, render, require
from rapport.web.form_problems import problems_by_field
from rapport.web.routes.template_preview import editor_preview
from rapport.web.template_forms import (
    EDIT_LOCALES,
    TemplateForm,
    form_from_post,
    form_from_template,
    kinds_for,
)

router = APIRouter(include_in_schema=False)

# Channels a template can be written for (a webhook's body is its own JSON).
TEMPLATE_CHANNELS = tuple(c for c in CHANNELS if c != "webhook")
TEST_RESULTS = ("sent", "failed", "rejected")  # channels.base.Status


@router.get("/templates")
def templates_page(page: Page = Depends(require(Permission.VIEW))) -> Response:
    with page.engine.connect() as conn:
        found = store.all_templates(conn)
    return render(page, "templates_list.html", {"templates": found})


def _editor(
    page: Page,
    form: TemplateForm,
    *,
    template: store.StoredTemplate | None = None,
    problems: list[Problem] | None = None,
    test_problems: list[Problem] | None = None,
    status: int = 200,
    customer_id: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    editing = page.can(Permission.EDIT_MARKETING)
    preview = None
    if template is not None:
        preview = editor_preview(page, template, None if problems else customer_id)
    context = {
        "form": form,
        "template": template,
        "editing": editing,
        "problems": problems or [],
        "errors": problems_by_field(problems or []),
        "test_problems": test_problems or [],
        "test_errors": problems_by_field(test_problems or []),
        "channels": TEMPLATE_CHANNELS,
        "kinds": kinds_for(form.channel),
        "locales": EDIT_LOCALES,
        "preview": preview,
        "customer_id": customer_id,
        "action": f"/templates/{template.id}" if template else "/templates",
        **(extra or {}),
    }
    return render(page, "template_edit.html", context, status=status)


def _template(page: Page, template_id: int) -> store.StoredTemplate:
    with page.engine.connect() as conn:
        try:
            return store.get_template(conn, template_id)
        except store.TemplateNotFound:
            raise NotFound(f"template {template_id}") from None


async def _read_form(page: Page = Depends(require(Permission.EDIT_MARKETING))) -> Page:
    page.request.state.form = await page.request.form()
    return page


@router.get("/templates/new")
def new_template(
    channel: str = Query("email", max_length=20),
    page: Page = Depends(require(Permission.EDIT_MARKETING)),
) -> Response:
    chosen = channel if channel in TEMPLATE_CHANNELS else "email"
    form = TemplateForm(channel=chosen, kind=kinds_for(chosen)[0])
    return _editor(page, form)


@router.post("/templates")
def create(page: Page = Depends(_read_form)) -> Response:
    form = form_from_post(page.request.state.form)
    now = page.clock.now()
    variants = form.variants()
    try:
        with writing(page.engine) as conn:
            tpl = store.create_template(
                conn,
                name=form.name,
                channel=form.channel,
                kind=form.kind,
                variants=variants,
                default_locale=form.default_for(variants),
                now=now,
            )
            audit.record(
                conn,
                page.actor,
                "template.create",
                "template",
                tpl.id,
                now,
                {"name": tpl.name, "channel": tpl.channel, "locales": sorted(tpl.variants)},
            )
    except InvalidInput as exc:
        return _editor(page, form, problems=exc.problems, status=422)
    except store.TemplateConflict as exc:
        return _editor(page, form, problems=[Problem("name", str(exc))], status=422)
    return RedirectResponse(f"/templates/{tpl.id}?done=saved", status_code=303)


@router.get("/templates/{template_id:int}")
def template_page(
    template_id: int,
    customer_id: int | None = Query(None),
    done: str | None = Query(None, max_length=20),
    test: str | None = Query(None, max_length=20),
    page: Page = Depends(require(Permission.VIEW)),
) -> Response:
    tpl = _template(page, template_id)
    extra = {
        "done": done == "saved",
        "test_result": test if test in TEST_RESULTS else None,
    }
    return _editor(
        page, form_from_template(tpl), template=tpl, customer_id=customer_id, extra=extra
    )


@router.post("/templates/{template_id:int}")
def save(template_id: int, page: Page = Depends(_read_form)) -> Response:
    current = _template(page, template_id)
    form = form_from_post(page.request.state.form)
    form.channel = current.channel  # a template keeps its channel (campaigns rely on it)
    now = page.clock.now()
    variants = form.variants()
    try:
        with writing(page.engine) as conn:
            tpl = store.update_template(
                conn,
                template_id,
                now,
                name=form.name,
                kind=form.kind,
                variants=variants,
                default_locale=form.default_for(variants),
            )
            audit.record(
                conn,
                page.actor,
                "template.update",
                "template",
                template_id,
                now,
                {"name": tpl.name, "version": tpl.version, "locales": sorted(tpl.variants)},
            )
    except InvalidInput as exc:
        return _editor(page, form, template=current, problems=exc.problems, status=422)
    except store.TemplateConflict as exc:
        problems = [Problem("name", str(exc))]
        return _editor(page, form, template=current, problems=problems, status=422)
    return RedirectResponse(f"/templates/{template_id}?done=saved", status_code=303)


def _test_problem(where: str, reason: str) -> InvalidInput:
    return InvalidInput([Problem(where, reason)])


@router.post("/templates/{template_id:int}/test-send")
def test_send(template_id: int, page: Page = Depends(_read_form)) -> Response:
    """Send the saved version now, to the address given or the customer's own."""
    tpl = _template(page, template_id)
    raw = page.request.state.form
    to = str(raw.get("to", "")).strip() or None
    locale = str(raw.get("locale", "")).strip() or None
    given = str(raw.get("customer_id", "")).strip()
    now = page.clock.now()
    try:
        if not given:
            raise _test_problem("customer_id", "choose the customer the message is written for")
        if not given.isdigit():
            raise _test_problem("customer_id", "must be a customer id (a number)")
        if locale is not None and locale not in EDIT_LOCALES:
            raise _test_problem("locale", f"must be one of {', '.join(EDIT_LOCALES)}")
        try:
            result = send_test_message(
                page.engine,
                template_id,
                int(given),
                now=now,
                links=links_of(page.request.app),
                to=to,
                locale=locale,
            )
        except ChannelNotConfigured as exc:
            raise _test_problem("channel", str(exc)) from None
        except TestCustomerNotFound as exc:
            raise _test_problem("customer_id", str(exc)) from None
        except CannotSend as exc:
            where = "to" if exc.no_address else "customer_id"
            raise _test_problem(where, exc.reason) from None
    except InvalidInput as exc:
        return _editor(
            page,
            form_from_template(tpl),
            template=tpl,
            test_problems=exc.problems,
            status=422,
            extra={"test_form": {"to": to or "", "customer_id": given, "locale": locale or ""}},
        )
    with writing(page.engine) as conn:
        audit.record(
            conn,
            page.actor,
            "template.test_send",
            "template",
            template_id,
            now,
            {
                "version": tpl.version,
                "customer_id": int(given),
                "to": result["to"],
                "status": result["status"],
            },
        )
    return RedirectResponse(
        f"/templates/{template_id}?test={result['status']}&customer_id={int(given)}",
        status_code=303,
    )
