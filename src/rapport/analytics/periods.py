"""The period a report covers, and how a user names one.

Every report takes the same ``from``/``to`` (ISO dates, both days included) or a preset
(``last_7_days``, ``last_30_days``, ``last_90_days``, ``last_365_days``, ``this_month``,
``last_month``, ``this_year``, ``all``), so the API, the CLI and the UI agree on what
"last month" means. Times are UTC: a day is a UTC day, as the daily roll-ups count them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from rapport.errors import InvalidInput, Problem

PRESETS = (
    "last_7_days",
    "last_30_days",
    "last_90_days",
    "last_365_days",
    "this_month",
    "last_month",
    "this_year",
    "all",
)
# "all" starts here: before any store could hold data, and safe on both dialects.
EPOCH = date(2000, 1, 1)


@dataclass(frozen=True)
class Period:
    """Days ``first`` to ``last``, both included."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        """The first instant inside the period (UTC)."""
        return datetime.combine(self.first, time.min, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The first instant after the period (UTC): compare with ``<``."""
        return datetime.combine(self.last + timedelta(days=1), time.min, tzinfo=UTC)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def previous(self) -> Period:
        """The period of the same length just before this one (for "vs previous")."""
        return Period(self.first - timedelta(days=self.days), self.first - timedelta(days=1))

    def as_json(self) -> dict[str, str]:
        return {"from": self.first.isoformat(), "to": self.last.isoformat()}


def preset(name: str, today: date) -> Period:
    """A named period ending today (``today`` comes from the clock, so tests can move it)."""
    if name.startswith("last_") and name.endswith("_days"):
        n = int(name[len("last_") : -len("_days")])
        return Period(today - timedelta(days=n - 1), today)
    if name == "this_month":
        return Period(today.replace(day=1), today)
    if name == "last_month":
        end = today.replace(day=1) - timedelta(days=1)
        return Period(end.replace(day=1), end)
    if name == "this_year":
        return Period(today.replace(month=1, day=1), today)
    if name == "all":
        return Period(EPOCH, today)
    raise InvalidInput([Problem("period", f"must be one of {', '.join(PRESETS)}")])


def parse_period(
    start: str | None,
    end: str | None,
    name: str | None,
    today: date,
    *,
    default: str = "last_30_days",
) -> Period:
    """``from``/``to`` (either may be left out) or a preset; every problem reported at once."""
    problems: list[Problem] = []
    if name is not None and name not in PRESETS:
        problems.append(Problem("period", f"must be one of {', '.join(PRESETS)}, not {name!r}"))
    if name is not None and (start or end):
        problems.append(Problem("period", "give a preset or from/to, not both"))
    first = _date(start, "from", problems)
    last = _date(end, "to", problems)
    if first and last and first > last:
        problems.append(Problem("from", f"{first} is after to={last}"))
    if problems:
        raise InvalidInput(problems)
    if name is not None:
        return preset(name, today)
    if first is None and last is None:
        return preset(default, today)
    last = last or today
    return Period(first or EPOCH, last)


def _date(value: str | None, where: str, problems: list[Problem]) -> date | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        problems.append(Problem(where, f"must be a date as YYYY-MM-DD, not {value!r}"))
        return None
