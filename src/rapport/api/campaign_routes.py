"""Campaigns and the communication policy (management API, Bearer secret key).

Thin routes: parse, call ``messaging.campaigns`` / ``campaign_send`` / ``policy``, answer.
Starting a campaign answers at once; the sending runs after the answer (a background
task) and, should the server stop midway, the worker resumes it. Events the campaign
produces are recorded through the app's pipeline in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from rapport.api.audit_key import record_key_change
from rapport.api.auth import require_secret_key
from rapport.api.errors import ApiError
from rapport.errors import InvalidInput
from rapport.messaging import campaign_start, holdout
from rapport.messaging import campaigns as store
from rapport.messaging.campaign_preview import PreviewCustomerNotFound, preview_campaign
from rapport.messaging.campaign_report import campaign_report
from rapport.messaging.campaign_send import send_campaign
from rapport.messaging.compose import Tracking
from rapport.messaging.policy import Priority, load_policy, save_policy
from rapport.public_links import links_of
from rapport.store.engine import writing
from rapport.store.tables import customers
from rapport.worker import campaign_recorder

log = logging.getLogger("rapport.api.campaigns")


def _errors(request: Request) -> Iterator[None]:
    try:
        yield
    except InvalidInput as exc:
        raise ApiError(422, str(exc), exc.problems) from None
    except store.CampaignConflict as exc:
        raise ApiError(409, str(exc)) from None
    except store.CampaignNotFound as exc:
        raise ApiError(404, str(exc)) from None


router = APIRouter(dependencies=[Depends(require_secret_key), Depends(_errors)])


CampaignStatus = Literal["draft", "scheduled", "sending", "sent", "cancelled"]  # store.STATUSES


class CampaignChange(BaseModel):
    """Any subset of the campaign's fields; the result is validated whole."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    channel: str | None = None
    segment_id: int | None = None
    variants: list[store.VariantSpec] | None = None
    control_percent: float | None = None
    fallback: list[store.FallbackSpec] | None = None
    send_at: datetime | None = None
    local_hour: int | None = None
    throttle_per_minute: int | None = None
    priority: Priority | None = None
    cap_priority: int | None = None


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: int


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status_code=status,
        media_type="application/json",
    )


# -- policy --------------------------------------------------------------------------


@router.get("/api/policy", tags=["policy"])
def get_policy(request: Request) -> Response:
    """The communication policy: consent, frequency caps, quiet hours (docs/policy.md)."""
    with request.app.state.engine.connect() as conn:
        return _json(load_policy(conn).model_dump(mode="json"))


@router.put("/api/policy", tags=["policy"])
def put_policy(request: Request, body: dict[str, Any]) -> Response:
    """Replace the policy; a bad field answers 422 naming it, and nothing changes."""
    with writing(request.app.state.engine) as conn:
        policy = save_policy(conn, body, request.app.state.clock.now())
        saved = policy.model_dump(mode="json")
        record_key_change(conn, request, "policy.update", "policy", "policy", {"policy": saved})
    return _json(saved)


def _control_doc(conn: sa.Connection, control: holdout.GlobalControl) -> dict[str, Any]:
    c = customers.c
    members = conn.execute(
        sa.select(sa.func.count()).where(
            c.merged_into.is_(None),
            c.erased_at.is_(None),
            holdout.in_global_control_sql(c.id, control),
        )
    ).scalar_one()
    return control.as_dict() | {"members": int(members)}


@router.get("/api/policy/global-control", tags=["policy"])
def get_global_control(request: Request) -> Response:
    """The global control group (kept out of all marketing) and how many customers it holds."""
    with request.app.state.engine.connect() as conn:
        return _json(_control_doc(conn, holdout.global_control(conn)))


@router.put("/api/policy/global-control", tags=["policy"])
def put_global_control(request: Request, body: dict[str, Any]) -> Response:
    """Set the share (0–50 %); without a salt the group keeps its members. 422 names a bad
    field, and nothing changes."""
    with writing(request.app.state.engine) as conn:
        control = holdout.save_global_control(conn, body, request.app.state.clock.now())
        record_key_change(
            conn, request, "policy.global_control", "policy", "global_control", control.as_dict()
        )
        return _json(_control_doc(conn, control))


# -- campaigns -----------------------------------------------------------------------


def _audit_save(conn: sa.Connection, request: Request, action: str, campaign: Any) -> None:
    """As the composer writes it: the name and the status after the save."""
    details = {"name": campaign.name, "status": campaign.status}
    record_key_change(conn, request, action, "campaign", campaign.id, details)


