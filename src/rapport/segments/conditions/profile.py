"""Conditions on the rest of the card: consent, other segments, RFM cell, lifecycle, bucket."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import sqlalchemy as sa
from pydantic import Field, field_validator
from sqlalchemy.sql.elements import ColumnElement

from rapport.ingest.traits import CONSENT_CHANNELS, CONSENT_STATUSES
from rapport.segments.bucket import bucket_of, bucket_sql
from rapport.segments.conditions.base import Condition
from rapport.segments.context import Context, Snapshot
from rapport.segments.dependencies import Collector
from rapport.segments.problems import Bad
from rapport.store.tables import consents, customers, segment_members


class ConsentCondition(Condition):
    """``{"consent": "email", "status": "subscribed"}``; no recorded decision matches none."""

    KEY = "consent"
    consent: str
    status: Literal["subscribed", "unsubscribed", "pending"] = "subscribed"

    def check(self, where: str) -> None:
        if self.consent not in CONSENT_CHANNELS:
            raise Bad(
                f"{where}.consent",
                f"unknown channel {self.consent!r}; use one of {', '.join(CONSENT_CHANNELS)}",
            )
        assert self.status in CONSENT_STATUSES

    def sql(self, ctx: Context) -> ColumnElement[bool]:
        return customers.c.id.in_(
            sa.select(consents.c.customer_id).where(
                consents.c.channel == self.consent, consents.c.status == self.status
            )
        )

    def test(self, snap: Snapshot, ctx: Context) -> bool:
        return snap.consents.get(self.consent) == self.status

    def collect(self, deps: Collector) -> None:
        deps.consent_channels.add(self.consent)


class SegmentCondition(Condition):
    """``{"segment": 12}``: a current member of segment 12 (its stored membership)."""

    KEY = "segment"
    segment: int = Field(gt=0)

    def sql(self, ctx: Context) -> ColumnElement[bool]:
        return customers.c.id.in_(
            sa.select(segment_members.c.customer_id).where(
                segment_members.c.segment_id == self.segment, segment_members.c.until.is_(None)
            )
        )

    def test(self, snap: Snapshot, ctx: Context) -> bool:
        return self.segment in snap.segments

    def collect(self, deps: Collector) -> None:
        deps.segments.add(self.segment)


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class _OneOf(Condition):
    """A column holding one of a fixed set of slugs; the rule lists the accepted ones."""

    COLUMN: ClassVar[str] = ""

    def _values(self) -> list[str]:
        return list(getattr(self, self.KEY))

    def _allowed(self) -> tuple[str, ...]:
        raise NotImplementedError

    def check(self, where: str) -> None:
        allowed = self._allowed()
        for i, v in enumerate(self._values()):
            if v not in allowed:
                raise Bad(
                    f"{where}.{self.KEY}[{i}]",
                    f"unknown value {v!r}; use one of {', '.join(allowed)}",
                )

    def sql(self, ctx: Context) -> ColumnElement[bool]:
        col = customers.c[self.COLUMN]
        return sa.and_(col.is_not(None), col.in_(self._values()))

    def test(self, snap: Snapshot, ctx: Context) -> bool:
        return snap.customer[self.COLUMN] in self._values()

    def collect(self, deps: Collector) -> None:
        deps.customer_fields.add(self.COLUMN)


class RfmCellCondition(_OneOf):
    """``{"rfm_cell": ["champions", "loyal"]}``: in any of the listed RFM cells."""

    KEY = "rfm_cell"
    COLUMN = "rfm_cell"
    rfm_cell: list[str] = Field(min_length=1)

    @field_validator("rfm_cell", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _listed(value)

    def _allowed(self) -> tuple[str, ...]:
        from rapport.segments.rfm import CELLS

        return tuple(CELLS)


class LifecycleCondition(_OneOf):
    """``{"lifecycle_stage": ["active", "reactivated"]}``: in any of the listed stages."""

    KEY = "lifecycle_stage"
    COLUMN = "lifecycle_stage"
    lifecycle_stage: list[str] = Field(min_length=1)

    @field_validator("lifecycle_stage", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _listed(value)

    def _allowed(self) -> tuple[str, ...]:
        from rapport.segments.lifecycle import STAGES

        return tuple(STAGES)


class BucketCondition(Condition):
    """``{"bucket": [0, 9], "salt": "spring-holdout"}``: 10% of customers, stably chosen."""

    KEY = "bucket"
    bucket: list[int] = Field(min_length=2, max_length=2)
    salt: str = Field(default="", max_length=200)

    def check(self, where: str) -> None:
        low, high = self.bucket
        if not (0 <= low <= high <= 99):
            raise Bad(f"{where}.bucket", "needs [low, high] with 0 <= low <= high <= 99")

    def sql(self, ctx: Context) -> ColumnElement[bool]:
        return bucket_sql(customers.c.id, self.salt).between(self.bucket[0], self.bucket[1])

    def test(self, snap: Snapshot, ctx: Context) -> bool:
        return self.bucket[0] <= bucket_of(int(snap.customer["id"]), self.salt) <= self.bucket[1]

    def collect(self, deps: Collector) -> None:
        pass
