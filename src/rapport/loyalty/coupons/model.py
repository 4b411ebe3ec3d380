"""A coupon series (a campaign of codes): its settings, checked before anything is stored.

Field checks live on the model (Pydantic names the bad field); the checks that compare
fields (a shared series needs its code, a window must end after it starts) are in
:func:`cross_problems`, so each problem still names the field to fix rather than the
whole object. :func:`parse_settings` runs both and raises ``InvalidInput``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from rapport.errors import InvalidInput, Problem
from rapport.segments.problems import pydantic_problems

MAX_CODE_LENGTH = 64
_BARE_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _moment(value: Any, *, end_of_day: bool) -> Any:
    """A bare date is a whole day: ``valid_from`` starts it, ``valid_until`` includes it.

    Naive times are UTC, as everywhere in Rapport.
    """
    if isinstance(value, date) and not isinstance(value, datetime):
        start = datetime(value.year, value.month, value.day, tzinfo=UTC)
        return start + timedelta(days=1) if end_of_day else start
    if isinstance(value, str) and _BARE_DATE.match(value.strip()):
        return _moment(date.fromisoformat(value.strip()), end_of_day=end_of_day)
    return value


class SeriesSettings(BaseModel):
    """What a series gives, to whom, how often, when and on which lines."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,99}$",
        description="the series' id: lower-case letters, digits, '-' and '_' (scenarios "
        "name it in `issue_coupon`)",
    )
    title: str = Field("", max_length=200, description="what people see: 'Welcome 10%'")
    kind: Literal["percent", "amount"] = Field(
        description="percent off the eligible lines, or a fixed amount off them"
    )
    value: float = Field(gt=0, allow_inf_nan=False, description="the percent or the amount")
    max_discount: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="a cap on a percent discount, in money"
    )
    codes: Literal["unique", "shared"] = Field(
        "unique",
        description="unique: one generated code per customer or per print; "
        "shared: one promo code everybody types",
    )
    shared_code: str | None = Field(
        None, pattern=r"^[A-Z0-9][A-Z0-9_-]{2,63}$", description="the promo code (shared only)"
    )
    prefix: str = Field(
        "", pattern=r"^([A-Z0-9][A-Z0-9_-]{0,15})?$", description="before generated codes"
    )
    length: int = Field(8, ge=6, le=32, description="random characters in a generated code")
    max_uses: int | None = Field(
        None,
        ge=1,
        description="uses of one code in total (for a shared code: of the series); "
        "null: no limit; left out: 1 for unique codes, no limit for a shared one",
    )
    max_uses_per_customer: int | None = Field(
        None,
        ge=1,
        description="uses of the series by one customer; null: no limit; left out: "
        "1 for a shared code, no limit for unique ones (each is single-use already)",
    )
    valid_from: datetime | None = None
    valid_until: datetime | None = Field(None, description="exclusive; a bare date is included")
    valid_days: int | None = Field(
        None, ge=1, le=3650, description="a code ends this many days after it is issued"
    )
    min_subtotal: float = Field(
        0, ge=0, allow_inf_nan=False, description="the order's subtotal must reach this"
    )
    include_categories: list[str] = Field(
        default_factory=list, description="only lines in these categories (and their children)"
    )
    exclude_categories: list[str] = Field(
        default_factory=list, description="never lines in these categories (and their children)"
    )
    return_on_cancel: bool = Field(
        True, description="a cancelled order gives its use of the code back"
    )

    _shared_upper = field_validator("shared_code", "prefix", mode="before")(_upper)

    @model_validator(mode="before")
    @classmethod
    def _default_limits(cls, data: Any) -> Any:
        """Limits left out follow the mode: a unique code is single-use, a shared code
        once per customer. So a customer who gets a fresh code every win-back round can
        use each one, and a shared code is not used up by its first customer."""
        if not isinstance(data, dict):
            return data
        shared = data.get("codes") == "shared"
        data = dict(data)
        data.setdefault("max_uses", None if shared else 1)
        data.setdefault("max_uses_per_customer", 1 if shared else None)
        return data

    @field_validator("valid_from", mode="before")
    @classmethod
    def _start(cls, value: Any) -> Any:
        return _moment(value, end_of_day=False)

    @field_validator("valid_until", mode="before")
    @classmethod
    def _end(cls, value: Any) -> Any:
        return _moment(value, end_of_day=True)

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @field_validator("include_categories", "exclude_categories")
    @classmethod
    def _category_ids(cls, value: list[str]) -> list[str]:
        cleaned = [v.strip() for v in value]
        for i, v in enumerate(cleaned):
            if not v:
                raise ValueError(f"[{i}] is empty: give a category id")
        return list(dict.fromkeys(cleaned))

    def stored(self) -> dict[str, Any]:
        """The settings as kept in ``coupon_series.settings`` (the name has its column)."""
        return self.model_dump(mode="json", exclude={"name"})

    @property
    def label(self) -> str:
        return self.title or self.name

    def describe(self) -> str:
        """The offer in a few words: '10% off (at most 500.00)', '300.00 off'."""
        if self.kind == "percent":
            cap = f" (at most {self.max_discount:.2f})" if self.max_discount else ""
            return f"{self.value:g}% off{cap}"
        return f"{self.value:.2f} off"


def cross_problems(settings: SeriesSettings, where: str) -> list[Problem]:
    """What is wrong between fields, each problem at the field to change."""
    at = (where + ".") if where else ""
    found: list[Problem] = []
    if settings.kind == "percent" and settings.value > 100:
        found.append(Problem(f"{at}value", "a percent discount is at most 100"))
    if settings.kind == "amount" and settings.max_discount is not None:
        found.append(Problem(f"{at}max_discount", "only a percent discount takes a cap"))
    if settings.codes == "shared" and settings.shared_code is None:
        found.append(Problem(f"{at}shared_code", "a shared series needs its promo code"))
    if settings.codes == "unique" and settings.shared_code is not None:
        found.append(
            Problem(f"{at}shared_code", "only a shared series has one code (set codes: shared)")
        )
    if settings.codes == "shared" and settings.valid_days is not None:
        found.append(Problem(f"{at}valid_days", "a shared code is never issued: use valid_until"))
    if len(settings.prefix) + settings.length > MAX_CODE_LENGTH:
        found.append(Problem(f"{at}length", f"prefix and length together exceed {MAX_CODE_LENGTH}"))
    if (
        settings.valid_from is not None
        and settings.valid_until is not None
        and settings.valid_until <= settings.valid_from
    ):
        found.append(Problem(f"{at}valid_until", "must be after valid_from"))
    both = set(settings.include_categories) & set(settings.exclude_categories)
    if both:
        found.append(
            Problem(
                f"{at}exclude_categories",
                f"{', '.join(sorted(both))} cannot be both included and excluded",
            )
        )
    return found


def parse_settings(data: Any, where: str = "series") -> SeriesSettings:
    """Checked settings, or ``InvalidInput`` naming every bad field (``series.value``)."""
    if not isinstance(data, dict):
        raise InvalidInput([Problem(where, "a series is an object of settings")])
    try:
        settings = SeriesSettings.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(pydantic_problems(exc, where)) from None
    problems = cross_problems(settings, where)
    if problems:
        raise InvalidInput(problems)
    return settings


def settings_from_store(name: str, stored: dict[str, Any]) -> SeriesSettings:
    return SeriesSettings.model_validate({**stored, "name": name})
