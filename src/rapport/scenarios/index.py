"""Active scenarios parsed once and indexed by what starts, ends or wakes their runs.

The pipeline asks it, for every stored batch, which scenarios an event name concerns;
that must cost a dictionary lookup, not a query. It reloads when its ``ttl`` passes (other
processes' edits) or at once after ``invalidate`` (this process's API). Versions that
runs in flight still use are parsed on demand and kept.
"""

from __future__ import annotations

import operator
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from rapport.scenarios.model import (
    EventTrigger,
    PropertyMatch,
    Scenario,
    SegmentTrigger,
    parse_scenario,
)
from rapport.scenarios.store import all_scenarios, resolve_segment, version_definition


@dataclass
class Live:
    """An active scenario at its current version."""

    id: int
    version: int
    scenario: Scenario
    segment_id: int | None = None  # the resolved segment of a segment trigger


@dataclass
class ScenarioIndex:
    ttl: float = 2.0
    by_event: dict[str, list[Live]] = field(default_factory=dict)
    by_segment: dict[tuple[int, str], list[Live]] = field(default_factory=dict)
    # Event names that end or convert runs, or that waiting runs wait for.
    watched: set[str] = field(default_factory=set)
    active: dict[int, Live] = field(default_factory=dict)
    _versions: dict[tuple[int, int], Scenario] = field(default_factory=dict)
    _loaded: float = -1.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def invalidate(self) -> None:
        self._loaded = -1.0

    def current(self, conn: sa.Connection) -> ScenarioIndex:
        if time.monotonic() - self._loaded > self.ttl:
            with self._lock:
                self._load(conn)
        return self

    def _load(self, conn: sa.Connection) -> None:
        by_event: dict[str, list[Live]] = {}
        by_segment: dict[tuple[int, str], list[Live]] = {}
        watched: set[str] = set()
        active: dict[int, Live] = {}
        for stored in all_scenarios(conn, ["active"]):
            scenario = parse_scenario(stored.definition)
            live = Live(stored.id, stored.version, scenario)
            self._versions[(stored.id, stored.version)] = scenario
            trigger = scenario.trigger
            if isinstance(trigger, EventTrigger):
                by_event.setdefault(trigger.event, []).append(live)
            elif isinstance(trigger, SegmentTrigger):
                live.segment_id = resolve_segment(conn, trigger.segment)
                if live.segment_id is not None:
                    by_segment.setdefault((live.segment_id, trigger.on), []).append(live)
            active[stored.id] = live
        # Runs of paused or older versions still wait for their events: watch every name
        # any stored version waits for, exits on or converts on.
        for stored in all_scenarios(conn, ["active", "paused"]):
            definition = stored.definition
            watched.update(rule["event"] for rule in definition.get("exit_on", []))
            if definition.get("goal"):
                watched.add(definition["goal"]["event"])
            for step in definition.get("steps", []):
                wait = step.get("wait") or {}
                if wait.get("event"):
                    watched.add(wait["event"])
        self.by_event, self.by_segment, self.watched, self.active = (
            by_event,
            by_segment,
            watched,
            active,
        )
        self._loaded = time.monotonic()

    def version(self, conn: sa.Connection, scenario_id: int, version: int) -> Scenario:
        """The definition a run started on (parsed once per process)."""
        key = (scenario_id, version)
        found = self._versions.get(key)
        if found is None:
            found = self._versions[key] = parse_scenario(
                version_definition(conn, scenario_id, version)
            )
        return found


def lookup(properties: Mapping[str, Any], path: str) -> Any:
    """``a.b`` inside event properties; None when absent."""
    value: Any = properties
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def entity_of(scenario: Scenario, properties: Mapping[str, Any]) -> str:
    """The entity key value of an event for this scenario ("" when it has none)."""
    key = scenario.definition.entity_key
    if key is None:
        return ""
    value = lookup(properties, key)
    return "" if value is None else str(value)[:200]


_ORDER = {"gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le}


def matches(filters: list[PropertyMatch], properties: Mapping[str, Any]) -> bool:
    """Every filter holds for the event's properties."""
    for f in filters:
        value = lookup(properties, f.property)
        if f.op == "exists":
            ok = value is not None
        elif f.op == "eq":
            ok = value == f.value
        elif f.op == "ne":
            ok = value != f.value
        elif f.op == "in":
            ok = isinstance(f.value, list) and value in f.value
        else:
            try:
                ok = bool(_ORDER[f.op](value, f.value))
            except TypeError:
                ok = False
        if not ok:
            return False
    return True
