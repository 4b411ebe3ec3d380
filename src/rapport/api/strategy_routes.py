"""The CRM-strategy document (management API, Bearer secret key with ``export``).

``GET /api/strategy?format=pdf|html&period=…&locale=ru|en`` answers the file, the same as
``rapport strategy export`` and the UI's button (``rapport.strategy``). A bad format, period
or language answers 422 naming the query parameter and the values it may take.

The document holds the business's figures and is made to leave the system, so it needs
the ``export`` permission, as a CSV download does; a viewer key is refused with 403.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from rapport.access.roles import Permission, can
from rapport.api.auth import require_secret_key
from rapport.api.errors import ApiError
from rapport.errors import InvalidInput, Problem
from rapport.strategy import MEDIA_TYPES, export, file_name
from rapport.strategy.export import DEFAULT_PERIOD, check
from rapport.strategy.html import CONTENT_SECURITY_POLICY


def _may_export(request: Request) -> None:
    key = request.state.api_key
    if not can(key.role, Permission.EXPORT):
        raise ApiError(
            403,
            f"authorization: this key's role ({key.role}) does not allow GET /api/strategy "
            f"(it needs the {Permission.EXPORT.value} permission)",
        )


router = APIRouter(
    prefix="/api/strategy",
    tags=["strategy"],
    dependencies=[Depends(require_secret_key), Depends(_may_export)],
)


@router.get("", response_class=Response)
def strategy_document(
    request: Request,
    format: str = Query("pdf", description="pdf or html"),
    period: str = Query(DEFAULT_PERIOD, description="a preset: last_30_days, last_90_days, …"),
    locale: str = Query("en", description="ru or en"),
    shop: str | None = Query(None, description="the name on the cover", max_length=100),
) -> Response:
    """The strategy document: segments with sizes, scenarios with their journey maps, the
    key figures of the period, the communication policy and the loyalty programme."""
    try:
        fmt, language, period = check(format, locale, period)
    except InvalidInput as exc:
        problems = [Problem(f"query.{p.where}", p.reason) for p in exc.problems]
        raise ApiError(422, "; ".join(str(p) for p in problems), problems) from None
    from rapport.web.i18n import translations  # the UI's catalog holds the document's words

    with request.app.state.engine.connect() as conn:
        body, span = export(
            conn,
            fmt,
            period,
            request.app.state.clock.now(),
            language,
            translations(language).gettext,
            shop=shop,
        )
    headers = {
        "Content-Disposition": f'attachment; filename="{file_name(fmt, span, language)}"',
        "Content-Language": language,
        "Cache-Control": "no-store",
    }
    if fmt == "html":
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)
