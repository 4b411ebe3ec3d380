"""Turning cells into values: CSV gives text, JSON Lines gives typed values; both are read.

Every helper raises ``ValueError`` with a reason a person can act on; the mapper turns it
into a row problem naming the column.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

_DECIMAL_COMMA = re.compile(r"^-?\d+,\d{1,2}$")
_NUMBER = re.compile(r"^-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?$")
_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


def number(value: Any) -> float:
    """A decimal comma (``12,50``) is accepted, since spreadsheets in many locales write it.

    ``1,234`` is refused rather than guessed: it is a thousand in one locale and
    one point two in another.
    """
    if isinstance(value, bool):
        raise ValueError("must be a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if _DECIMAL_COMMA.match(text):
            text = text.replace(",", ".")
        try:
            return float(text)
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a number")


def integer(value: Any) -> int:
    result = number(value)
    if not result.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    return int(result)


def flag(value: Any) -> Any:
    """Yes/no words become booleans; anything else is passed on for the caller to judge."""
    if isinstance(value, str) and value.strip().lower() in _TRUE:
        return True
    if isinstance(value, str) and value.strip().lower() in _FALSE:
        return False
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    return value


def loose(value: Any) -> Any:
    """A ``prop_*`` cell: numbers and true/false typed, everything else kept as text.

    Only plain numbers are converted (no leading zeros), so codes like ``00123`` stay text.
    """
    if not isinstance(value, str):
        return value
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if _NUMBER.match(value):
        as_float = float(value)
        return int(value) if re.fullmatch(r"-?\d+", value) else as_float
    return value


def json_value(value: Any, expected: type) -> Any:
    """A JSON column: already parsed in JSON Lines, a JSON text in a CSV cell."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"is not valid JSON ({exc})") from None
    if not isinstance(value, expected):
        kind = "an object" if expected is dict else "a list"
        raise ValueError(f"must be {kind} in JSON")
    return value


def text_list(value: Any) -> list[str]:
    """A list column: a JSON list, or text separated by ``|`` (commas appear in names)."""
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    if isinstance(value, str):
        if value.lstrip().startswith("["):
            return text_list(json_value(value, list))
        return [part.strip() for part in value.split("|") if part.strip()]
    raise ValueError("must be a list or text separated by |")


def text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("must be text")
    return str(value).strip()


def message_id(kind: str, message: dict[str, Any]) -> str:
    """The same row always gets the same id, so importing a file twice stores it once."""
    content = orjson.dumps(message, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return f"import:{kind}:{hashlib.sha256(content).hexdigest()[:40]}"
