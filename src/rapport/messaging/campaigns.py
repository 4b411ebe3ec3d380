"""Campaigns: one message, on one channel, to the members of a segment or list.

This module holds the definition and its storage: a campaign is validated whole (every
problem named by its field, ``variants[1].template_id``) before anything is stored, and
only a draft or scheduled campaign can change. Starting, the frozen audience and the
variant draw are in ``campaign_start``; sending in ``campaign_send``; figures in
``campaign_report``. Status::

    draft ──start──► scheduled ──due──► sending ──► sent
      │                  │                 │          │ (messages still waiting)
      └────────cancel────┴─────────────────┴──────────┴──► cancelled

``sent`` means every message is in the outbox; some may still wait for their local hour,
the end of quiet hours or the throttle, and cancelling skips those.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rapport.clock import utc
from rapport.errors import InvalidInput, Problem
from rapport.messaging.policy import DEFAULT_RANK, Priority, field_path
from rapport.store.tables import campaigns, segments, templates

STATUSES = ("draft", "scheduled", "sending", "sent", "cancelled")
EDITABLE = ("draft", "scheduled")
CONTROL = "control"
# Campaigns reach customers; the webhook channel has no customer address.
CAMPAIGN_CHANNELS = ("email", "sms", "push", "webpush", "telegram")
SLOTS = 10_000  # hash resolution: weights and control_percent to 0.01 %


class CampaignNotFound(LookupError):
    pass


class CampaignConflict(ValueError):
    """The campaign's state does not allow this (changing a sent one), or a name is taken."""


# -- the definition ------------------------------------------------------------------


class VariantSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    template_id: int
    weight: float = Field(1.0, gt=0)

    @field_validator("name")
    @classmethod
    def _not_control(cls, value: str) -> str:
        if value.strip() != value or not value:
            raise ValueError("must not start or end with spaces")
        if value == CONTROL:
            raise ValueError("'control' is reserved for the holdout group")
        return value


class FallbackSpec(BaseModel):
    """The next channel to try, with its own template (each channel needs its own content)."""

    model_config = ConfigDict(extra="forbid")

    channel: str
    template_id: int


class CampaignSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    channel: str
    segment_id: int
    variants: list[VariantSpec] = Field(min_length=1, max_length=26)
    control_percent: float = Field(0.0, ge=0, le=50)
    fallback: list[FallbackSpec] = Field(default_factory=list, max_length=4)
    send_at: datetime | None = None
    local_hour: int | None = Field(None, ge=0, le=23)
    throttle_per_minute: int | None = Field(None, ge=1, le=1_000_000)
    priority: Priority = "marketing"
    # Who wins when frequency caps collide, the scale of a scenario's ``priority``.
    cap_priority: int = Field(DEFAULT_RANK, ge=0, le=100)

    @field_validator("send_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else utc(value)


EDITABLE_FIELDS = tuple(CampaignSpec.model_fields)


@dataclass(frozen=True)
class Campaign:
    id: int
    name: str
    status: str
    channel: str
    segment_id: int
    variants: list[dict[str, Any]]
    control_percent: float
    fallback: list[dict[str, Any]]
    send_at: datetime | None
    local_hour: int | None
    throttle_per_minute: int | None
    priority: str
    cap_priority: int
    options: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        doc = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "options"}
        doc["error"] = self.options.get("error")  # why a scheduled campaign could not start
        return doc

    def spec(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in EDITABLE_FIELDS}


