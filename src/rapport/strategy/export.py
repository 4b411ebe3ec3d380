"""One call for every caller (CLI, API, web): check the request, collect, render.

A bad format, language or period is refused before anything is read, with every problem
at once and the valid values named (``InvalidInput``: the API answers 422 with the path of
the parameter, the CLI prints it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.analytics.periods import PRESETS, Period, preset
from rapport.errors import InvalidInput, Problem
from rapport.strategy.collect import collect
from rapport.strategy.html import render_html
from rapport.strategy.language import Language, Translate
from rapport.strategy.pdf import render_pdf
from rapport.strategy.present import present

FORMATS = ("pdf", "html")
LOCALES = ("ru", "en")
DEFAULT_PERIOD = "last_90_days"  # a quarter: what a strategy is reviewed over
MEDIA_TYPES = {"pdf": "application/pdf", "html": "text/html; charset=utf-8"}


def check(fmt: Any, locale: Any, period: Any) -> tuple[str, str, str]:
    """The request's format, language and period preset, or InvalidInput naming each bad
    one with the values it may take."""
    problems = []
    if fmt not in FORMATS:
        problems.append(Problem("format", f"must be one of {', '.join(FORMATS)}, not {fmt!r}"))
    if locale not in LOCALES:
        problems.append(Problem("locale", f"must be one of {', '.join(LOCALES)}, not {locale!r}"))
    if period not in PRESETS:
        problems.append(Problem("period", f"must be one of {', '.join(PRESETS)}, not {period!r}"))
    if problems:
        raise InvalidInput(problems)
    return str(fmt), str(locale), str(period)


def export(
    conn: sa.Connection,
    fmt: str,
    period_name: str,
    now: datetime,
    locale: str,
    translate: Translate,
    *,
    shop: str | None = None,
) -> tuple[bytes, Period]:
    """The document as the bytes of a file, and the period it covers. ``translate`` is the
    language's catalog (``rapport.web.i18n.translations(locale).gettext``)."""
    fmt, locale, period_name = check(fmt, locale, period_name)
    period = preset(period_name, now.date())
    content = collect(
        conn, period, now, Language(locale, translate), shop=shop, period_name=period_name
    )
    document = present(content)
    if fmt == "pdf":
        return render_pdf(document), period
    return render_html(document).encode("utf-8"), period


def file_name(fmt: str, period: Period, locale: str) -> str:
    return f"crm-strategy-{period.first}-{period.last}-{locale}.{fmt}"
