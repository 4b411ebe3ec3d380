"""Message templates (management API, Bearer secret key): CRUD, preview and test send.

A template that does not compile is answered 422 with ``where`` = ``variants.<locale>.
body:LINE:COL`` and nothing is stored.
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
from rapport.messaging.templates import store
from rapport.messaging.templates.preview import PreviewCustomerNotFound, preview_template
from rapport.messaging.templates.render import RenderError
from rapport.messaging.templates.test_send import (
    CannotSend,
    ChannelNotConfigured,
    TestCustomerNotFound,
    send_test_message,
)
from rapport.public_links import links_of
from rapport.store.engine import writing


def _errors(request: Request) -> Iterator[None]:
    try:
        yield
    except InvalidInput as exc:
        raise ApiError(422, str(exc), exc.problems) from None
    except store.TemplateConflict as exc:
        raise ApiError(409, str(exc)) from None
    except store.TemplateNotFound as exc:
        raise ApiError(404, str(exc)) from None


router = APIRouter(
    prefix="/api/templates",
    tags=["templates"],
    dependencies=[Depends(require_secret_key), Depends(_errors)],
)


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field("", max_length=2000)
    body: str = Field(max_length=500_000)


class NewTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    channel: str = "email"
    kind: str = "mjml"
    default_locale: str | None = None
    variants: dict[str, Variant]


class TemplateChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    kind: str | None = None
    default_locale: str | None = None
    variants: dict[str, Variant] | None = None


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: int
    locale: str | None = None
    event: dict[str, Any] | None = None
    product_ids: list[str] = Field(default_factory=list, max_length=100)


class TestSendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: int
    # Where to send instead of the customer's own address (the marketer's inbox, phone...).
    to: str | None = Field(None, min_length=1, max_length=4000)
    locale: str | None = None
    product_ids: list[str] = Field(default_factory=list, max_length=100)


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _variants(variants: dict[str, Variant]) -> dict[str, dict[str, str]]:
    return {loc: v.model_dump() for loc, v in variants.items()}


@router.get("")
def list_templates(request: Request) -> Response:
    with request.app.state.engine.connect() as conn:
        return _json({"templates": [t.as_dict() for t in store.all_templates(conn)]})


@router.post("", status_code=201)
def create(request: Request, body: NewTemplate) -> Response:
    """Compile and store; errors name the locale, field, line and column."""
    now = request.app.state.clock.now()
    with writing(request.app.state.engine) as conn:
        tpl = store.create_template(
            conn,
            name=body.name,
            channel=body.channel,
            kind=body.kind,
            variants=_variants(body.variants),
            default_locale=body.default_locale,
            now=now,
        )
        details = {"name": tpl.name, "channel": tpl.channel, "locales": sorted(tpl.variants)}
        record_key_change(conn, request, "template.create", "template", tpl.id, details, now=now)
    return _json(tpl.as_dict(), 201)


@router.get("/{template_id}")
def get(request: Request, template_id: int) -> Response:
    with request.app.state.engine.connect() as conn:
        tpl = store.get_template(conn, template_id)
    return _json(tpl.as_dict() | {"compiled": tpl.compiled})


@router.patch("/{template_id}")
def change(request: Request, template_id: int, body: TemplateChange) -> Response:
    """A content change is a new version, compiled before it is stored."""
    now = request.app.state.clock.now()
    with writing(request.app.state.engine) as conn:
        tpl = store.update_template(
            conn,
            template_id,
            now,
            name=body.name,
            kind=body.kind,
            variants=_variants(body.variants) if body.variants is not None else None,
            default_locale=body.default_locale,
        )
        details = {"name": tpl.name, "version": tpl.version, "locales": sorted(tpl.variants)}
        record_key_change(conn, request, "template.update", "template", tpl.id, details, now=now)
    return _json(tpl.as_dict())


@router.delete("/{template_id}")
def delete(request: Request, template_id: int) -> Response:
    with writing(request.app.state.engine) as conn:
        gone = store.get_template(conn, template_id)
        store.delete_template(conn, template_id)
        details = {"name": gone.name, "channel": gone.channel}
        record_key_change(conn, request, "template.delete", "template", template_id, details)
    return _json({"deleted": template_id})


@router.post("/{template_id}/preview")
def preview(request: Request, template_id: int, body: PreviewRequest) -> Response:
    """The template as this customer would get it: subject, HTML and text."""
    now = request.app.state.clock.now()
    with request.app.state.engine.connect() as conn:
        tpl = store.get_template(conn, template_id)
        try:
            out = preview_template(
                conn,
                tpl,
                body.customer_id,
                now,
                locale=body.locale,
                event=body.event,
                product_ids=body.product_ids,
            )
        except PreviewCustomerNotFound as exc:
            raise ApiError(404, str(exc)) from None
        except RenderError as exc:
            raise ApiError(422, f"the template failed for this customer: {exc}") from None
    return _json(out.as_dict())


@router.post("/{template_id}/test-send")
def test_send(request: Request, template_id: int, body: TestSendRequest) -> Response:
    """Render for a customer and send it now through the channel's configured backend.

    Not through the outbox, so nothing lands on the customer's card and no policy applies;
    opens and clicks are not tracked. The subject (or, on channels without one, the text)
    starts with "[TEST] ". 409 when the template's channel is not configured.
    """
    app = request.app
    try:
        result = send_test_message(
            app.state.engine,
            template_id,
            body.customer_id,
            now=app.state.clock.now(),
            links=links_of(app),
            to=body.to,
            locale=body.locale,
            product_ids=body.product_ids,
        )
    except ChannelNotConfigured as exc:
        raise ApiError(409, str(exc)) from None
    except TestCustomerNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except CannotSend as exc:
        hint = " (give `to` to send it elsewhere)" if exc.no_address else ""
        raise ApiError(422, f"cannot send this to the customer: {exc.reason}{hint}") from None
    with writing(app.state.engine) as conn:
        details = {
            "customer_id": body.customer_id,
            "to": result["to"],
            "status": result["status"],
        }
        record_key_change(conn, request, "template.test_send", "template", template_id, details)
    return _json(result)
