"""What an evaluation needs besides the rule: the moment, the dialect, the loaded data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from rapport.segments.dates import as_utc


@dataclass(frozen=True, slots=True)
class Context:
    """``dialect`` is empty for the in-memory evaluator."""

    now: datetime
    dialect: str = ""

    @staticmethod
    def at(now: datetime, dialect: str = "") -> Context:
        return Context(as_utc(now), dialect)

    @property
    def postgres(self) -> bool:
        return self.dialect == "postgresql"


@dataclass(slots=True)
class Snapshot:
    """Everything a rule reads about one customer, loaded in bulk by ``load_snapshots``.

    ``counters`` holds the per-day counts of the events read without property filters;
    ``events`` the (time, properties) of the events read with filters; both only for the
    event names the rule reads. ``loyalty`` and ``lots`` only for loyalty conditions.
    """

    customer: Mapping[str, Any]
    counters: dict[str, dict[date, int]] = field(default_factory=dict)
    events: dict[str, list[tuple[datetime, Any]]] = field(default_factory=dict)
    consents: dict[str, str] = field(default_factory=dict)
    segments: frozenset[int] = frozenset()
    # The loyalty account (balance, pending, tier; None: never had points) and the active
    # lots still to expire as (expires_at, points), when the rule reads them.
    loyalty: Mapping[str, Any] | None = None
    lots: list[tuple[datetime, int]] = field(default_factory=list)
