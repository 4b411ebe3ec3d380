"""Push subscriptions from browsers and apps: ``/v1/push/...``, authenticated like ingest.

The page or app that obtained the subscription posts it with the site's write key, as it
sends its events. Who it belongs to is resolved the ingest way: a ``Push Subscribed``
track event goes through the pipeline (creating an anonymous profile if needed, merging
on identify later), and the subscription is stored in that same transaction, so a
subscription never exists without its customer and its event.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from rapport.api.auth import require_write_key
from rapport.api.errors import ApiError
from rapport.errors import InvalidInput, Problem
from rapport.ingest.messages import parse_message
from rapport.messaging import push_subscriptions as subs
from rapport.store.engine import writing

router = APIRouter(prefix="/v1/push", tags=["push subscriptions"])

MAX_BODY = 16 * 1024
_IDENTITY_KEYS = ("userId", "anonymousId", "context", "writeKey")
_OK = b'{"success":true}'


async def _object(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError(413, f"body is larger than the limit of {MAX_BODY} bytes")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ApiError(413, f"body is larger than the limit of {MAX_BODY} bytes")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"body: malformed JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body: must be a JSON object")
    require_write_key(request, request.app.state.keys, body.get("writeKey"))
    return body


def _problems(exc: ValidationError) -> list[Problem]:
    return [
        Problem(
            ".".join(str(p) for p in e["loc"]),
            "unknown field"
            if e["type"] == "extra_forbidden"
            else e["msg"].removeprefix("Value error, "),
        )
        for e in exc.errors()
    ]


@router.post("/subscriptions")
async def subscribe(request: Request) -> Response:
    """Store a browser's web-push subscription or an app's FCM token for a customer.

    Body: `{"userId" | "anonymousId", "webpush": PushSubscription.toJSON()}` or
    `{"userId" | "anonymousId", "fcm": {"token", "platform": "ios" | "android" | "web"}}`,
    with an optional `userAgent`. Sending the same subscription again updates it (new keys,
    another customer) and revives it if it was revoked. A subscription new to the customer
    sets their consent for the channel to subscribed: the permission prompt was the opt-in.
    """
    body = await _object(request)
    problems: list[Problem] = []
    sub: subs.Subscription | None = None
    try:
        sub = subs.SubscriptionIn.model_validate(
            {k: v for k, v in body.items() if k not in _IDENTITY_KEYS}
        ).subscription()
    except ValidationError as exc:
        problems.extend(_problems(exc))
    settings = request.app.state.settings
    clock = request.app.state.clock
    track = {
        "type": "track",
        "event": subs.SUBSCRIBED_EVENT,
        "messageId": f"push-{uuid.uuid4()}",
        "userId": body.get("userId"),
        "anonymousId": body.get("anonymousId"),
        "context": body.get("context") or {},
        "properties": {
            "kind": sub.kind if sub else None,
            "platform": sub.platform if sub else None,
        },
    }
    if sub is not None and sub.user_agent and isinstance(track["context"], dict):
        track["context"] = {"userAgent": sub.user_agent, **track["context"]}
    try:
        incoming = parse_message(
            track,
            where="",
            received_at=clock.now(),
            phone_region=settings.default_phone_region,
            max_bytes=settings.max_message_bytes,
        )
    except InvalidInput as exc:
        problems[:0] = exc.problems
    if problems or sub is None:
        raise InvalidInput(problems)

    pipeline = request.app.state.pipeline

    def store() -> None:
        for attempt in range(3):
            try:
                with writing(request.app.state.engine) as conn:
                    [customer_id] = pipeline.ingest_in(conn, [incoming]).customer_ids
                    assert customer_id is not None  # the message id is fresh
                    events = subs.subscribe(conn, customer_id, sub, clock.now())
                    if events:
                        pipeline.record_many(conn, events)
                return
            except sa.exc.IntegrityError:
                # A concurrent request created the same identity or endpoint first.
                pipeline.products.clear()
                if attempt == 2:
                    raise
            except Exception:
                pipeline.products.clear()  # it may remember writes that were rolled back
                raise

    await run_in_threadpool(store)
    return Response(_OK, media_type="application/json")


@router.delete("/subscriptions")
async def unsubscribe(request: Request) -> Response:
    """Revoke a subscription: `{"endpoint": ...}` (web push) or `{"token": ...}` (FCM).

    Idempotent: an unknown or already revoked one answers success too, so a page may call
    it whenever the browser drops its subscription. Consent is not changed.
    """
    body = await _object(request)
    given = {k: body[k] for k in ("endpoint", "token") if body.get(k) is not None}
    unknown = sorted(set(body) - {"endpoint", "token", "writeKey"})
    problems = [Problem(k, "unknown field") for k in unknown]
    if len(given) != 1:
        problems.append(Problem("", "give exactly one of endpoint, token"))
    for key, value in given.items():
        if not isinstance(value, str) or not value.strip():
            problems.append(Problem(key, "must be a non-empty string"))
    if problems:
        raise InvalidInput(problems)
    [address] = given.values()

    def store() -> None:
        with writing(request.app.state.engine) as conn:
            subs.revoke(conn, address, request.app.state.clock.now())

    await run_in_threadpool(store)
    return Response(_OK, media_type="application/json")


@router.get("/vapid-public-key")
def vapid_public_key(request: Request) -> dict[str, str]:
    """The VAPID public key a page passes to `pushManager.subscribe` as
    `applicationServerKey`. Public by nature, so no key is needed to read it."""
    with request.app.state.engine.connect() as conn:
        key = subs.vapid_public_key(conn)
    if key is None:
        raise ApiError(
            404, "web push is not configured: set channels.webpush with the webpush backend"
        )
    return {"publicKey": key}