def _from_row(row: Any) -> Campaign:
    options = dict(row.options or {})
    return Campaign(
        id=int(row.id),
        name=row.name,
        status=row.status,
        channel=row.channel,
        segment_id=int(row.segment_id),
        variants=list(row.variants),
        control_percent=float(row.control_percent),
        fallback=list(row.fallback),
        send_at=row.send_at,
        local_hour=row.local_hour,
        throttle_per_minute=row.throttle_per_minute,
        priority=str(options.get("priority", "marketing")),
        cap_priority=int(options.get("cap_priority", DEFAULT_RANK)),
        options=options,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def parse_spec(doc: Mapping[str, Any]) -> CampaignSpec:
    try:
        return CampaignSpec.model_validate(dict(doc))
    except ValidationError as exc:
        raise InvalidInput(
            [
                Problem(field_path(e["loc"]) or "campaign", e["msg"].removeprefix("Value error, "))
                for e in exc.errors()
            ]
        ) from None


def check_spec(conn: sa.Connection, spec: CampaignSpec) -> None:
    """What only the store can tell: the segment and templates exist and fit the channel."""
    problems: list[Problem] = []
    if spec.channel not in CAMPAIGN_CHANNELS:
        problems.append(Problem("channel", f"must be one of {', '.join(CAMPAIGN_CHANNELS)}"))
    found = conn.execute(sa.select(segments.c.id).where(segments.c.id == spec.segment_id)).first()
    if found is None:
        problems.append(Problem("segment_id", f"segment {spec.segment_id} does not exist"))
    wanted = {v.template_id for v in spec.variants} | {f.template_id for f in spec.fallback}
    channel_of = dict(
        conn.execute(
            sa.select(templates.c.id, templates.c.channel).where(templates.c.id.in_(wanted))
        ).all()
    )
    seen: set[str] = set()
    for i, v in enumerate(spec.variants):
        if v.name in seen:
            problems.append(Problem(f"variants[{i}].name", f"{v.name!r} is used twice"))
        seen.add(v.name)
        problems += _template_problems(f"variants[{i}]", v.template_id, spec.channel, channel_of)
    used = {spec.channel}
    for i, f in enumerate(spec.fallback):
        if f.channel not in CAMPAIGN_CHANNELS:
            problems.append(
                Problem(f"fallback[{i}].channel", f"must be one of {', '.join(CAMPAIGN_CHANNELS)}")
            )
            continue
        if f.channel in used:
            problems.append(
                Problem(f"fallback[{i}].channel", f"{f.channel} is already in the chain")
            )
        used.add(f.channel)
        problems += _template_problems(f"fallback[{i}]", f.template_id, f.channel, channel_of)
    if problems:
        raise InvalidInput(problems)


def _template_problems(
    where: str, template_id: int, channel: str, channel_of: Mapping[int, str]
) -> list[Problem]:
    if template_id not in channel_of:
        return [Problem(f"{where}.template_id", f"template {template_id} does not exist")]
    if channel_of[template_id] != channel:
        return [
            Problem(
                f"{where}.template_id",
                f"template {template_id} is for {channel_of[template_id]}, not {channel}",
            )
        ]
    return []


def _check_name(conn: sa.Connection, name: str, own_id: int | None) -> None:
    taken = conn.execute(sa.select(campaigns.c.id).where(campaigns.c.name == name)).scalar()
    if taken is not None and taken != own_id:
        raise CampaignConflict(f"name: campaign {taken} already has the name {name!r}")


def _values(spec: CampaignSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": spec.name,
        "channel": spec.channel,
        "segment_id": spec.segment_id,
        "variants": [v.model_dump() for v in spec.variants],
        "control_percent": spec.control_percent,
        "fallback": [f.model_dump() for f in spec.fallback],
        "send_at": spec.send_at,
        "local_hour": spec.local_hour,
        "throttle_per_minute": spec.throttle_per_minute,
        # No columns for the priorities: they ride in ``options`` (no migration needed).
        "options": {**options, "priority": spec.priority, "cap_priority": spec.cap_priority},
    }


# -- store ---------------------------------------------------------------------------


def create_campaign(conn: sa.Connection, doc: Mapping[str, Any], now: datetime) -> Campaign:
    """Validate the whole definition, then store it as a draft; InvalidInput stores nothing."""
    spec = parse_spec(doc)
    check_spec(conn, spec)
    _check_name(conn, spec.name, None)
    row = conn.execute(
        campaigns.insert()
        .values(status="draft", created_at=now, updated_at=now, **_values(spec, {}))
        .returning(*campaigns.c)
    ).one()
    return _from_row(row)


def get_campaign(conn: sa.Connection, campaign_id: int, *, lock: bool = False) -> Campaign:
    query = sa.select(campaigns).where(campaigns.c.id == campaign_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise CampaignNotFound(f"campaign {campaign_id} does not exist")
    return _from_row(row)


def find_campaign(conn: sa.Connection, key: str) -> Campaign:
    """By id or by name (the CLI takes either)."""
    if key.isdigit():
        return get_campaign(conn, int(key))
    found = conn.execute(sa.select(campaigns.c.id).where(campaigns.c.name == key)).scalar()
    if found is None:
        raise CampaignNotFound(f"no campaign named {key!r}")
    return get_campaign(conn, int(found))


def list_campaigns(conn: sa.Connection, status: str | None = None) -> list[Campaign]:
    query = sa.select(campaigns).order_by(campaigns.c.id.desc())
    if status is not None:
        query = query.where(campaigns.c.status == status)
    return [_from_row(r) for r in conn.execute(query)]


def update_campaign(
    conn: sa.Connection, campaign_id: int, changes: Mapping[str, Any], now: datetime
) -> Campaign:
    """Change fields of a draft or scheduled campaign; the result is validated whole."""
    current = get_campaign(conn, campaign_id, lock=True)
    if current.status not in EDITABLE:
        raise CampaignConflict(
            f"campaign {campaign_id} is {current.status}; only a draft or scheduled one changes"
        )
    spec = parse_spec({**current.spec(), **changes})
    check_spec(conn, spec)
    _check_name(conn, spec.name, campaign_id)
    row = conn.execute(
        campaigns.update()
        .where(campaigns.c.id == campaign_id)
        .values(updated_at=now, **_values(spec, current.options))
        .returning(*campaigns.c)
    ).one()
    return _from_row(row)


def set_options(conn: sa.Connection, campaign: Campaign, **changes: Any) -> None:
    """Merge keys into ``options`` (the caller holds the row lock)."""
    options = {**campaign.options, **changes}
    conn.execute(campaigns.update().where(campaigns.c.id == campaign.id).values(options=options))
