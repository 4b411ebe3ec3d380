"""Every error answer has one shape: a message, and the list of problems with where/why."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import ORJSONResponse

from rapport.ingest.errors import InvalidInput, Problem


class ApiError(Exception):
    def __init__(self, status: int, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []


def error_body(message: str, problems: list[Problem]) -> dict[str, Any]:
    return {"success": False, "message": message, "errors": [p.as_dict() for p in problems]}


def _loc(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> ORJSONResponse:
        return ORJSONResponse(error_body(exc.message, exc.problems), status_code=exc.status)

    @app.exception_handler(InvalidInput)
    async def _invalid(_: Request, exc: InvalidInput) -> ORJSONResponse:
        return ORJSONResponse(error_body(str(exc), exc.problems), status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> ORJSONResponse:
        problems = [
            Problem(_loc(tuple(e["loc"])), e["msg"].removeprefix("Value error, "))
            for e in exc.errors()
        ]
        message = "; ".join(str(p) for p in problems)
        return ORJSONResponse(error_body(message, problems), status_code=422)
