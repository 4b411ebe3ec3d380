"""Campaigns: the list, the composer (new and edit), start and cancel.

The composer posts a plain form; ``web.campaign_forms`` turns it into the definition the
API takes and ``messaging.campaigns`` validates and stores it, so a campaign made here is
stored exactly as ``POST /api/campaigns`` would store it, and a rejected form shows the
API's problems (``variants[1].template_id``) beside their fields with nothing stored.
"Add a variant", "Remove" and a change of channel redraw the form without saving.
Starting sends in the background after the answer, as the API does; start, cancel and
every save are written to the audit log in the same transaction as the change.
The results, the preview and the chart are in ``campaign_view``.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Query
from fastapi.responses import RedirectResponse, Response

from rapport.access import audit
from rapport.access.roles import Permission
from rapport.errors import InvalidInput, Problem
from rapport.messaging import campaign_start
from rapport.messaging import campaigns as store
from rapport.messaging.campaign_send import send_campaign
from rapport.messaging.compose import Tracking
from rapport.messaging.policy import Priority, load_policy
from rapport.messaging.templates.store import all_templates
from rapport.public_links import links_of
from rapport.segments.definitions import all_segments, sizes
from rapport.store.engine import writing
from rapport.web.campaign_forms import (
    LABELS,
    CampaignForm,
    campaign_doc,
    form_from_campaign,
    form_from_post,
)
from rapport.web.campaign_results import attributed_by_campaign, audience_sizes
from rapport.web.context import NotFound, Page, render, require
from rapport.web.form_problems import problems_by_field
from rapport.web.routes.campaign_view import refused
from rapport.worker import campaign_recorder

router = APIRouter(include_in_schema=False)

PRIORITIES: tuple[str, ...] = Priority.__args__  # type: ignore[attr-defined]


def account_zone(conn: sa.Connection) -> ZoneInfo:
    """The time zone dates are typed in: the policy's ``default_timezone``."""
    return ZoneInfo(load_policy(conn).default_timezone)


@router.get("/campaigns")
def campaigns_page(
    status: str = Query("", max_length=20), page: Page = Depends(require(Permission.VIEW))
) -> Response:
    chosen = status if status in store.STATUSES else None
    with page.engine.connect() as conn:
        found = store.list_campaigns(conn, chosen)
        metrics = attributed_by_campaign(conn, page.clock.now())
        audience = audience_sizes(conn)
        segment_names = {s.id: s.name for s in all_segments(conn)}
    rows = [
        {
            "campaign": c,
            "segment": segment_names.get(c.segment_id),
            "audience": audience.get(c.id),
            "metrics": metrics.get(str(c.id)),
        }
        for c in found
    ]
    return render(
        page,
        "campaigns.html",
        {"rows": rows, "status": chosen or "", "statuses": store.STATUSES, **LABELS},
    )


def _choices(conn: sa.Connection, channel: str) -> dict[str, Any]:
    """What the selects offer: segments and lists with their sizes, the channel's templates."""
    counts = sizes(conn)
    segments = [
        {"id": s.id, "name": s.name, "kind": s.kind, "size": counts.get(s.id, 0)}
        for s in all_segments(conn)
    ]
    templates = [
        {"id": t.id, "name": t.name, "kind": t.kind}
        for t in all_templates(conn)
        if t.channel == channel
    ]
    return {"segments": segments, "templates": templates}


def _compose(
    page: Page,
    form: CampaignForm,
    *,
    campaign: store.Campaign | None = None,
    problems: list[Problem] | None = None,
    status: int = 200,
    partial: bool = False,
) -> Response:
    with page.engine.connect() as conn:
        zone = account_zone(conn)
        choices = _choices(conn, form.channel)
    context = {
        "form": form,
        "campaign": campaign,
        "problems": problems or [],
        "errors": problems_by_field(problems or []),
        "channels": store.CAMPAIGN_CHANNELS,
        "priorities": PRIORITIES,
        "zone": str(zone),
        "action": f"/campaigns/{campaign.id}/edit" if campaign else "/campaigns",
        **choices,
        **LABELS,
    }
    template = "_campaign_form.html" if partial else "campaign_edit.html"
    return render(page, template, context, status=status)


def _validate(conn: sa.Connection, doc: dict[str, Any], form_problems: list[Problem]) -> None:
    """Every problem at once: the form's own, the API model's, then the store's."""
    problems = list(form_problems)
    try:
        spec = store.parse_spec(doc)
    except InvalidInput as exc:
        problems += exc.problems
    else:
        try:
            store.check_spec(conn, spec)
        except InvalidInput as exc:
            problems += exc.problems
    if problems:
        raise InvalidInput(problems)


def _redraw(form: CampaignForm, action: str) -> bool:
    """Handle the buttons that change the form itself; True when one was pressed."""
    if action == "add_variant":
        form.add_variant()
        return True
    if action.startswith("remove_variant:"):
        index = action.partition(":")[2]
        if index.isdigit():
            form.remove_variant(int(index))
        return True
    return action == "redraw"