@router.post("/api/campaigns", status_code=201, tags=["campaigns"])
def create(request: Request, body: store.CampaignSpec) -> Response:
    """A draft campaign; every problem is named (``variants[1].template_id``)."""
    with writing(request.app.state.engine) as conn:
        campaign = store.create_campaign(conn, body.model_dump(), request.app.state.clock.now())
        _audit_save(conn, request, "campaign.create", campaign)
    return _json(campaign.as_dict(), 201)


@router.get("/api/campaigns", tags=["campaigns"])
def list_campaigns(request: Request, status: CampaignStatus | None = Query(None)) -> Response:
    with request.app.state.engine.connect() as conn:
        found = store.list_campaigns(conn, status)
    return _json({"campaigns": [c.as_dict() for c in found]})


@router.get("/api/campaigns/{campaign_id}", tags=["campaigns"])
def get(request: Request, campaign_id: int) -> Response:
    with request.app.state.engine.connect() as conn:
        return _json(store.get_campaign(conn, campaign_id).as_dict())


@router.patch("/api/campaigns/{campaign_id}", tags=["campaigns"])
def change(request: Request, campaign_id: int, body: CampaignChange) -> Response:
    """Change a draft or scheduled campaign (409 once it is sending)."""
    changes = body.model_dump(exclude_unset=True)
    with writing(request.app.state.engine) as conn:
        campaign = store.update_campaign(conn, campaign_id, changes, request.app.state.clock.now())
        _audit_save(conn, request, "campaign.update", campaign)
    return _json(campaign.as_dict())


def _send_in_background(app: FastAPI, campaign_id: int) -> None:
    try:
        send_campaign(
            app.state.engine,
            campaign_id,
            clock=app.state.clock,
            record=campaign_recorder(app.state.pipeline),
            tracking=Tracking(links_of(app)),
        )
    except Exception:  # the worker resumes it; the answer has been given already
        log.exception("sending campaign %s stopped", campaign_id)


@router.post("/api/campaigns/{campaign_id}/start", tags=["campaigns"])
def start(request: Request, campaign_id: int, background: BackgroundTasks) -> Response:
    """Start now (the audience is frozen and sending begins after the answer) or, with a
    future ``send_at``, schedule it."""
    links_of(request.app)  # made before the answer, so a store problem is reported now
    with writing(request.app.state.engine) as conn:
        campaign = campaign_start.start_campaign(conn, campaign_id, request.app.state.clock.now())
        details = {"status": campaign.status, "send_at": campaign.send_at}
        record_key_change(conn, request, "campaign.start", "campaign", campaign_id, details)
    if campaign.status == "sending":
        background.add_task(_send_in_background, request.app, campaign_id)
    return _json(campaign.as_dict())


@router.post("/api/campaigns/{campaign_id}/cancel", tags=["campaigns"])
def cancel(request: Request, campaign_id: int) -> Response:
    """Stop it: nothing more is queued, and messages still waiting are skipped."""
    with writing(request.app.state.engine) as conn:
        campaign, events = campaign_start.cancel_campaign(
            conn, campaign_id, request.app.state.clock.now()
        )
        campaign_recorder(request.app.state.pipeline)(conn, events)
        details = {"messages_cancelled": len(events)}
        record_key_change(conn, request, "campaign.cancel", "campaign", campaign_id, details)
    return _json(campaign.as_dict() | {"messages_cancelled": len(events)})


@router.get("/api/campaigns/{campaign_id}/report", tags=["campaigns"])
def report(request: Request, campaign_id: int) -> Response:
    """Audience, control, queued, skipped by reason, sent, opened and clicked, per variant."""
    with request.app.state.engine.connect() as conn:
        return _json(campaign_report(conn, store.get_campaign(conn, campaign_id)))


@router.post("/api/campaigns/{campaign_id}/preview", tags=["campaigns"])
def preview(request: Request, campaign_id: int, body: PreviewRequest) -> Response:
    """Every variant (and fallback) as this customer would get it, tracking links included,
    with the variant they draw and what the policy says now. Nothing is stored."""
    now = request.app.state.clock.now()
    tracking = Tracking(links_of(request.app))
    with request.app.state.engine.connect() as conn:
        campaign = store.get_campaign(conn, campaign_id)
        try:
            found = preview_campaign(conn, campaign, body.customer_id, now, tracking)
        except PreviewCustomerNotFound as exc:
            raise ApiError(404, str(exc)) from None
    return _json(found)
