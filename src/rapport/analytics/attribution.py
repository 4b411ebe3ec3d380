"""Which message an order is credited to: the last click within N days, else the last open
within M days (defaults 5 and 1), with windows per channel.

Last-touch is what marketers compare between tools (Mindbox, Klaviyo and Braze all
default to it), it needs nothing but the message facts, and it can be computed once, when
the order arrives, in the transaction that stores it — so reports read a small table
instead of searching every customer's history. A click outranks an open whatever their
order: a click is intent, an open may be a mail client prefetching images. An order with
no click or open in its windows is not CRM revenue.

The windows live in the store (``app_settings``, key ``attribution``); changing them
applies to orders from then on, and ``rebuild_attribution`` re-credits the history.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rapport.errors import InvalidInput, Problem
from rapport.messaging.channels.base import CHANNELS
from rapport.segments.config import read_setting, write_setting
from rapport.store.engine import upsert
from rapport.store.fast import among
from rapport.store.tables import message_facts, order_attributions, orders

SETTING = "attribution"


class Window(BaseModel):
    model_config = ConfigDict(extra="forbid")

    click_days: float = Field(default=5, ge=0, le=90)
    open_days: float = Field(default=1, ge=0, le=90)


class AttributionSettings(BaseModel):
    """The default windows and, per channel, windows of its own (``sms``: no opens)."""

    model_config = ConfigDict(extra="forbid")

    click_days: float = Field(default=5, ge=0, le=90)
    open_days: float = Field(default=1, ge=0, le=90)
    channels: dict[str, Window] = Field(default_factory=dict)

    def window(self, channel: str) -> Window:
        own = self.channels.get(channel)
        return own or Window(click_days=self.click_days, open_days=self.open_days)

    @property
    def longest(self) -> timedelta:
        days = [self.click_days, self.open_days]
        for w in self.channels.values():
            days += [w.click_days, w.open_days]
        return timedelta(days=max(days))


def load_attribution(conn: sa.Connection) -> AttributionSettings:
    stored = read_setting(conn, SETTING)
    return AttributionSettings.model_validate(stored) if stored else AttributionSettings()


def parse_attribution(doc: Any) -> AttributionSettings:
    """Validate a settings document; every problem with its path."""
    try:
        return AttributionSettings.model_validate(doc)
    except ValidationError as exc:
        raise InvalidInput(
            [
                Problem(".".join(str(p) for p in e["loc"]) or "attribution", e["msg"])
                for e in exc.errors()
            ]
        ) from None


def save_attribution(conn: sa.Connection, settings: AttributionSettings, now: datetime) -> None:
    unknown = sorted(set(settings.channels) - set(CHANNELS))
    if unknown:
        raise InvalidInput(
            [
                Problem(f"channels.{c}", f"unknown channel; one of {', '.join(CHANNELS)}")
                for c in unknown
            ]
        )
    write_setting(conn, SETTING, settings.model_dump(mode="json"), now)


@dataclass(frozen=True)
class Credit:
    order_pk: int
    customer_id: int
    occurred_at: datetime
    message_key: str
    model: str  # click | open
    touch_at: datetime


def attribute_new_orders(conn: sa.Connection, order_ids: Iterable[str]) -> list[Credit]:
    """Credit the orders a batch completed (by their shop order ids)."""
    wanted = sorted(set(order_ids))
    if not wanted:
        return []
    pks = list(
        conn.execute(sa.select(orders.c.id).where(among(conn, orders.c.order_id, wanted))).scalars()
    )
    _follow_order_times(conn, pks)
    return attribute_orders(conn, pks)


def _follow_order_times(conn: sa.Connection, order_pks: list[int]) -> None:
    """A credit keeps a copy of its order's time (the CRM share finds credits in a period by
    it); an order sent again with another time moves its credit's copy with it."""
    if not order_pks:
        return
    a = order_attributions.c
    moved = sa.select(orders.c.occurred_at).where(orders.c.id == a.order_pk).scalar_subquery()
    conn.execute(
        order_attributions.update()
        .where(among(conn, a.order_pk, order_pks), a.occurred_at != moved)
        .values(occurred_at=moved)
    )


