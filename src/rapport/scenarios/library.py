"""The playbook library: ready scenarios from the CRM playbook, installed by name.

Marketers want to start from journeys that are known to work (welcome chain, abandoned
cart, win-back, birthday, …) rather than from a blank canvas, and engineers want those
journeys reviewed like code; so the playbooks are files (``scenarios/library_files.py``
describes them) and this module is the one place that turns them into store rows.

Installing is idempotent by name. An item identical to the library's is left alone; one
that differs is updated (a new version) only if it is still what the library installed
last time — the digests of what was installed are kept in ``app_settings`` — so a
marketer's edit in the UI is never silently overwritten by a re-install (``force`` does
overwrite it). Segments are created when missing and never changed afterwards: their
thresholds are the business's to tune. Everything happens in the caller's transaction,
so a library with one bad file stores nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from rapport.errors import InvalidInput, Problem
from rapport.messaging.templates.store import create_template, get_template, update_template
from rapport.scenarios.library_files import (
    LIBRARY_DIR,
    PACKS,
    Brand,
    LibraryTemplate,
    Playbook,
    SegmentSpec,
    load_library,
    select,
)
from rapport.scenarios.model import (
    ApiTrigger,
    DateTrigger,
    EventTrigger,
    InactivityTrigger,
    Scenario,
    ScheduleTrigger,
    SegmentTrigger,
)
from rapport.scenarios.store import (
    StoredScenario,
    create_scenario,
    get_scenario,
    set_status,
    update_scenario,
)
from rapport.segments.config import read_setting, write_setting
from rapport.segments.definitions import create_segment
from rapport.store.tables import scenarios, segments, templates

__all__ = [
    "LIBRARY_DIR",
    "PACKS",
    "SETTING",
    "Brand",
    "Installed",
    "Playbook",
    "describe_trigger",
    "install",
    "load_library",
    "select",
]

SETTING = "scenario_library"  # app_settings key: the brand and the digests installed
CREATED, UPDATED, UNCHANGED, KEPT = "created", "updated", "unchanged", "kept"


@dataclass
class Installed:
    """What installing one playbook did, for the CLI's table."""

    key: str
    name: str
    trigger: str
    steps: int
    status: str
    result: str
    templates: Counter[str] = field(default_factory=Counter)
    segments: dict[str, str] = field(default_factory=dict)  # name → created | kept


# -- installing ---------------------------------------------------------------------------


def install(
    conn: sa.Connection,
    now: datetime,
    *,
    only: Iterable[str] = (),
    pack: str | None = None,
    activate: bool = False,
    brand: Brand | None = None,
    force: bool = False,
    directory: Path = LIBRARY_DIR,
) -> list[Installed]:
    """Install (or bring up to date) the chosen playbooks in the caller's transaction.

    New scenarios are drafts unless ``activate``; an existing one keeps its status (a
    paused playbook stays paused) unless ``activate`` asks for active. ``brand`` is
    remembered, so a later run without it fills the slots the same way and finds nothing
    changed.
    """
    state = dict(read_setting(conn, SETTING) or {})
    if brand is None:
        brand = Brand(**state["brand"]) if state.get("brand") else Brand()
    chosen = select(load_library(brand, directory), only, pack)
    digests: dict[str, str] = dict(state.get("installed") or {})
    report: list[Installed] = []
    new_segments: list[int] = []
    for playbook in chosen:
        made: dict[str, str] = {}
        counts: Counter[str] = Counter()
        at = playbook.key
        for spec in playbook.segments:
            with _located(f"{at}.segments.{spec.name}"):
                made[spec.name] = _ensure_segment(conn, spec, now, new_segments)
        for template in playbook.templates:
            with _located(f"{at}.templates.{template.name}"):
                counts[_install_template(conn, template, now, digests, force)] += 1
        with _located(at):  # the store's paths start with "scenario."
            result, stored = _install_scenario(
                conn, playbook.scenario, now, digests, force, activate
            )
        if activate and stored.status != "active":
            stored = set_status(conn, stored.id, "active", now)
        report.append(
            Installed(
                key=playbook.key,
                name=stored.name,
                trigger=describe_trigger(playbook.scenario),
                steps=len(playbook.scenario.order),
                status=stored.status,
                result=result,
                templates=counts,
                segments=made,
            )
        )
    if new_segments:
        _fill_membership(conn, new_segments, now)
    write_setting(conn, SETTING, {"brand": brand.as_json(), "installed": digests}, now)
    return report


@contextmanager
def _located(where: str) -> Iterator[None]:
    """Say which playbook and template a problem from the store's own checks is in."""
    try:
        yield
    except InvalidInput as exc:
        raise InvalidInput(
            [Problem(f"{where}.{p.where}" if p.where else where, p.reason) for p in exc.problems]
        ) from None


