"""What an open or a click on a tracked link means for the customer's card.

The tracking routes verify the token; this finds the message the token names and returns
the event for the card, or says why there is none. Events land on the profile the
customer lives under *now*: a message sent before two profiles were merged counts for the
survivor, and a message to someone who has since been erased records nothing at all.

Like the rest of messaging, nothing here records events: they are returned for the caller
to hand to the pipeline in its own transaction.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import sqlalchemy as sa

from rapport.customers.profile import live_id
from rapport.messaging.outbox import Event, event_for
from rapport.store.tables import customers, outbox


class NoCustomer(LookupError):
    """The profile a link was made for cannot be acted on.

    ``erased`` tells a profile that was erased on request (the person asked us to forget
    them: answer 410 Gone) from an id that never existed (404).
    """

    def __init__(self, customer_id: int, *, erased: bool) -> None:
        what = "was erased" if erased else "does not exist"
        super().__init__(f"customer {customer_id} {what}")
        self.customer_id = customer_id
        self.erased = erased


def survivor(conn: sa.Connection, customer_id: int) -> int:
    """The live, un-erased profile ``customer_id`` resolves to; NoCustomer otherwise."""
    cid = live_id(conn, customer_id)
    if cid is None:
        raise NoCustomer(customer_id, erased=False)
    erased_at = conn.execute(
        sa.select(customers.c.erased_at).where(customers.c.id == cid)
    ).scalar_one_or_none()
    if erased_at is not None:
        raise NoCustomer(customer_id, erased=True)
    return cid


class Found(Enum):
    """What a tracked request's message key led to."""

    MESSAGE = "message"  # a message to a live customer (or to no customer at all)
    UNKNOWN = "unknown"  # no such message in the outbox (never queued, or purged)
    GONE = "gone"  # the message's customer was erased


def message_event(
    conn: sa.Connection, message_key: str, name: str, **extra: Any
) -> tuple[Found, list[Event]]:
    """The status event ``name`` for the outbox message ``message_key``, on the survivor.

    A message without a customer (a partner webhook) is found but yields no event.
    """
    row = conn.execute(sa.select(outbox).where(outbox.c.idempotency_key == message_key)).first()
    if row is None:
        return Found.UNKNOWN, []
    events = event_for(row, name, **extra)
    if not events:
        return Found.MESSAGE, []
    try:
        cid = survivor(conn, int(row.customer_id))
    except NoCustomer:
        return Found.GONE, []
    return Found.MESSAGE, [(cid, event_name, props) for _, event_name, props in events]
