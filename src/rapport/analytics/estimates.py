"""A figure that may not exist yet: a value, or "insufficient data" with the reason.

A median of three repeat purchases, a churn rate over a handful of customers or a lifetime
computed from one lost customer is a number that looks precise and means nothing. Every
metric that needs a minimum of data answers with an ``Estimate`` instead of a bare float,
so the API, the CLI and the charts can show the reason and the counts behind it rather
than a misleading figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "insufficient_data"]


@dataclass(frozen=True)
class Estimate:
    """``value`` is set only when ``status`` is ``ok``; ``numbers`` are the counts behind it."""

    status: Status
    value: float | None = None
    reason: str | None = None
    numbers: dict[str, float | int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status, "value": self.value}
        if self.reason is not None:
            data["reason"] = self.reason
        if self.numbers:
            data["numbers"] = dict(self.numbers)
        return data

    def text(self, digits: int = 2, *, percent: bool = False) -> str:
        """For a terminal table: the value, or "n/a" (the reason is printed beside it)."""
        if self.value is None:
            return "n/a"
        if percent:
            return f"{self.value * 100:.1f}%"
        return f"{self.value:,.{digits}f}"


def known(value: float, **numbers: float | int) -> Estimate:
    return Estimate("ok", float(value), None, numbers)


def insufficient(reason: str, **numbers: float | int) -> Estimate:
    return Estimate("insufficient_data", None, reason, numbers)


def ratio(
    top: float,
    bottom: float,
    *,
    what: str,
    minimum: int = 1,
    **numbers: float | int,
) -> Estimate:
    """``top / bottom``, or insufficient data when ``bottom`` is below ``minimum``.

    ``what`` names the denominator in the reason ("orders", "active customers"), so the
    reader learns what was missing, not just that something was.
    """
    if bottom < minimum:
        needed = "any" if minimum == 1 else f"at least {minimum:,}"
        return insufficient(f"needs {needed} {what}; there were {bottom:,.0f}", **numbers)
    return known(top / bottom, **numbers)
