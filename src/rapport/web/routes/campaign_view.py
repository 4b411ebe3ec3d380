"""One campaign: its definition, its results with the A/B verdict, and a preview of what a
chosen customer would get.

The results come from the API's own functions (``web.campaign_results``); the chart is
the experiment chart of ``/api/reports/experiments/campaigns/{id}.svg``. The preview is
``messaging.campaign_preview`` — the function behind ``POST /api/campaigns/{id}/preview``
— with tracking off, so that looking is never counted as an open or a click; each
variant's HTML is its own document in a sandboxed frame (``web.message_frame``). A
preview shows a real customer's message, addresses included, so it needs the
``view_personal`` permission; the customer is found as on the Customers page.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from rapport.access.roles import Permission
from rapport.analytics.experiments.chart import experiment_chart
from rapport.analytics.experiments.options import Options
from rapport.analytics.experiments.splits import campaign_experiment
from rapport.customers import card as cards
from rapport.messaging import campaigns as store
from rapport.messaging.campaign_preview import PreviewCustomerNotFound, preview_campaign
from rapport.messaging.compose import Tracking
from rapport.messaging.templates.store import all_templates
from rapport.public_links import links_of
from rapport.segments.definitions import SegmentNotFound, get_segment
from rapport.web.campaign_forms import LABELS
from rapport.web.campaign_results import campaign_results
from rapport.web.context import Forbidden, NotFound, Page, render, require
from rapport.web.message_frame import frame_problem, frame_response
from rapport.web.routes.customers import find

router = APIRouter(include_in_schema=False)

# Shown after the redirect that follows a change (?done=…).
DONE = ("saved", "sending", "scheduled", "cancelled")


def _campaign(conn: sa.Connection, campaign_id: int) -> store.Campaign:
    try:
        return store.get_campaign(conn, campaign_id)
    except store.CampaignNotFound:
        raise NotFound(f"campaign {campaign_id}") from None


def _preview(page: Page, conn: sa.Connection, campaign: store.Campaign, cid: int) -> dict[str, Any]:
    if not page.can(Permission.VIEW_PERSONAL):
        raise Forbidden(Permission.VIEW_PERSONAL)
    try:
        # The unsubscribe and preference links as the customer gets them (they open a
        # confirmation page that refuses to be framed); no open pixel, no click redirects.
        tracking = Tracking(links_of(page.request.app), opens=False, clicks=False)
        found = preview_campaign(conn, campaign, cid, page.clock.now(), tracking)
    except PreviewCustomerNotFound:
        raise NotFound(f"customer {cid}") from None
    who = cards.summaries(conn, [cid])
    return found | {"customer": who[0] if who else None}


def detail_context(page: Page, campaign_id: int, customer_id: int | None = None) -> dict[str, Any]:
    """Everything the campaign page shows (also behind a refused start or cancel)."""
    with page.engine.connect() as conn:
        campaign = _campaign(conn, campaign_id)
        try:
            segment = get_segment(conn, campaign.segment_id)
        except SegmentNotFound:
            segment = None
        names = {t.id: t.name for t in all_templates(conn)}
        results = campaign_results(conn, campaign, page.clock.now(), page.language)
        preview, missing = None, None
        if customer_id is not None and page.can(Permission.VIEW_PERSONAL):
            try:
                preview = _preview(page, conn, campaign, customer_id)
            except NotFound:
                missing = customer_id
    return {
        "campaign": campaign,
        "segment": segment,
        "template_names": names,
        "results": results,
        "preview": preview,
        "missing_customer": missing,
        "customer_id": customer_id,
        "editable": campaign.status in store.EDITABLE,
        "cancellable": campaign.status in (*store.EDITABLE, "sending", "sent"),
        **LABELS,
    }


def refused(page: Page, campaign_id: int, message: str) -> Response:
    """The campaign page with why a change was refused (409): nothing was changed."""
    context = detail_context(page, campaign_id) | {"refusal": message}
    return render(page, "campaign_detail.html", context, status=409)


@router.get("/campaigns/{campaign_id:int}")
def campaign_page(
    campaign_id: int,
    customer_id: int | None = Query(None),
    done: str | None = Query(None, max_length=20),
    page: Page = Depends(require(Permission.VIEW)),
) -> Response:
    context = detail_context(page, campaign_id, customer_id)
    context["done"] = done if done in DONE else None
    return render(page, "campaign_detail.html", context)


@router.get("/campaigns/{campaign_id:int}/customers")
def pick_customer(
    campaign_id: int,
    q: str = Query("", max_length=200),
    page: Page = Depends(require(Permission.VIEW_PERSONAL)),
) -> Response:
    """Customers matching the text, each a link that previews the campaign for them."""
    results = None
    if q.strip():
        with page.engine.connect() as conn:
            _campaign(conn, campaign_id)
            results = cards.summaries(conn, find(page, q))
    return render(
        page,
        "_campaign_customers.html",
        {"results": results, "q": q, "campaign_id": campaign_id},
    )


@router.get("/campaigns/{campaign_id:int}/preview")
def preview_part(
    campaign_id: int,
    customer_id: int = Query(...),
    page: Page = Depends(require(Permission.VIEW_PERSONAL)),
) -> Response:
    """The preview for one customer, swapped into the page by htmx."""
    with page.engine.connect() as conn:
        campaign = _campaign(conn, campaign_id)
        preview = _preview(page, conn, campaign, customer_id)
    url = f"/campaigns/{campaign_id}?" + urlencode({"customer_id": customer_id})
    return render(
        page,
        "_campaign_preview.html",
        {"campaign": campaign, "preview": preview},
        headers={"HX-Replace-Url": url},
    )


@router.get("/campaigns/{campaign_id:int}/preview/{customer_id:int}/{index:int}.html")
def preview_frame(
    campaign_id: int,
    customer_id: int,
    index: int,
    fallback: bool = Query(False),
    page: Page = Depends(require(Permission.VIEW_PERSONAL)),
) -> Response:
    """One variant's (or fallback's) HTML as its own document, for a sandboxed frame."""
    with page.engine.connect() as conn:
        campaign = _campaign(conn, campaign_id)
        found = _preview(page, conn, campaign, customer_id)
    parts = found["fallback" if fallback else "variants"]
    if not 0 <= index < len(parts):
        raise NotFound(f"variant {index} of campaign {campaign_id}")
    part = parts[index]
    if not part.get("html"):
        reason = part.get("error") or part.get("skip_reason") or "this message has no HTML part"
        return frame_problem(str(reason))
    return frame_response(part["html"])


@router.get("/campaigns/{campaign_id:int}/experiment.svg")
def experiment_svg(campaign_id: int, page: Page = Depends(require(Permission.VIEW))) -> Response:
    """The API's experiment chart, for the session (the API's needs a key)."""
    with page.engine.connect() as conn:
        _campaign(conn, campaign_id)
        report = campaign_experiment(
            conn, campaign_id, Options(locale=page.language), page.clock.now()
        )
    return Response(experiment_chart(report, "svg"), media_type="image/svg+xml")
