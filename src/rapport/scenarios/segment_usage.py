"""Who reads a segment: other segments' rules, scenarios (trigger, schedule audience, list
actions, branch rules) and campaigns.

The ones still able to act on it (segments, scenarios not archived, campaigns not sent or
cancelled) block its deletion, through the API and the UI alike; a scenario that lost its
segment would otherwise skip every step that names it. It lives with the scenarios, the
highest of the layers it reads (segments, messaging), so neither has to import upward.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from rapport.errors import InvalidInput
from rapport.messaging.campaigns import list_campaigns
from rapport.scenarios.model import ScheduleTrigger, SegmentTrigger
from rapport.scenarios.store import all_scenarios
from rapport.segments.definitions import Segment, all_segments
from rapport.segments.dependencies import dependencies
from rapport.segments.rules import parse_rule

LIVE_CAMPAIGNS = ("draft", "scheduled", "sending")
# How a user reads the segment (the web UI translates these words).
ITS_RULE, AUDIENCE, TRIGGER, ACTION, CONDITION = (
    "its rule",
    "audience",
    "trigger",
    "action",
    "condition",
)


@dataclass(frozen=True)
class Use:
    """Something that reads a segment: ``kind`` segment/scenario/campaign, and how."""

    kind: str
    id: int
    name: str
    how: str
    blocks: bool


def usage(conn: sa.Connection, found: list[Segment]) -> dict[int, list[Use]]:
    by_name = {s.name: s.id for s in found}
    known = set(by_name.values())

    def ref(value: int | str | None) -> int | None:
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return int(value) if int(value) in known else None
        return by_name.get(value) if value is not None else None

    uses: dict[int, list[Use]] = {}

    def add(target: int | None, use: Use) -> None:
        if target is not None and use not in uses.get(target, []):
            uses.setdefault(target, []).append(use)

    for seg in found:
        if seg.kind == "rules" and seg.rules:
            for sid in _reads(seg.rules):
                add(sid, Use("segment", seg.id, seg.name, ITS_RULE, True))
    for stored in all_scenarios(conn):
        try:
            scenario = stored.parsed()
        except InvalidInput:
            continue
        live = stored.status != "archived"
        trigger = scenario.trigger
        if isinstance(trigger, SegmentTrigger | ScheduleTrigger):
            how = AUDIENCE if isinstance(trigger, ScheduleTrigger) else TRIGGER
            add(ref(trigger.segment), Use("scenario", stored.id, stored.name, how, live))
        for step in scenario.definition.steps:
            if step.action is not None:
                for target in (step.action.add_to_list, step.action.remove_from_list):
                    add(ref(target), Use("scenario", stored.id, stored.name, ACTION, live))
        for rule in scenario.rules.values():
            for sid in dependencies(rule).segments:
                add(sid, Use("scenario", stored.id, stored.name, CONDITION, live))
    for campaign in list_campaigns(conn):
        live = campaign.status in LIVE_CAMPAIGNS
        add(
            ref(campaign.segment_id),
            Use("campaign", campaign.id, campaign.name, AUDIENCE, live),
        )
    return uses


def blocking(conn: sa.Connection, segment_id: int) -> list[Use]:
    """The users that still act on the segment: while there are any, it is not deleted."""
    uses = usage(conn, all_segments(conn)).get(segment_id, [])
    return [use for use in uses if use.blocks]


def _reads(rules: object) -> frozenset[int]:
    try:
        return dependencies(parse_rule(rules)).segments  # type: ignore[arg-type]
    except InvalidInput:
        return frozenset()
