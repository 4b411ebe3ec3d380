"""Languages of the web UI: English (the source strings) and Russian (a Babel catalog).

The catalog is the ``.po`` file itself, read when the server starts: no compile step for
anyone who installs Rapport. A string is marked with ``_()`` in templates and ``N_()`` in
Python (for labels translated later, in the template); docs/web.md says how to extract
and translate new ones, and tests/test_web_i18n.py fails while any lacks a translation.

Each language has its own Jinja environment with its translations and its number and
date formats installed, so a request only picks the environment of its language.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal, format_percent
from babel.support import NullTranslations, Translations
from jinja2 import Environment, PackageLoader, select_autoescape

LANGUAGES = ("en", "ru")
DEFAULT_LANGUAGE = "en"
LANGUAGE_NAMES = {"en": "English", "ru": "Русский"}
CATALOGS = Path(__file__).parent / "locales"
DOMAIN = "messages"


def N_(text: str) -> str:
    """Marks a string for the catalog without translating it (it is translated where shown)."""
    return text


def catalog_path(language: str) -> Path:
    return CATALOGS / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(language: str) -> NullTranslations:
    """The language's translations, read from its ``.po`` (fuzzy entries left out)."""
    path = catalog_path(language)
    if language == DEFAULT_LANGUAGE or not path.exists():
        return NullTranslations()
    with path.open("rb") as fp:
        catalog = read_po(fp, locale=language, domain=DOMAIN)
    buffer = BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


def choose_language(cookie: str | None, accept_language: str | None) -> str:
    """The cookie the language switch set, else the browser's preference, else English."""
    if cookie in LANGUAGES:
        return str(cookie)
    wanted: list[tuple[float, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag:
            wanted.append((-quality + index * 1e-6, tag.strip().replace("_", "-")))
    for _, tag in sorted(wanted):
        try:
            language = Locale.parse(tag, sep="-").language
        except (ValueError, UnknownLocaleError):
            continue
        if language in LANGUAGES:
            return language
    return DEFAULT_LANGUAGE


# Formats shown in the UI. Times are UTC, as the store and the reports count them.
def _filters(language: str) -> dict[str, Any]:
    def number(value: Any, digits: int = 0) -> str:
        if value is None:
            return "—"
        pattern = "#,##0" + ("." + "0" * digits if digits else "")
        return format_decimal(value, format=pattern, locale=language)

    def percent(value: Any, digits: int = 1) -> str:
        if value is None:
            return "—"
        pattern = "#,##0" + ("." + "0" * digits if digits else "") + "%"
        return format_percent(value, format=pattern, locale=language)

    def when(value: Any) -> str:
        if not isinstance(value, datetime):
            return "—" if value is None else str(value)
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return format_datetime(moment, "yyyy-MM-dd HH:mm", tzinfo=UTC, locale=language)

    def day(value: Any) -> str:
        if isinstance(value, str):
            try:
                value = date.fromisoformat(value)
            except ValueError:
                return value
        if not isinstance(value, date):
            return "—" if value is None else str(value)
        return format_date(value, "medium", locale=language)

    return {
        "number": number,
        "percent": percent,
        "when": when,
        "day": day,
        "compact": compact,
        "pretty": pretty,
    }


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime | date) else str(value)


def compact(value: Any, limit: int = 200) -> str:
    """A JSON value on one line, cut at ``limit`` characters (a table cell's summary)."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict):
        text = ", ".join(
            f"{k}: {v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=_plain)}"
            for k, v in value.items()
        )
    else:
        text = json.dumps(value, ensure_ascii=False, default=_plain)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pretty(value: Any) -> str:
    """A JSON value indented, for a <pre> (escaped on output like any text)."""
    return json.dumps(value, ensure_ascii=False, indent=2, default=_plain, sort_keys=True)


ROLE_LABELS = {
    "admin": N_("Admin"),
    "marketer": N_("Marketer"),
    "analyst": N_("Analyst"),
    "viewer": N_("Viewer"),
}
# Where a problem is (rapport.errors.Problem.where), as a form shows it.
FIELD_LABELS = {
    "email": N_("Email"),
    "name": N_("Name"),
    "password": N_("Password"),
    "role": N_("Role"),
    "user": N_("User"),
    "kind": N_("Kind"),
}


@cache
def environment(language: str) -> Environment:
    """The Jinja environment of one language: every output escaped, its translations on."""
    env = Environment(
        loader=PackageLoader("rapport.web", "templates"),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.filters.update(_filters(language))
    # `tr` translates a string that comes from Python (a label, a problem's reason) and
    # returns plain text, escaped on output like any value; `_` is for template literals.
    env.globals["tr"] = translations(language).gettext
    env.filters["role"] = lambda role: translations(language).gettext(ROLE_LABELS.get(role) or role)
    env.globals["field_label"] = lambda where: FIELD_LABELS.get(where, where)
    env.globals["language"] = language
    env.globals["languages"] = LANGUAGES
    env.globals["language_names"] = LANGUAGE_NAMES
    return env


def gettext(language: str, message: str) -> str:
    """A translation outside templates (a header, a message built in Python)."""
    return translations(language).gettext(message)
