"""The programme's settings: how points are earned, spent, kept and lost, and the tiers.

One JSON document in ``app_settings`` under ``loyalty.programme``, validated by the
models below on every write (so a stored programme is always a valid one) and versioned:
each change bumps ``version`` and writes an audit entry with what changed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rapport.access.audit import Actor, record
from rapport.errors import InvalidInput, Problem
from rapport.segments.config import read_setting, write_setting

SETTING_KEY = "loyalty.programme"


class Tier(BaseModel):
    """A level reached by spend (or orders) in the rolling window, with its benefits."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    threshold: float = Field(
        gt=0, allow_inf_nan=False, description="spend (money) or orders in the window"
    )
    accrual_percent: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="percent of the order returned as points; None: base",
    )
    discount_percent: float = Field(
        default=0, ge=0, le=100, description="a discount on every order"
    )


class Bonuses(BaseModel):
    """Fixed points for actions; 0 turns a bonus off."""

    model_config = ConfigDict(extra="forbid")

    registration: int = Field(default=0, ge=0, description="on the customer's `Signed Up` event")
    birthday: int = Field(default=0, ge=0, description="once a year, on the birthday")
    review: int = Field(default=0, ge=0, description="per product reviewed (`Product Reviewed`)")
    comeback: int = Field(default=0, ge=0, description="an order after a long pause")
    comeback_after_days: int = Field(
        default=90, ge=1, description="the pause that makes a comeback"
    )


class Programme(BaseModel):
    """The whole programme. Defaults describe a programme that is switched off."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    starts_at: datetime | None = Field(
        default=None, description="orders placed before earn nothing"
    )
    point_value: float = Field(
        default=1.0, gt=0, allow_inf_nan=False, description="money one point pays for"
    )
    accrual_percent: float = Field(default=0, ge=0, le=100, description="base rate, without a tier")
    category_multipliers: dict[str, float] = Field(default_factory=dict)
    min_order_amount: float = Field(
        default=0, ge=0, allow_inf_nan=False, description="smaller orders earn nothing"
    )
    rounding: Literal["down", "nearest", "up"] = "down"
    max_redeem_percent: float = Field(
        default=50,
        ge=0,
        le=100,
        description="share of an order (after discounts) payable with points",
    )
    pending_days: int = Field(
        default=14, ge=0, description="the return period: points wait this long"
    )
    expiry_days: int | None = Field(default=365, ge=1, description="points expire this long after")
    tier_basis: Literal["spend", "orders"] = "spend"
    tier_window_days: int = Field(default=365, ge=1)
    tiers: list[Tier] = Field(default_factory=list)
    bonuses: Bonuses = Field(default_factory=lambda: Bonuses.model_validate({}))

    @field_validator("starts_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        """A time without an offset is UTC, as everywhere in Rapport."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @field_validator("category_multipliers")
    @classmethod
    def _multipliers(cls, value: dict[str, float]) -> dict[str, float]:
        for category, factor in value.items():
            if not math.isfinite(factor) or factor < 0:
                raise ValueError(f"{category!r}: a multiplier must be a number ≥ 0")
        return value

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, value: list[Tier]) -> list[Tier]:
        names = [t.name for t in value]
        for i, tier in enumerate(value):
            if names.index(tier.name) != i:
                raise ValueError(f"[{i}].name: {tier.name!r} is used twice")
            if i and tier.threshold <= value[i - 1].threshold:
                raise ValueError(
                    f"[{i}].threshold: tiers go from the lowest up; {tier.threshold:g} is not "
                    f"above {value[i - 1].name!r}'s {value[i - 1].threshold:g}"
                )
        return value

    def tier(self, name: str | None) -> Tier | None:
        return next((t for t in self.tiers if t.name == name), None)

    def rate_for(self, tier_name: str | None) -> float:
        """The accrual percent for a customer of this tier (the base rate without one)."""
        tier = self.tier(tier_name)
        if tier is not None and tier.accrual_percent is not None:
            return tier.accrual_percent
        return self.accrual_percent

    def round_points(self, raw: float) -> int:
        raw = round(raw, 6)  # 4.999999 from float arithmetic is 5
        if self.rounding == "up":
            return math.ceil(raw)
        if self.rounding == "nearest":
            return math.floor(raw + 0.5)
        return math.floor(raw)


@dataclass(frozen=True)
class Stored:
    programme: Programme
    version: int
    updated_at: datetime | None


def parse(raw: Any) -> Programme:
    """A programme from JSON-like data; InvalidInput naming each bad field."""
    try:
        return Programme.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(problems_of(exc)) from None


def problems_of(exc: ValidationError) -> list[Problem]:
    problems = []
    for error in exc.errors():
        where = ""
        for part in error["loc"]:
            where += f"[{part}]" if isinstance(part, int) else ("." if where else "") + str(part)
        problems.append(Problem(where, error["msg"].removeprefix("Value error, ")))
    return problems


def load(conn: sa.Connection) -> Programme:
    return load_stored(conn).programme


def load_stored(conn: sa.Connection) -> Stored:
    """The stored programme (the defaults, switched off, when none was ever set)."""
    from rapport.store.tables import app_settings

    row = conn.execute(
        sa.select(app_settings.c.value, app_settings.c.updated_at).where(
            app_settings.c.key == SETTING_KEY
        )
    ).first()
    if row is None or not isinstance(row.value, dict):
        return Stored(Programme.model_validate({}), 0, None)
    return Stored(
        Programme.model_validate(row.value.get("programme") or {}),
        int(row.value.get("version") or 0),
        row.updated_at,
    )


def save(conn: sa.Connection, programme: Programme, actor: Actor, now: datetime) -> Stored:
    """Store a new version and audit what changed (in the caller's transaction)."""
    before = read_setting(conn, SETTING_KEY) or {}
    old = before.get("programme") or Programme.model_validate({}).model_dump(mode="json")
    new = programme.model_dump(mode="json")
    version = int(before.get("version") or 0) + 1
    write_setting(conn, SETTING_KEY, {"version": version, "programme": new}, now)
    changes = {k: [old.get(k), v] for k, v in new.items() if old.get(k) != v}
    record(
        conn,
        actor,
        "loyalty.programme.update",
        "loyalty_programme",
        version,
        now,
        {"version": version, "changes": changes},
    )
    return Stored(programme, version, now)