def digest(content: Any) -> str:
    """A stable fingerprint of a JSON document (key order does not matter)."""
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _id_by_name(conn: sa.Connection, table: sa.Table, name: str) -> int | None:
    found = conn.execute(sa.select(table.c.id).where(table.c.name == name)).scalar()
    return None if found is None else int(found)


def _ensure_segment(
    conn: sa.Connection, spec: SegmentSpec, now: datetime, created: list[int]
) -> str:
    if _id_by_name(conn, segments, spec.name) is not None:
        return KEPT
    created.append(create_segment(conn, spec.name, spec.description, spec.rules, now).id)
    return CREATED


def _fill_membership(conn: sa.Connection, segment_ids: list[int], now: datetime) -> None:
    """A new segment is filled at once and silently, as the segments API does: its current
    members did not just *enter* it, so no scenario should fire for them."""
    from rapport.segments.membership import SegmentIndex
    from rapport.segments.sweep import sweep

    sweep(conn, SegmentIndex().current(conn), now, segment_ids, backfill=True)


def _may_replace(key: str, current: str, digests: Mapping[str, str], force: bool) -> bool:
    """Only what the library itself installed last time (or ``force``) is replaced."""
    return force or digests.get(key) == current


def _install_template(
    conn: sa.Connection,
    template: LibraryTemplate,
    now: datetime,
    digests: dict[str, str],
    force: bool,
) -> str:
    key = f"template:{template.name}"
    wanted = digest(template.content())
    existing = _id_by_name(conn, templates, template.name)
    if existing is None:
        create_template(
            conn,
            name=template.name,
            channel=template.channel,
            kind=template.kind,
            variants=template.variants,
            now=now,
            default_locale=template.default_locale,
        )
        digests[key] = wanted
        return CREATED
    stored = get_template(conn, existing)
    current = digest(
        {
            "channel": stored.channel,
            "kind": stored.kind,
            "default_locale": stored.default_locale,
            "variants": stored.variants,
        }
    )
    if current == wanted:
        digests[key] = wanted
        return UNCHANGED
    if not _may_replace(key, current, digests, force):
        return KEPT
    if stored.channel != template.channel:
        raise InvalidInput(
            [
                Problem(
                    f"templates.{template.name}.channel",
                    f"the stored template sends by {stored.channel}; a channel cannot change "
                    "(rename or delete the stored one)",
                )
            ]
        )
    update_template(
        conn,
        stored.id,
        now,
        kind=template.kind,
        variants=template.variants,
        default_locale=template.default_locale,
    )
    digests[key] = wanted
    return UPDATED


def _install_scenario(
    conn: sa.Connection,
    scenario: Scenario,
    now: datetime,
    digests: dict[str, str],
    force: bool,
    activate: bool,
) -> tuple[str, StoredScenario]:
    key = f"scenario:{scenario.name}"
    doc = scenario.to_json()
    wanted = digest(doc)
    existing = _id_by_name(conn, scenarios, scenario.name)
    if existing is None:
        stored = create_scenario(conn, doc, now, status="active" if activate else "draft")
        digests[key] = wanted
        return CREATED, stored
    stored = get_scenario(conn, existing)
    current = digest(stored.definition)
    if current == wanted:
        digests[key] = wanted
        return UNCHANGED, stored
    if not _may_replace(key, current, digests, force):
        return KEPT, stored
    digests[key] = wanted
    return UPDATED, update_scenario(conn, stored.id, doc, now)


def describe_trigger(scenario: Scenario) -> str:
    """One line for tables and listings: what starts a run."""
    t = scenario.trigger
    if isinstance(t, EventTrigger):
        where = f" where {', '.join(_match(m) for m in t.where)}" if t.where else ""
        return f"event {t.event}{where}"
    if isinstance(t, SegmentTrigger):
        return f"segment {t.segment} ({t.on})"
    if isinstance(t, DateTrigger):
        shift = f" {t.offset_days:+d} d" if t.offset_days else ""
        return f"date {t.date}{shift} at {t.at_hour:02d}:00 local"
    if isinstance(t, InactivityTrigger):
        return f"no {t.inactive} for {t.days} d"
    if isinstance(t, ScheduleTrigger):
        return f"schedule {t.schedule} ({t.timezone}) over {t.segment}"
    if isinstance(t, ApiTrigger):
        return "api"
    return "?"


def _match(m: Any) -> str:
    if m.op == "exists":
        return f"{m.property} exists"
    value = f"[{', '.join(map(str, m.value))}]" if isinstance(m.value, list) else m.value
    return f"{m.property} {m.op} {value}"
