"""How a bad rule is reported: the path of the bad node and the reason."""

from __future__ import annotations

from typing import Any

from rapport.errors import InvalidInput, Problem


class Bad(Exception):
    """Raised inside the parser; collected into one ``InvalidInput`` for the whole rule."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.problem = Problem(where=where, reason=reason)


def pydantic_problems(exc: Any, where: str) -> list[Problem]:
    """Pydantic's errors with their locations turned into rule paths (``a.b[2].c``)."""
    found = []
    for err in exc.errors():
        path = where
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        reason = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "unknown field"
        found.append(Problem(where=path, reason=reason))
    return found


def raise_problems(problems: list[Problem]) -> None:
    if problems:
        raise InvalidInput(problems)
