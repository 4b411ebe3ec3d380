"""The Segment tracking API: /v1/identify, /track, /page, /screen, /group, /alias, /batch.

The routes below are what OpenAPI documents. In a running app, :class:`TrackingShortcut`
answers the same paths before routing: the same reading, key check, validation and store,
without the router's and dependency machinery's share of each request. Tracking calls
arrive by the thousand per second, one event each, and that share was ~260 µs of the
server's CPU per call: half of what a refused call costs, a fifth of a stored one
(docs/ingest.md, "Latency").
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from rapport.api.auth import require_write_key
from rapport.api.errors import ApiError, api_error_answer, invalid_input_answer
from rapport.errors import InvalidInput
from rapport.ingest.inbox import entries
from rapport.ingest.messages import MESSAGE_TYPES
from rapport.ingest.requests import messages_of

router = APIRouter(prefix="/v1", tags=["ingest (Segment tracking API)"])
_OK = b'{"success":true}'


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        # Refuse before reading: a compressed body is never larger than what it inflates to.
        raise ApiError(413, f"body is larger than the limit of {limit} bytes")
    raw = await request.body()
    encoding = request.headers.get("content-encoding", "").lower()
    if encoding == "gzip":
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            raw = inflater.decompress(raw, limit + 1)
        except zlib.error as exc:
            raise ApiError(400, f"body: not valid gzip ({exc})") from None
        if len(raw) <= limit and not inflater.eof:
            # zlib returns what it could inflate from a cut-off stream without an error.
            raise ApiError(400, "body: the gzip stream is truncated")
    elif encoding not in ("", "identity"):
        raise ApiError(415, f"content-encoding {encoding!r} is not supported (use gzip)")
    if len(raw) > limit:
        raise ApiError(413, f"body is larger than the limit of {limit} bytes")
    return raw


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"body: malformed JSON ({exc})") from None


def _settings(request: Request) -> Any:
    return request.app.state.settings


async def _accept(request: Request, kind: str, limit: int, what: str) -> Response:
    """Read, authenticate and validate; then store (or, queued, append) and answer."""
    settings = _settings(request)
    raw = await _body(request, limit)
    body = _json(raw)
    if not isinstance(body, dict):
        raise ApiError(400, f"body: must be a JSON object{what}")
    require_write_key(request, request.app.state.keys, body.get("writeKey"))
    received_at = request.app.state.clock.now()
    batch = messages_of(
        kind,
        body,
        received_at=received_at,
        phone_region=settings.default_phone_region,
        max_message_bytes=settings.max_message_bytes,
    )
    rows = (
        entries(kind, received_at, batch, settings.ingest_lanes) if settings.ingest_queue else None
    )
    await asyncio.wrap_future(request.app.state.writer.submit(batch, rows))
    return Response(_OK, media_type="application/json")


async def _single(request: Request, kind: str) -> Response:
    return await _accept(request, kind, _settings(request).max_message_bytes, "")


async def _many(request: Request, kind: str) -> Response:
    return await _accept(request, kind, _settings(request).max_batch_bytes, " with a 'batch' list")


def _make_single(kind: str) -> Any:
    async def endpoint(request: Request) -> Response:
        return await _single(request, kind)

    endpoint.__name__ = kind
    endpoint.__doc__ = f'Segment `{kind}` call. Answers `{{"success": true}}`.'
    return endpoint


for _kind in MESSAGE_TYPES:
    router.add_api_route(f"/{_kind}", _make_single(_kind), methods=["POST"], name=_kind)


@router.post("/batch")
async def batch(request: Request) -> Response:
    """Up to 500 KB of messages of any type; one bad message rejects the whole batch."""
    return await _many(request, "batch")


@router.post("/import")
async def import_(request: Request) -> Response:
    """Historical data in the batch format; stored with source `import`."""
    return await _many(request, "import")


_SHORTCUTS = {
    **{f"/v1/{kind}": (_single, kind) for kind in MESSAGE_TYPES},
    "/v1/batch": (_many, "batch"),
    "/v1/import": (_many, "import"),
}


class TrackingShortcut:
    """ASGI middleware: a POST to a tracking endpoint is answered here, by the functions
    the routes call, with the answers the app's error handlers give; anything else goes
    on to the app. Errors other than bad input (the store failing) propagate as they
    would from the route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            target = _SHORTCUTS.get(scope["path"])
            if target is not None:
                handler, kind = target
                request = Request(scope, receive)
                try:
                    response = await handler(request, kind)
                except ApiError as exc:
                    response = api_error_answer(exc)
                except InvalidInput as exc:
                    response = invalid_input_answer(exc)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
