"""Every error answer has one shape: a message, and the list of problems with where/why."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from rapport.errors import InvalidInput, Problem


class ApiError(Exception):
    def __init__(self, status: int, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []


# A machine-readable ``code`` beside the message: the RudderStack SDK reads ``code`` and
# ``message`` from every error answer and, without them, retries a 4xx as a network error.
_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
}


def error_body(status: int, message: str, problems: list[Problem]) -> dict[str, Any]:
    return {
        "success": False,
        "code": _CODES.get(status, "error"),
        "message": message,
        "errors": [p.as_dict() for p in problems],
    }


def _loc(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _answer(body: dict[str, Any], status_code: int) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


def api_error_answer(exc: ApiError) -> Response:
    return _answer(error_body(exc.status, exc.message, exc.problems), status_code=exc.status)


def invalid_input_answer(exc: InvalidInput) -> Response:
    return _answer(error_body(400, str(exc), exc.problems), status_code=400)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return api_error_answer(exc)

    @app.exception_handler(InvalidInput)
    async def _invalid(_: Request, exc: InvalidInput) -> Response:
        return invalid_input_answer(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        problems = [
            Problem(_loc(tuple(e["loc"])), e["msg"].removeprefix("Value error, "))
            for e in exc.errors()
        ]
        message = "; ".join(str(p) for p in problems)
        return _answer(error_body(422, message, problems), status_code=422)
