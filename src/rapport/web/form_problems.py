"""A rejected form's problems, placed beside the fields they are about.

The domains name a problem's place as the API does: ``segment_id``,
``variants[1].template_id``, ``variants.ru.body:6:4`` (a template's locale, part, line and
column). A page shows each one under the field of that name, with the line and column
when there are any, and the whole list above the form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from rapport.errors import Problem

_POSITION = re.compile(r"^(?P<field>.+?):(?P<line>\d+):(?P<col>\d+)$")


def problems_by_field(problems: Iterable[Problem]) -> dict[str, list[dict[str, Any]]]:
    """``{field: [{"reason", "line", "col"}]}``; ``line`` and ``col`` are None for a field
    that has no lines."""
    placed: dict[str, list[dict[str, Any]]] = {}
    for p in problems:
        found = _POSITION.match(p.where)
        field, line, col = p.where, None, None
        if found:
            field, line, col = found["field"], int(found["line"]), int(found["col"])
        placed.setdefault(field, []).append({"reason": p.reason, "line": line, "col": col})
    return placed
