"""Scenarios in the store: every save is a new version; runs keep the version they began on.

Editing an active scenario does not disturb its runs in flight: a run reads the
definition of its own ``version`` from ``scenario_versions``; new runs start on the
current one. A step that no longer exists in a newer version is therefore never a
problem, because a run never switches versions.

References the model cannot check on its own (templates and segments named in steps and
triggers) are checked here against the store, with the same paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.errors import InvalidInput, Problem
from rapport.scenarios.model import Scenario, ScheduleTrigger, SegmentTrigger, parse_scenario
from rapport.store.tables import scenario_versions, scenarios, segments, templates

STATUSES = ("draft", "active", "paused", "archived")


class ScenarioNotFound(LookupError):
    pass


class ScenarioConflict(ValueError):
    pass


@dataclass(frozen=True)
class StoredScenario:
    id: int
    name: str
    status: str
    version: int
    definition: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    def parsed(self) -> Scenario:
        return parse_scenario(self.definition)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "version": self.version,
            "definition": self.definition,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _row(row: Any) -> StoredScenario:
    return StoredScenario(
        int(row.id),
        row.name,
        row.status,
        int(row.version),
        row.definition,
        row.created_at,
        row.updated_at,
    )


def check_references(conn: sa.Connection, scenario: Scenario, where: str = "scenario") -> None:
    """Templates, segments and lists named by the scenario exist (by id or by name)."""
    problems: list[Problem] = []
    template_names = _names(conn, templates)
    segment_names = _names(conn, segments)
    for i, step in enumerate(scenario.definition.steps):
        at = f"{where}.steps[{i}]"
        if step.send is not None:
            refs = [("send.template", step.send.template)]
            refs += [
                (f"send.fallback[{k}].template", f.template)
                for k, f in enumerate(step.send.fallback)
            ]
            for field, ref in refs:
                if _resolve(ref, template_names) is None:
                    problems.append(Problem(f"{at}.{field}", f"no template {ref!r}"))
        if step.action is not None:
            for field in ("add_to_list", "remove_from_list"):
                ref = getattr(step.action, field)
                if ref is not None and _resolve(ref, segment_names) is None:
                    problems.append(Problem(f"{at}.action.{field}", f"no list {ref!r}"))
    trigger = scenario.trigger
    if (
        isinstance(trigger, SegmentTrigger | ScheduleTrigger)
        and _resolve(trigger.segment, segment_names) is None
    ):
        problems.append(Problem(f"{where}.trigger.segment", f"no segment {trigger.segment!r}"))
    if problems:
        raise InvalidInput(problems)


def _names(conn: sa.Connection, table: sa.Table) -> dict[str, int]:
    return {str(name): int(id_) for id_, name in conn.execute(sa.select(table.c.id, table.c.name))}


def _resolve(ref: int | str, names: dict[str, int]) -> int | None:
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        return int(ref) if int(ref) in names.values() else None
    return names.get(ref)


def resolve_ref(ref: int | str, names: dict[str, int]) -> int | None:
    """The id ``ref`` names among ``names`` (name → id): an id, a digit string or a name."""
    return _resolve(ref, names)


def resolve_template(conn: sa.Connection, ref: int | str) -> int | None:
    return _resolve(ref, _names(conn, templates))


def resolve_segment(conn: sa.Connection, ref: int | str) -> int | None:
    return _resolve(ref, _names(conn, segments))


def _check_name(conn: sa.Connection, name: str, own_id: int | None) -> None:
    taken = conn.execute(sa.select(scenarios.c.id).where(scenarios.c.name == name)).scalar()
    if taken is not None and taken != own_id:
        raise ScenarioConflict(f"name: scenario {taken} already has the name {name!r}")


def create_scenario(
    conn: sa.Connection, definition: dict[str, Any] | str, now: datetime, status: str = "draft"
) -> StoredScenario:
    scenario = parse_scenario(definition)
    check_references(conn, scenario)
    _check_status(status)
    _check_name(conn, scenario.name, None)
    doc = scenario.to_json()
    sid = conn.execute(
        scenarios.insert()
        .values(
            name=scenario.name,
            status=status,
            version=1,
            definition=doc,
            created_at=now,
            updated_at=now,
        )
        .returning(scenarios.c.id)
    ).scalar_one()
    conn.execute(
        scenario_versions.insert().values(
            scenario_id=sid, version=1, definition=doc, created_at=now
        )
    )
    return get_scenario(conn, int(sid))


def update_scenario(
    conn: sa.Connection, scenario_id: int, definition: dict[str, Any] | str, now: datetime
) -> StoredScenario:
    """A new version; runs in flight stay on theirs."""
    current = get_scenario(conn, scenario_id)
    scenario = parse_scenario(definition)
    check_references(conn, scenario)
    _check_name(conn, scenario.name, scenario_id)
    doc = scenario.to_json()
    version = current.version + 1
    conn.execute(
        scenarios.update()
        .where(scenarios.c.id == scenario_id)
        .values(name=scenario.name, version=version, definition=doc, updated_at=now)
    )
    conn.execute(
        scenario_versions.insert().values(
            scenario_id=scenario_id, version=version, definition=doc, created_at=now
        )
    )
    return get_scenario(conn, scenario_id)


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise InvalidInput([Problem("status", f"one of {', '.join(STATUSES)}")])


def set_status(conn: sa.Connection, scenario_id: int, status: str, now: datetime) -> StoredScenario:
    """Activate, pause (runs stay where they are and resume on activation) or archive.

    Pausing needs a running scenario; activating re-checks references, because a
    template or segment may have gone since the scenario was saved. Setting the status it
    already has changes nothing.
    """
    _check_status(status)
    current = get_scenario(conn, scenario_id)
    if status == "paused" and current.status not in ("active", "paused"):
        raise ScenarioConflict(
            f"status: a {current.status} scenario is not running, there is nothing to pause"
        )
    if status == "active":
        check_references(conn, current.parsed())
    if current.status == status:
        return current
    conn.execute(
        scenarios.update()
        .where(scenarios.c.id == scenario_id)
        .values(status=status, updated_at=now)
    )
    return get_scenario(conn, scenario_id)


def get_scenario(conn: sa.Connection, scenario_id: int) -> StoredScenario:
    row = conn.execute(sa.select(scenarios).where(scenarios.c.id == scenario_id)).first()
    if row is None:
        raise ScenarioNotFound(f"scenario {scenario_id} does not exist")
    return _row(row)


def find_scenario(conn: sa.Connection, key: str) -> StoredScenario:
    """By id or by name (the CLI takes either)."""
    if key.isdigit():
        return get_scenario(conn, int(key))
    row = conn.execute(sa.select(scenarios).where(scenarios.c.name == key)).first()
    if row is None:
        raise ScenarioNotFound(f"no scenario named {key!r}")
    return _row(row)


def all_scenarios(
    conn: sa.Connection, statuses: Iterable[str] | None = None
) -> list[StoredScenario]:
    query = sa.select(scenarios).order_by(scenarios.c.id)
    if statuses is not None:
        query = query.where(scenarios.c.status.in_(list(statuses)))
    return [_row(r) for r in conn.execute(query)]


def version_definition(conn: sa.Connection, scenario_id: int, version: int) -> dict[str, Any]:
    found = conn.execute(
        sa.select(scenario_versions.c.definition).where(
            scenario_versions.c.scenario_id == scenario_id,
            scenario_versions.c.version == version,
        )
    ).scalar_one_or_none()
    if found is None:
        raise ScenarioNotFound(f"scenario {scenario_id} has no version {version}")
    return dict(found)