def _save(page: Page, campaign_id: int | None) -> Response:
    """Create (``campaign_id`` None) or change a campaign from the posted form."""
    raw = page.request.state.form
    form = form_from_post(raw)
    current = None
    if campaign_id is not None:
        with page.engine.connect() as conn:
            current = _editable(conn, campaign_id)
    if _redraw(form, str(raw.get("action", ""))):
        return _compose(page, form, campaign=current)
    now = page.clock.now()
    try:
        with writing(page.engine) as conn:
            doc, form_problems = campaign_doc(form, account_zone(conn))
            _validate(conn, doc, form_problems)
            if campaign_id is None:
                saved = store.create_campaign(conn, doc, now)
                action = "campaign.create"
            else:
                saved = store.update_campaign(conn, campaign_id, doc, now)
                action = "campaign.update"
            audit.record(
                conn,
                page.actor,
                action,
                "campaign",
                saved.id,
                now,
                {"name": saved.name, "status": saved.status},
            )
    except InvalidInput as exc:
        return _compose(page, form, campaign=current, problems=exc.problems, status=422)
    except store.CampaignConflict as exc:
        problem = _conflict(str(exc))
        return _compose(page, form, campaign=current, problems=[problem], status=422)
    return RedirectResponse(f"/campaigns/{saved.id}?done=saved", status_code=303)


def _conflict(message: str) -> Problem:
    """The store's conflicts as problems: a taken name (``name: …``) or a state."""
    where, sep, reason = message.partition(": ")
    return Problem(where, reason) if sep and where == "name" else Problem("campaign", message)


def _editable(conn: sa.Connection, campaign_id: int) -> store.Campaign:
    try:
        campaign = store.get_campaign(conn, campaign_id)
    except store.CampaignNotFound:
        raise NotFound(f"campaign {campaign_id}") from None
    return campaign


async def _read_form(page: Page = Depends(require(Permission.EDIT_MARKETING))) -> Page:
    """The composer's posted fields (read once, here, so the routes can stay plain)."""
    page.request.state.form = await page.request.form()
    return page


@router.get("/campaigns/new")
def new_campaign(page: Page = Depends(require(Permission.EDIT_MARKETING))) -> Response:
    return _compose(page, CampaignForm())


@router.post("/campaigns")
def create(page: Page = Depends(_read_form)) -> Response:
    return _save(page, None)


@router.post("/campaigns/form")
def redraw(campaign_id: int | None = Query(None), page: Page = Depends(_read_form)) -> Response:
    """The form again for another channel (its templates), as htmx asks; nothing saved.
    ``campaign_id``: the campaign being edited, so the form still saves to it."""
    form = form_from_post(page.request.state.form)
    current = None
    if campaign_id is not None:
        with page.engine.connect() as conn:
            current = _editable(conn, campaign_id)
    return _compose(page, form, campaign=current, partial=True)


@router.get("/campaigns/{campaign_id:int}/edit")
def edit_campaign(
    campaign_id: int, page: Page = Depends(require(Permission.EDIT_MARKETING))
) -> Response:
    with page.engine.connect() as conn:
        campaign = _editable(conn, campaign_id)
        zone = account_zone(conn)
    if campaign.status not in store.EDITABLE:
        return refused(
            page,
            campaign_id,
            f"campaign {campaign_id} is {campaign.status}; only a draft or scheduled one changes",
        )
    return _compose(page, form_from_campaign(campaign, zone), campaign=campaign)


@router.post("/campaigns/{campaign_id:int}/edit")
def update(campaign_id: int, page: Page = Depends(_read_form)) -> Response:
    return _save(page, campaign_id)


def _send_in_background(app: FastAPI, campaign_id: int) -> None:
    """The API's start does the same: the send runs after the answer; if the server stops
    midway, the worker resumes it."""
    send_campaign(
        app.state.engine,
        campaign_id,
        clock=app.state.clock,
        record=campaign_recorder(app.state.pipeline),
        tracking=Tracking(links_of(app)),
    )


@router.post("/campaigns/{campaign_id:int}/start")
def start(
    campaign_id: int,
    background: BackgroundTasks,
    page: Page = Depends(require(Permission.EDIT_MARKETING)),
) -> Response:
    app = page.request.app
    links_of(app)  # made before the answer, so a store problem is reported now
    now = page.clock.now()
    try:
        with writing(page.engine) as conn:
            _editable(conn, campaign_id)
            campaign = campaign_start.start_campaign(conn, campaign_id, now)
            audit.record(
                conn,
                page.actor,
                "campaign.start",
                "campaign",
                campaign_id,
                now,
                {"status": campaign.status, "send_at": campaign.send_at},
            )
    except (store.CampaignConflict, InvalidInput) as exc:
        return refused(page, campaign_id, str(exc))
    if campaign.status == "sending":
        background.add_task(_send_in_background, app, campaign_id)
    return RedirectResponse(f"/campaigns/{campaign_id}?done={campaign.status}", status_code=303)


@router.post("/campaigns/{campaign_id:int}/cancel")
def cancel(campaign_id: int, page: Page = Depends(require(Permission.EDIT_MARKETING))) -> Response:
    now = page.clock.now()
    try:
        with writing(page.engine) as conn:
            _editable(conn, campaign_id)
            _, events = campaign_start.cancel_campaign(conn, campaign_id, now)
            campaign_recorder(page.request.app.state.pipeline)(conn, events)
            audit.record(
                conn,
                page.actor,
                "campaign.cancel",
                "campaign",
                campaign_id,
                now,
                {"messages_cancelled": len(events)},
            )
    except store.CampaignConflict as exc:
        return refused(page, campaign_id, str(exc))
    return RedirectResponse(f"/campaigns/{campaign_id}?done=cancelled", status_code=303)
