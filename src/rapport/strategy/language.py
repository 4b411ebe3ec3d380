"""One language of the document: its translate function and its number and date formats.

The texts are translated by the caller's ``translate`` (the web UI's catalog: the same
words the marketer reads on the pages); numbers and dates follow CLDR through Babel, so
"1 234,50" and "1,234.50" each read right. The journey maps take the same formats.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal, format_percent

from rapport.scenarios.diagram import Formats

Translate = Callable[[str], str]
MISSING = "—"


def _same(text: str) -> str:
    return text


@dataclass(frozen=True)
class Language:
    code: str = "en"
    translate: Translate = field(default=_same)

    def t(self, text: str, **values: Any) -> str:
        """``text`` translated, with its ``%(name)s`` placeholders filled."""
        translated = self.translate(text)
        return translated % values if values else translated

    def number(self, value: Any, digits: int = 0) -> str:
        if value is None:
            return MISSING
        pattern = "#,##0" + ("." + "0" * digits if digits else "")
        return str(format_decimal(value, format=pattern, locale=self.code))

    def percent(self, value: Any, digits: int = 1) -> str:
        if value is None:
            return MISSING
        pattern = "#,##0" + ("." + "0" * digits if digits else "") + "%"
        return str(format_percent(value, format=pattern, locale=self.code))

    def day(self, value: date) -> str:
        return str(format_date(value, "long", locale=self.code))

    def moment(self, value: datetime) -> str:
        """A time as UTC, as the store and the reports count them."""
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return str(format_datetime(aware, "d MMMM y, HH:mm 'UTC'", tzinfo=UTC, locale=self.code))

    def formats(self) -> Formats:
        """The journey map's number formats in this language."""
        return Formats(
            number=lambda v: self.number(v), percent=lambda v: self.percent(v), missing=MISSING
        )
