"""What the segment builder offers, with the labels a marketer reads (translated where shown).

The choices come from the rule model itself (``segments.fields``, ``segments.ops``, the
condition types), so a computed field registered later appears in the builder without an
edit here; only its label falls back to its name until one is added below.
"""

from __future__ import annotations

from rapport.ingest.traits import CONSENT_CHANNELS, CONSENT_STATUSES
from rapport.segments.conditions.messages import EVENTS as MESSAGE_EVENTS
from rapport.segments.fields import ATTRIBUTES, COMPUTED
from rapport.segments.lifecycle import STAGES
from rapport.segments.rfm import CELLS
from rapport.web.i18n import N_

FIELD_LABELS = {
    "first_name": N_("First name"),
    "last_name": N_("Last name"),
    "email": N_("Email"),
    "phone": N_("Phone"),
    "gender": N_("Gender"),
    "city": N_("City"),
    "country": N_("Country"),
    "timezone": N_("Time zone"),
    "locale": N_("Locale"),
    "birthday": N_("Birthday"),
    "created_at": N_("Created"),
    "events_count": N_("Events"),
    "first_seen_at": N_("First seen"),
    "last_seen_at": N_("Last seen"),
    "orders_count": N_("Orders"),
    "revenue": N_("Revenue"),
    "first_order_at": N_("First order"),
    "last_order_at": N_("Last order"),
    "average_check": N_("Average check"),
    "days_since_last_order": N_("Days since last order"),
    "days_since_first_order": N_("Days since first order"),
    "days_since_last_seen": N_("Days since last seen"),
    "days_since_created": N_("Days since created"),
    "rfm_recency": N_("RFM recency score"),
    "rfm_frequency": N_("RFM frequency score"),
    "rfm_monetary": N_("RFM monetary score"),
    "lifecycle_changed_at": N_("Lifecycle stage changed"),
    "predicted_clv": N_("Predicted CLV"),
    "expected_purchases_90d": N_("Expected purchases in 90 days"),
    "churn_risk": N_("Churn risk"),
}

OPERATOR_LABELS = {
    "eq": N_("is"),
    "ne": N_("is not"),
    "lt": N_("less than"),
    "le": N_("at most"),
    "gt": N_("more than"),
    "ge": N_("at least"),
    "in": N_("is one of"),
    "not_in": N_("is none of"),
    "between": N_("between"),
    "contains": N_("contains"),
    "starts_with": N_("starts with"),
    "exists": N_("is set"),
    "is_true": N_("is true"),
    "is_false": N_("is false"),
    "within_last": N_("in the last … days"),
    "within_next": N_("in the next … days"),
    "more_than_days_ago": N_("more than … days ago"),
    "anniversary_within": N_("anniversary in the next … days"),
}

EVENT_MODE_LABELS = {
    "at_least": N_("at least"),
    "at_most": N_("at most"),
    "exactly": N_("exactly"),
    "not_for_days": N_("not performed for … days"),
}

MESSAGE_LABELS = {
    "received": N_("received"),
    "delivered": N_("delivered"),
    "opened": N_("opened"),
    "clicked": N_("clicked"),
    "bounced": N_("bounced"),
}

STATUS_LABELS = {
    "subscribed": N_("subscribed"),
    "unsubscribed": N_("unsubscribed"),
    "pending": N_("pending"),
}

GROUP_LABELS = {
    "all": N_("All of these"),
    "any": N_("Any of these"),
    "not": N_("None of this (NOT)"),
}


def label(name: str) -> str:
    return FIELD_LABELS.get(name, name)


def field_groups() -> list[tuple[str, list[tuple[str, str]]]]:
    """The field select's option groups: (group label, [(value, label)])."""
    return [
        (
            N_("Attributes"),
            [(f"attribute:{name}", label(name)) for name in ATTRIBUTES]
            + [("attribute:traits", N_("Custom trait…"))],
        ),
        (N_("Computed fields"), [(f"computed:{name}", label(name)) for name in COMPUTED]),
        (N_("Events"), [("event", N_("Performed an event"))]),
        (N_("Messages"), [("message", N_("Message outcome"))]),
        (N_("Consent"), [("consent", N_("Consent to a channel"))]),
        (N_("Segments"), [("segment", N_("Member of a segment or list"))]),
        (N_("RFM"), [("rfm_cell", N_("RFM cell"))]),
        (N_("Lifecycle"), [("lifecycle_stage", N_("Lifecycle stage"))]),
        (N_("Random bucket"), [("bucket", N_("Random bucket (holdout)"))]),
        (N_("Other"), [("json", N_("JSON / YAML"))]),
    ]


CHOICES = {
    "consent_channels": CONSENT_CHANNELS,
    "consent_statuses": CONSENT_STATUSES,
    "messages": tuple(MESSAGE_EVENTS),
    "cells": tuple(CELLS),
    "stages": STAGES,
}
