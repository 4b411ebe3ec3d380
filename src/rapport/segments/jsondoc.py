"""Reading one value out of a JSON document (traits, event properties), typed.

A JSON value is compared only with a rule value of the same JSON type: a trait holding the
string "5" does not equal the number 5, in SQL or in Python. Both stores answer the same
questions — which type is it, and what is its text or number — through different
functions, so every comparison is built on ``is_string``/``text``/``number``/… here.
Nested names (``a.b``) descend through objects only.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from rapport.segments.context import Context

MISSING = None

# "YYYY-MM-DD…": a JSON string used as a date is compared by its first ten characters.
DATE_LIKE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SQLITE_DATE_GLOB = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*"
_PG_DATE_REGEX = "^[0-9]{4}-[0-9]{2}-[0-9]{2}"

# Names a rule may use for a trait or a property: no quotes or backslashes (they would need
# escaping inside a JSON path), no empty parts.
NAME = re.compile(r'[^."\\]+(\.[^."\\]+)*')


def lookup(doc: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path``, or None when absent (JSON null reads as absent too)."""
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def py_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def py_number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def py_date_text(value: Any) -> str | None:
    if isinstance(value, str) and DATE_LIKE.match(value):
        return value[:10]
    return None


class JsonRef:
    """SQL for one path in a JSON column, on SQLite (JSON text) or PostgreSQL (JSONB)."""

    def __init__(self, doc: ColumnElement[Any], path: tuple[str, ...], ctx: Context) -> None:
        self.doc = doc
        self.path = path
        self.ctx = ctx
        if ctx.postgres:
            self._type = sa.func.jsonb_typeof(sa.func.jsonb_extract_path(doc, *path))
        else:
            self._jpath = "$" + "".join(f'."{key}"' for key in path)
            self._type = sa.func.json_type(doc, self._jpath)

    def _raw_text(self) -> ColumnElement[Any]:
        if self.ctx.postgres:
            return sa.func.jsonb_extract_path_text(self.doc, *self.path)
        return sa.func.json_extract(self.doc, self._jpath)

    def present(self) -> ColumnElement[bool]:
        return sa.and_(self._type.is_not(None), self._type != "null")

    def is_string(self) -> ColumnElement[bool]:
        return self._type == ("string" if self.ctx.postgres else "text")

    def is_number(self) -> ColumnElement[bool]:
        if self.ctx.postgres:
            return self._type == "number"
        return self._type.in_(("integer", "real"))

    def is_bool(self, value: bool) -> ColumnElement[bool]:
        if self.ctx.postgres:
            return sa.and_(
                self._type.is_not(None),
                self._type == "boolean",
                self._raw_text() == str(value).lower(),
            )
        return sa.and_(self._type.is_not(None), self._type == str(value).lower())

    def text(self) -> ColumnElement[Any]:
        """The string, or NULL when the value is not a string."""
        return sa.case((self.is_string(), self._raw_text()), else_=sa.null())

    def number(self) -> ColumnElement[Any]:
        if self.ctx.postgres:
            return sa.case((self.is_number(), sa.cast(self._raw_text(), sa.Float)), else_=sa.null())
        return sa.case((self.is_number(), self._raw_text()), else_=sa.null())

    def date_text(self) -> ColumnElement[Any]:
        """The leading ``YYYY-MM-DD`` of a date-like string, else NULL."""
        raw = self._raw_text()
        if self.ctx.postgres:
            like = raw.op("~")(_PG_DATE_REGEX)
        else:
            like = raw.op("GLOB")(_SQLITE_DATE_GLOB)
        return sa.case(
            (sa.and_(self.is_string(), like), sa.func.substr(raw, 1, 10)), else_=sa.null()
        )
