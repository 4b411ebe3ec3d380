"""Outgoing event subscriptions (management API, Bearer secret key): CRUD.

The secret a subscriber verifies signatures with is shown once, in the answer that made it
(on create, or on a PATCH with ``rotate_secret``); it is stored, never shown again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from rapport.api.audit_key import record_key_change
from rapport.api.auth import require_secret_key
from rapport.api.errors import ApiError
from rapport.errors import InvalidInput
from rapport.messaging import event_subscriptions as subs
from rapport.store.engine import writing


def _errors(request: Request) -> Iterator[None]:
    try:
        yield
    except InvalidInput as exc:
        raise ApiError(422, str(exc), exc.problems) from None
    except subs.SubscriptionConflict as exc:
        raise ApiError(409, str(exc)) from None
    except subs.SubscriptionNotFound as exc:
        raise ApiError(404, str(exc)) from None


router = APIRouter(
    prefix="/api/event-subscriptions",
    tags=["event subscriptions"],
    dependencies=[Depends(require_secret_key), Depends(_errors)],
)


class NewSubscription(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=200)
    url: str = Field(max_length=2000)
    # Exact event names, "*" for every event, or a prefix ending in "*" ("Message *").
    event_names: list[str] = Field(max_length=subs.MAX_PATTERNS)
    # Made for you when left out (recommended).
    secret: str | None = Field(None, max_length=200)
    active: bool = True


class SubscriptionChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200)
    url: str | None = Field(None, max_length=2000)
    event_names: list[str] | None = Field(None, max_length=subs.MAX_PATTERNS)
    active: bool | None = None
    secret: str | None = Field(None, max_length=200)
    # Make a new secret and answer it (once).
    rotate_secret: bool = False


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _changed(request: Request) -> None:
    """The pipeline matches events against a cached list: make it re-read now."""
    request.app.state.pipeline.subscriptions.invalidate()


@router.get("")
def list_subscriptions(request: Request) -> Response:
    with request.app.state.engine.connect() as conn:
        return _json({"subscriptions": [s.as_dict() for s in subs.all_subscriptions(conn)]})


@router.post("", status_code=201)
def create(request: Request, body: NewSubscription) -> Response:
    """Store a subscription; the answer carries its secret, shown only this once."""
    with writing(request.app.state.engine) as conn:
        created, secret = subs.create_subscription(
            conn,
            name=body.name,
            url=body.url,
            event_names=body.event_names,
            secret=body.secret,
            active=body.active,
            now=request.app.state.clock.now(),
        )
        record_key_change(
            conn,
            request,
            "subscription.create",
            "subscription",
            created.id,
            {"name": body.name, "event_names": body.event_names},
        )
    _changed(request)
    return _json(created.as_dict() | {"secret": secret}, 201)


@router.get("/{subscription_id}")
def get(request: Request, subscription_id: int) -> Response:
    with request.app.state.engine.connect() as conn:
        return _json(subs.get_subscription(conn, subscription_id).as_dict())


@router.patch("/{subscription_id}")
def change(request: Request, subscription_id: int, body: SubscriptionChange) -> Response:
    """Pause (``active: false``), re-target, or rotate the secret; queued deliveries use
    the subscription as it is when they are sent."""
    if body.rotate_secret and body.secret is not None:
        raise ApiError(422, "secret: give a secret or rotate_secret, not both")
    secret = subs.new_secret() if body.rotate_secret else body.secret
    with writing(request.app.state.engine) as conn:
        changed = subs.update_subscription(
            conn,
            subscription_id,
            request.app.state.clock.now(),
            name=body.name,
            url=body.url,
            event_names=body.event_names,
            active=body.active,
            secret=secret,
        )
        fields = sorted(k for k, v in body.model_dump(exclude_unset=True).items() if k != "secret")
        record_key_change(
            conn,
            request,
            "subscription.update",
            "subscription",
            subscription_id,
            {"fields": fields, "secret_changed": secret is not None},
        )
    _changed(request)
    answer = changed.as_dict()
    if body.rotate_secret:
        answer["secret"] = secret
    return _json(answer)


@router.delete("/{subscription_id}")
def delete(request: Request, subscription_id: int) -> Response:
    """Deliveries still queued for it are dropped when their turn comes."""
    with writing(request.app.state.engine) as conn:
        subs.delete_subscription(conn, subscription_id)
        record_key_change(conn, request, "subscription.delete", "subscription", subscription_id)
    _changed(request)
    return _json({"deleted": subscription_id})
