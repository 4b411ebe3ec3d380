"""The Segment tracking API: /v1/identify, /track, /page, /screen, /group, /alias, /batch."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from rapport.api.auth import require_write_key
from rapport.api.errors import ApiError
from rapport.errors import InvalidInput, Problem
from rapport.ingest.messages import MESSAGE_TYPES, parse_batch, parse_message

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


async def _store(request: Request, batch: list[Any]) -> Response:
    future = request.app.state.writer.submit(batch)
    await asyncio.wrap_future(future)
    return Response(_OK, media_type="application/json")


def _settings(request: Request) -> Any:
    return request.app.state.settings


async def _single(request: Request, kind: str) -> Response:
    settings = _settings(request)
    body = _json(await _body(request, settings.max_message_bytes))
    if not isinstance(body, dict):
        raise ApiError(400, "body: must be a JSON object")
    require_write_key(request, request.app.state.keys, body.get("writeKey"))
    msg = parse_message(
        {**body, "type": kind},
        where="",
        received_at=request.app.state.clock.now(),
        phone_region=settings.default_phone_region,
        max_bytes=settings.max_message_bytes,
    )
    return await _store(request, [msg])


async def _many(request: Request, source: str) -> Response:
    settings = _settings(request)
    body = _json(await _body(request, settings.max_batch_bytes))
    if not isinstance(body, dict):
        raise ApiError(400, "body: must be a JSON object with a 'batch' list")
    require_write_key(request, request.app.state.keys, body.get("writeKey"))
    if "batch" not in body:
        raise InvalidInput([Problem("batch", "is required")])
    defaults = {k: body[k] for k in ("context", "sentAt") if body.get(k) is not None}
    batch = parse_batch(
        body["batch"],
        received_at=request.app.state.clock.now(),
        phone_region=settings.default_phone_region,
        max_message_bytes=settings.max_message_bytes,
        source=source,
        defaults=defaults,
    )
    return await _store(request, batch)


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
    return await _many(request, "api")


@router.post("/import")
async def import_(request: Request) -> Response:
    """Historical data in the batch format; stored with source `import`."""
    return await _many(request, "import")
