"""Consent decisions made from links in messages: one-click unsubscribe and the preference page.

Both act on the profile the customer lives under now (see ``engagement.survivor``) and
return the events for the card, which the caller records through the pipeline in the same
transaction. A decision that changes nothing returns no events, so repeating it (a mail
provider retrying its RFC 8058 POST, a customer pressing the button twice) is harmless.

The customer's row is locked first: on PostgreSQL two requests for the same customer then
run one after the other, and the second sees the first one's decision instead of
recording the same change twice. SQLite writers are serialised already.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from rapport.customers.consents import ConsentChange, set_consents
from rapport.messaging.channels.base import CHANNELS
from rapport.messaging.outbox import UNSUBSCRIBED, Event, event_for
from rapport.messaging.recipients import recipient_for
from rapport.store.tables import consents, customers, outbox

CONSENT_CHANGED = "Consent Changed"
UNSUBSCRIBE_SOURCE = "unsubscribe-link"
PREFERENCES_SOURCE = "preference-page"

# The channels Rapport sends on that have a consent of their own (a webhook goes to a
# partner, not to the customer). The page offers these when the customer can be reached
# there or has decided about them; other consent channels appear once decided.
PAGE_CHANNELS = tuple(c for c in CHANNELS if c != "webhook")


@dataclass(frozen=True)
class Consent:
    status: str
    double_opt_in: str
    updated_at: datetime


@dataclass(frozen=True)
class ChannelChoice:
    """One line of the preference page."""

    channel: str
    status: str | None  # None: the customer never decided
    address: str | None  # email or phone, for the page to show masked; None elsewhere

    @property
    def subscribed(self) -> bool:
        return self.status == "subscribed"


def _lock_customer(conn: sa.Connection, customer_id: int) -> None:
    conn.execute(
        sa.select(customers.c.id).where(customers.c.id == customer_id).with_for_update()
    ).first()


def current_consents(conn: sa.Connection, customer_id: int) -> dict[str, Consent]:
    rows = conn.execute(
        sa.select(
            consents.c.channel, consents.c.status, consents.c.double_opt_in, consents.c.updated_at
        ).where(consents.c.customer_id == customer_id)
    )
    return {r.channel: Consent(r.status, r.double_opt_in, r.updated_at) for r in rows}


def change_consents(
    conn: sa.Connection,
    customer_id: int,
    wanted: Mapping[str, str],
    source: str,
    now: datetime,
) -> list[Event]:
    """Set each channel of ``wanted`` to its status where it differs from the current one.

    Returns one ``Consent Changed`` per actual change, with the properties the customer
    API's consent route records. The customer's own decision always takes effect: a
    decision stored with a later time (an import with a clock ahead of ours) would
    otherwise make ``set_consents`` keep it, so the change is dated no earlier than it.
    ``double_opt_in`` keeps its value: it records how a past subscription was confirmed.
    """
    _lock_customer(conn, customer_id)
    current = current_consents(conn, customer_id)
    changes: list[ConsentChange] = []
    for channel, status in wanted.items():
        old = current.get(channel)
        if old is not None and old.status == status:
            continue
        at = now if old is None else max(now, old.updated_at)
        opt_in = old.double_opt_in if old is not None else "none"
        changes.append(ConsentChange(customer_id, channel, status, source, at, opt_in))
    set_consents(conn, changes)
    return [
        (
            customer_id,
            CONSENT_CHANGED,
            {
                "channel": ch.channel,
                "status": ch.status,
                "source": ch.source,
                "double_opt_in": ch.double_opt_in,
            },
        )
        for ch in changes
    ]


def unsubscribe(
    conn: sa.Connection, customer_id: int, channel: str, message_key: str, now: datetime
) -> list[Event]:
    """Unsubscribe ``customer_id`` (a survivor) from ``channel`` through a message's link.

    When the consent changes, the message whose link did it also gets ``Message
    Unsubscribed`` (with its campaign, scenario, template, step and variant), which is what
    unsubscribe rates per campaign count; the event goes on the survivor's card even when
    the message was sent to a profile merged since. Nothing changes, nothing is returned.
    """
    events = change_consents(conn, customer_id, {channel: "unsubscribed"}, UNSUBSCRIBE_SOURCE, now)
    if not events:
        return []
    row = conn.execute(sa.select(outbox).where(outbox.c.idempotency_key == message_key)).first()
    if row is not None:
        events.extend((customer_id, name, props) for _, name, props in event_for(row, UNSUBSCRIBED))
    return events


def consent_status(conn: sa.Connection, customer_id: int, channel: str) -> str | None:
    return conn.execute(
        sa.select(consents.c.status).where(
            consents.c.customer_id == customer_id, consents.c.channel == channel
        )
    ).scalar_one_or_none()


def preference_choices(
    conn: sa.Connection, customer_id: int, known: Collection[str] = ()
) -> list[ChannelChoice]:
    """The lines of the preference page, in a stable order.

    The sending channels come first, each when the customer can be reached there or has
    decided about it; then any other channel with a recorded decision, if it is one of
    ``known`` (the consent channels the caller accepts) or ``known`` is empty.
    """
    current = current_consents(conn, customer_id)
    choices: list[ChannelChoice] = []
    for channel in PAGE_CHANNELS:
        address = recipient_for(conn, customer_id, channel)
        if address is None and channel not in current:
            continue
        shown = address if channel in ("email", "sms") else None
        status = current[channel].status if channel in current else None
        choices.append(ChannelChoice(channel, status, shown))
    for channel in sorted(set(current) - set(PAGE_CHANNELS)):
        if not known or channel in known:
            choices.append(ChannelChoice(channel, current[channel].status, None))
    return choices


def wanted_from_form(
    choices: list[ChannelChoice], checked: Collection[str], *, everything: bool
) -> dict[str, str]:
    """The statuses a submitted preference form asks for, by channel.

    A ticked box means subscribed and a cleared box unsubscribed, but only a box whose
    state differs from the stored decision is a change: an untouched box of a channel the
    customer never decided about (or one awaiting double opt-in) stays as it is.
    "Unsubscribe from everything" unsubscribes every channel on the page.
    """
    wanted: dict[str, str] = {}
    for choice in choices:
        if everything:
            wanted[choice.channel] = "unsubscribed"
        elif choice.channel in checked and not choice.subscribed:
            wanted[choice.channel] = "subscribed"
        elif choice.channel not in checked and choice.subscribed:
            wanted[choice.channel] = "unsubscribed"
    return wanted


def customer_locale(conn: sa.Connection, customer_id: int) -> str | None:
    """The card's locale (e.g. ``ru-RU``), for choosing the language of a page."""
    value = conn.execute(
        sa.select(customers.c.locale).where(customers.c.id == customer_id)
    ).scalar_one_or_none()
    return None if value is None else str(value)
