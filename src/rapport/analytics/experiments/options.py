"""What a report can be asked for, checked in one place so the API and the CLI agree.

Every problem is reported at once, named by the option (the API prefixes ``query.``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rapport.analytics.experiments.bootstrap import RESAMPLES, SEED
from rapport.analytics.experiments.sample_size import ALPHA, MDE, POWER
from rapport.errors import InvalidInput, Problem

METRICS = ("conversion", "revenue")
LOCALES = ("en", "ru")
WINDOW_DAYS = 5  # a conversion: an order within this many days of the assignment
MAX_WINDOW_DAYS = 365
WEEKS = 8
MAX_WEEKS = 52


@dataclass(frozen=True)
class Options:
    """``window_days`` None: the scenario goal's ``within_days``, else :data:`WINDOW_DAYS`.

    ``metric`` is the one the verdict is about (both are always reported); ``mde`` is the
    relative minimum detectable effect the planned sample size is computed for.
    """

    window_days: int | None = None
    metric: str = "conversion"
    mde: float = MDE
    power: float = POWER
    alpha: float = ALPHA
    weeks: int = WEEKS
    resamples: int = RESAMPLES
    seed: int = SEED
    locale: str = "en"


def _int(raw: Any, name: str, low: int, high: int, problems: list[Problem]) -> int | None:
    try:
        value = int(raw) if not isinstance(raw, bool | float) else None
    except (TypeError, ValueError):
        value = None
    if value is None or not low <= value <= high:
        problems.append(Problem(name, f"must be a whole number from {low} to {high}, not {raw!r}"))
        return None
    return value


def _float(
    raw: Any, name: str, low: float, high: float, problems: list[Problem], *, open_high: bool
) -> float | None:
    try:
        value = float(raw) if not isinstance(raw, bool) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    inside = low < value < high if open_high else low < value <= high
    if not math.isfinite(value) or not inside:
        bound = f"below {high}" if open_high else f"at most {high}"
        problems.append(Problem(name, f"must be above {low} and {bound}, not {raw!r}"))
        return None
    return value


def parse_options(raw: Mapping[str, Any]) -> Options:
    """Options from loose values (query strings, CLI flags); None means the default."""
    problems: list[Problem] = []
    known = set(Options.__dataclass_fields__)
    for key in raw:
        if key not in known:
            problems.append(Problem(key, f"unknown option (one of {', '.join(sorted(known))})"))
    values: dict[str, Any] = {}

    def given(name: str) -> Any:
        return raw.get(name)

    if given("window_days") is not None:
        values["window_days"] = _int(
            given("window_days"), "window_days", 1, MAX_WINDOW_DAYS, problems
        )
    if given("weeks") is not None:
        values["weeks"] = _int(given("weeks"), "weeks", 1, MAX_WEEKS, problems)
    if given("resamples") is not None:
        values["resamples"] = _int(given("resamples"), "resamples", 100, 100_000, problems)
    if given("seed") is not None:
        values["seed"] = _int(given("seed"), "seed", 0, 2**32 - 1, problems)
    if given("mde") is not None:
        values["mde"] = _float(given("mde"), "mde", 0, 10, problems, open_high=False)
    if given("power") is not None:
        power = _float(given("power"), "power", 0, 1, problems, open_high=True)
        if power is not None and power < 0.5:
            problems.append(Problem("power", f"must be at least 0.5, not {power}"))
        values["power"] = power
    if given("alpha") is not None:
        values["alpha"] = _float(given("alpha"), "alpha", 0, 0.5, problems, open_high=False)
    for name, choices in (("metric", METRICS), ("locale", LOCALES)):
        if given(name) is not None:
            if given(name) not in choices:
                problems.append(
                    Problem(name, f"must be one of {', '.join(choices)}, not {given(name)!r}")
                )
            values[name] = given(name)
    if problems:
        raise InvalidInput(problems)
    return Options(**values)


def prefixed(exc: InvalidInput, prefix: str) -> InvalidInput:
    """The same problems, located inside a request (``query.mde``, ``body.baseline``)."""
    return InvalidInput(
        [Problem(f"{prefix}.{p.where}" if p.where else prefix, p.reason) for p in exc.problems]
    )
