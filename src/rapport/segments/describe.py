"""A saved rule in plain words ("City is Kazan", "Performed Order Completed at least 2 times").

Marketers read a segment by its rule, and so does the management reading the CRM-strategy
document, so the sentences are built here, once, from the rule's canonical JSON
(``Rule.to_json()``): every condition type the parser knows, and a node with no sentence
is shown as its JSON, never dropped. The web UI and ``rapport.strategy`` both call
:func:`describe`.

Sentences are English source strings passed through the caller's ``gettext`` (the UI
passes its catalog's, which translates every string of ``WORDS``); values (names, cities,
event names) are data and are never passed through it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

Gettext = Callable[[str], str]

# The labels of fields, operators and outcomes. The segment builder shows the same ones
# (``web.segment_catalog`` marks them for the UI's catalog; a test keeps the two equal).
FIELD_LABELS = {
    "first_name": "First name",
    "last_name": "Last name",
    "email": "Email",
    "phone": "Phone",
    "gender": "Gender",
    "city": "City",
    "country": "Country",
    "timezone": "Time zone",
    "locale": "Locale",
    "birthday": "Birthday",
    "created_at": "Created",
    "events_count": "Events",
    "first_seen_at": "First seen",
    "last_seen_at": "Last seen",
    "orders_count": "Orders",
    "revenue": "Revenue",
    "first_order_at": "First order",
    "last_order_at": "Last order",
    "average_check": "Average check",
    "days_since_last_order": "Days since last order",
    "days_since_first_order": "Days since first order",
    "days_since_last_seen": "Days since last seen",
    "days_since_created": "Days since created",
    "rfm_recency": "RFM recency score",
    "rfm_frequency": "RFM frequency score",
    "rfm_monetary": "RFM monetary score",
    "lifecycle_changed_at": "Lifecycle stage changed",
    "predicted_clv": "Predicted CLV",
    "expected_purchases_90d": "Expected purchases in 90 days",
    "churn_risk": "Churn risk",
}

OPERATOR_LABELS = {
    "eq": "is",
    "ne": "is not",
    "lt": "less than",
    "le": "at most",
    "gt": "more than",
    "ge": "at least",
    "in": "is one of",
    "not_in": "is none of",
    "between": "between",
    "contains": "contains",
    "starts_with": "starts with",
    "exists": "is set",
    "is_true": "is true",
    "is_false": "is false",
    "within_last": "in the last … days",
    "within_next": "in the next … days",
    "more_than_days_ago": "more than … days ago",
    "anniversary_within": "anniversary in the next … days",
}

EVENT_MODE_LABELS = {
    "at_least": "at least",
    "at_most": "at most",
    "exactly": "exactly",
    "not_for_days": "not performed for … days",
}

MESSAGE_LABELS = {
    "received": "received",
    "delivered": "delivered",
    "opened": "opened",
    "clicked": "clicked",
    "bounced": "bounced",
}

STATUS_LABELS = {
    "subscribed": "subscribed",
    "unsubscribed": "unsubscribed",
    "pending": "pending",
}

GROUP_LABELS = {
    "all": "All of these",
    "any": "Any of these",
    "not": "None of this (NOT)",
}

# The sentences, with their placeholders.
SENTENCES: tuple[str, ...] = (
    "Trait %(name)s",
    "Has not performed %(event)s for %(days)s days",
    "Last performed %(event)s: %(how)s %(when)s",
    "Performed %(event)s %(mode)s %(n)s times",
    "in the last %(days)s days",
    "where %(filters)s",
    "A message was %(outcome)s",
    "Consent to %(channel)s: %(status)s",
    "Member of %(name)s (#%(id)s)",
    "RFM cell is one of %(cells)s",
    "Lifecycle stage is one of %(stages)s",
    "Random bucket %(low)s–%(high)s of 100 (salt %(salt)s)",
)

# Every English text :func:`describe` may pass to ``gettext`` (the catalog's checklist).
WORDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        [
            *FIELD_LABELS.values(),
            *OPERATOR_LABELS.values(),
            *EVENT_MODE_LABELS.values(),
            *MESSAGE_LABELS.values(),
            *STATUS_LABELS.values(),
            *GROUP_LABELS.values(),
            *SENTENCES,
        ]
    )
)


def label(name: str) -> str:
    """A field's English label (its name until one is added above)."""
    return FIELD_LABELS.get(name, name)


@dataclass
class Sentence:
    """One node of the rule: its sentence, and the sentences of a group's members."""

    text: str
    children: list[Sentence] = field(default_factory=list)

    def lines(self, depth: int = 0) -> list[tuple[int, str]]:
        """The tree flattened to (depth, text), for a document that cannot nest lists."""
        found = [(depth, self.text)]
        for child in self.children:
            found.extend(child.lines(depth + 1))
        return found


def describe(rule: Any, gettext: Gettext, segment_names: Mapping[int, str]) -> Sentence:
    return _Describer(gettext, segment_names).node(rule)


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