def attribute_orders(
    conn: sa.Connection,
    order_pks: Iterable[int],
    settings: AttributionSettings | None = None,
) -> list[Credit]:
    """Credit these orders (completed ones not credited yet) to their message, if any."""
    pks = sorted(set(order_pks))
    if not pks:
        return []
    settings = settings or load_attribution(conn)
    o = orders.c
    found = conn.execute(
        sa.select(o.id, o.customer_id, o.occurred_at)
        .where(among(conn, o.id, pks), o.status == "completed")
        .where(~sa.exists().where(order_attributions.c.order_pk == o.id))
    ).all()
    if not found:
        return []
    credits = _credits(conn, found, settings)
    if credits:
        _store(conn, credits)
    return credits


def _credits(
    conn: sa.Connection, found: Sequence[Any], settings: AttributionSettings
) -> list[Credit]:
    """The touches of these orders' customers in the longest window, in one query, chosen
    per order in Python (a handful of messages per customer)."""
    f = message_facts.c
    customers = sorted({int(r.customer_id) for r in found})
    earliest = min(r.occurred_at for r in found) - settings.longest
    latest = max(r.occurred_at for r in found)
    touches: dict[int, list[Any]] = {}
    for start in range(0, len(customers), 500):
        rows = conn.execute(
            sa.select(f.message_key, f.customer_id, f.channel, f.opened_at, f.clicked_at).where(
                f.customer_id.in_(customers[start : start + 500]),
                sa.or_(
                    sa.and_(f.clicked_at >= earliest, f.clicked_at <= latest),
                    sa.and_(f.opened_at >= earliest, f.opened_at <= latest),
                ),
            )
        ).all()
        for row in rows:
            touches.setdefault(int(row.customer_id), []).append(row)
    credits: list[Credit] = []
    for order in found:
        best = _best_touch(touches.get(int(order.customer_id), []), order.occurred_at, settings)
        if best is not None:
            key, model, at = best
            credits.append(
                Credit(int(order.id), int(order.customer_id), order.occurred_at, key, model, at)
            )
    return credits


def _best_touch(
    touches: list[Any], at: datetime, settings: AttributionSettings
) -> tuple[str, str, datetime] | None:
    """The last click in its window, else the last open in its window."""
    best_click: tuple[datetime, str] | None = None
    best_open: tuple[datetime, str] | None = None
    for t in touches:
        window = settings.window(t.channel)
        if _inside(t.clicked_at, at, window.click_days):
            best_click = max(best_click or (t.clicked_at, ""), (t.clicked_at, t.message_key))
        if _inside(t.opened_at, at, window.open_days):
            best_open = max(best_open or (t.opened_at, ""), (t.opened_at, t.message_key))
    if best_click is not None:
        return best_click[1], "click", best_click[0]
    if best_open is not None:
        return best_open[1], "open", best_open[0]
    return None


def _inside(touch: datetime | None, order: datetime, days: float) -> bool:
    return touch is not None and days > 0 and order - timedelta(days=days) <= touch <= order


def _store(conn: sa.Connection, credits: list[Credit]) -> None:
    f = message_facts.c
    keys = sorted({c.message_key for c in credits})
    origin = {
        r.message_key: r
        for r in conn.execute(
            sa.select(
                f.message_key, f.channel, f.campaign_id, f.scenario_id, f.step, f.variant, f.day
            ).where(f.message_key.in_(keys))
        )
    }
    stmt = upsert(conn, order_attributions).on_conflict_do_nothing(index_elements=["order_pk"])
    conn.execute(
        stmt,
        [
            {
                "order_pk": c.order_pk,
                "customer_id": c.customer_id,
                "occurred_at": c.occurred_at,
                "message_key": c.message_key,
                "channel": origin[c.message_key].channel,
                "campaign_id": origin[c.message_key].campaign_id,
                "scenario_id": origin[c.message_key].scenario_id,
                "step": origin[c.message_key].step,
                "variant": origin[c.message_key].variant,
                "message_day": origin[c.message_key].day,
                "model": c.model,
                "touch_at": c.touch_at,
            }
            for c in credits
        ],
    )


def rebuild_attribution(conn: sa.Connection, *, chunk: int = 5000, progress: Any = None) -> int:
    """Forget every credit and credit all completed orders again with today's windows."""
    conn.execute(order_attributions.delete())
    settings = load_attribution(conn)
    last = 0
    total = 0
    while True:
        pks = list(
            conn.execute(
                sa.select(orders.c.id)
                .where(orders.c.id > last, orders.c.status == "completed")
                .order_by(orders.c.id)
                .limit(chunk)
            ).scalars()
        )
        if not pks:
            return total
        total += len(attribute_orders(conn, pks, settings))
        last = pks[-1]
        if progress is not None:
            progress(len(pks))
