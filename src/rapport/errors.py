"""One error type for bad input, carrying every problem with its location.

Shared by every domain (ingest, segments, messaging, ...): a rejected input names each
bad field and nothing is stored.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where (a dotted path, a row, a message index) and why."""

    where: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"where": self.where, "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}" if self.where else self.reason


class InvalidInput(ValueError):
    """Raised before anything is stored, so a rejected input leaves no trace."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems[:20]))