class _Describer:
    def __init__(self, gettext: Gettext, segment_names: Mapping[int, str]) -> None:
        self._ = gettext
        self.names = segment_names

    def node(self, rule: Any) -> Sentence:
        if isinstance(rule, dict) and len(rule) == 1 and next(iter(rule)) in GROUP_LABELS:
            kind, body = next(iter(rule.items()))
            children = [self.node(body)] if kind == "not" else [self.node(c) for c in body]
            return Sentence(self._(GROUP_LABELS[kind]) + ":", children)
        for key, say in self.leaves.items():
            if isinstance(rule, dict) and key in rule:
                return Sentence(say(self, rule))
        return Sentence(orjson.dumps(rule).decode())

    def compare(self, name: str, rule: dict[str, Any]) -> str:
        op = str(rule.get("op"))
        words = self._(OPERATOR_LABELS.get(op, op))
        if "…" in words:  # "in the last … days": the number goes in the gap
            words = words.replace("…", _value(rule.get("value")))
            return f"{name} {words}"
        if op == "between":
            low, high = rule["value"]
            return f"{name} {words} {_value(low)} — {_value(high)}"
        if "value" not in rule:
            return f"{name} {words}"
        return f"{name} {words} {_value(rule['value'])}"

    def attribute(self, rule: dict[str, Any]) -> str:
        name = str(rule["attribute"])
        shown = (
            self._("Trait %(name)s") % {"name": name.removeprefix("traits.")}
            if name.startswith("traits.")
            else self._(label(name))
        )
        return self.compare(shown, rule)

    def computed(self, rule: dict[str, Any]) -> str:
        return self.compare(self._(label(str(rule["computed"]))), rule)

    def event(self, rule: dict[str, Any]) -> str:
        name = str(rule["event"])
        if "not_for_days" in rule:
            text = self._("Has not performed %(event)s for %(days)s days") % {
                "event": name,
                "days": rule["not_for_days"],
            }
        elif "last" in rule:
            ((how, when),) = rule["last"].items()
            text = self._("Last performed %(event)s: %(how)s %(when)s") % {
                "event": name,
                "how": how.replace("_", " "),
                "when": when,
            }
        else:
            mode, times = next(iter((rule.get("times") or {"at_least": 1}).items()))
            text = self._("Performed %(event)s %(mode)s %(n)s times") % {
                "event": name,
                "mode": self._(EVENT_MODE_LABELS.get(mode, mode)),
                "n": times,
            }
            if "within_last" in rule:
                text += " " + self._("in the last %(days)s days") % {"days": rule["within_last"]}
        filters = [self.compare(str(f["property"]), f) for f in rule.get("where", [])]
        if filters:
            text += " " + self._("where %(filters)s") % {"filters": "; ".join(filters)}
        return text

    def message(self, rule: dict[str, Any]) -> str:
        outcome = str(rule["message"])
        text = self._("A message was %(outcome)s") % {
            "outcome": self._(MESSAGE_LABELS.get(outcome, outcome))
        }
        narrowed = [
            f"{k.removesuffix('_id')} {rule[k]}"
            for k in ("campaign_id", "scenario_id", "template_id", "channel")
            if k in rule
        ]
        if narrowed:
            text += f" ({', '.join(narrowed)})"
        if "within_last" in rule:
            text += " " + self._("in the last %(days)s days") % {"days": rule["within_last"]}
        return text

    def consent(self, rule: dict[str, Any]) -> str:
        status = str(rule.get("status", "subscribed"))
        return self._("Consent to %(channel)s: %(status)s") % {
            "channel": rule["consent"],
            "status": self._(STATUS_LABELS.get(status, status)),
        }

    def segment(self, rule: dict[str, Any]) -> str:
        sid = rule["segment"]
        return self._("Member of %(name)s (#%(id)s)") % {
            "name": self.names.get(sid, "?"),
            "id": sid,
        }

    def rfm_cell(self, rule: dict[str, Any]) -> str:
        return self._("RFM cell is one of %(cells)s") % {"cells": _value(rule["rfm_cell"])}

    def lifecycle_stage(self, rule: dict[str, Any]) -> str:
        return self._("Lifecycle stage is one of %(stages)s") % {
            "stages": _value(rule["lifecycle_stage"])
        }

    def bucket(self, rule: dict[str, Any]) -> str:
        low, high = rule["bucket"]
        return self._("Random bucket %(low)s–%(high)s of 100 (salt %(salt)s)") % {
            "low": low,
            "high": high,
            "salt": rule.get("salt") or "—",
        }

    leaves: dict[str, Callable[[_Describer, dict[str, Any]], str]] = {
        "attribute": attribute,
        "computed": computed,
        "event": event,
        "message": message,
        "consent": consent,
        "segment": segment,
        "rfm_cell": rfm_cell,
        "lifecycle_stage": lifecycle_stage,
        "bucket": bucket,
    }
