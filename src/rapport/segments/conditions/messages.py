"""Message outcomes, read from the delivery events the messaging side records.

The contract (docs/segments.md): each outcome is an event named as in ``EVENTS`` with the
string properties ``campaign_id``, ``scenario_id``, ``template_id`` and ``channel``. A
message condition is an event condition over those names, so it gets both evaluators, the
counters/log choice and the time windows from ``events``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PrivateAttr
from sqlalchemy.sql.elements import ColumnElement

from rapport.segments.conditions.base import Condition
from rapport.segments.conditions.events import EventCondition, PropertyFilter
from rapport.segments.context import Context, Snapshot
from rapport.segments.dependencies import Collector

EVENTS = {
    "received": "Message Sent",
    "delivered": "Message Delivered",
    "opened": "Message Opened",
    "clicked": "Message Clicked",
    "bounced": "Message Bounced",
}
PROPERTIES = ("campaign_id", "scenario_id", "template_id", "channel")

Ident = str | int | None


class MessageCondition(Condition):
    """``{"message": "opened", "campaign_id": "spring-sale", "within_last": 7}``."""

    KEY = "message"
    message: Literal["received", "delivered", "opened", "clicked", "bounced"]
    campaign_id: Ident = None
    scenario_id: Ident = None
    template_id: Ident = None
    channel: str | None = None
    within_last: int | None = Field(default=None, ge=0, le=36600)
    _event: EventCondition = PrivateAttr()

    def check(self, where: str) -> None:
        filters = [
            PropertyFilter(property=name, op="eq", value=str(getattr(self, name)))
            for name in PROPERTIES
            if getattr(self, name) is not None
        ]
        self._event = EventCondition(
            event=EVENTS[self.message], where=filters, within_last=self.within_last
        )
        self._event.check(where)

    def sql(self, ctx: Context) -> ColumnElement[bool]:
        return self._event.sql(ctx)

    def crossing_sql(self, ctx_from: Context, ctx_to: Context) -> ColumnElement[bool] | None:
        return self._event.crossing_sql(ctx_from, ctx_to)

    def test(self, snap: Snapshot, ctx: Context) -> bool:
        return self._event.test(snap, ctx)

    def collect(self, deps: Collector) -> None:
        self._event.collect(deps)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
