"""The campaign composer's form: what the browser posts, turned into the definition the API
takes (``messaging.campaigns.CampaignSpec``), and back again for editing.

The form holds the raw strings the person typed, so a rejected form is shown again as it
was. Nothing here validates the campaign: the dictionary goes to ``create_campaign`` /
``update_campaign``, which check it with the API's Pydantic model and the store, and their
problems (``variants[1].template_id``) are shown beside the fields of the same names. The
one thing only the form can get wrong is the date-time, typed in the account's time zone
(the policy's ``default_timezone``) and stored in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from rapport.errors import Problem
from rapport.messaging.campaigns import Campaign, CampaignSpec
from rapport.messaging.policy import DEFAULT_RANK
from rapport.web.i18n import N_

# How the pages name a campaign's status and priority (translated where shown).
STATUS_LABELS = {
    "draft": N_("draft"),
    "scheduled": N_("scheduled"),
    "sending": N_("sending"),
    "sent": N_("sent"),
    "cancelled": N_("cancelled"),
}
PRIORITY_LABELS = {"marketing": N_("marketing"), "transactional": N_("transactional")}
LABELS: dict[str, Any] = {"status_labels": STATUS_LABELS, "priority_labels": PRIORITY_LABELS}

_VARIANT_FIELD = re.compile(r"^variants-(\d{1,2})-(name|template_id|weight)$")
MAX_VARIANTS = 26  # CampaignSpec's limit; the form never offers more
LOCAL_INPUT = "%Y-%m-%dT%H:%M"  # <input type="datetime-local">


def variant_name(index: int) -> str:
    """A, B, C… for a new variant row (the definition allows up to 26)."""
    return chr(ord("A") + index) if index < MAX_VARIANTS else str(index + 1)


@dataclass
class CampaignForm:
    name: str = ""
    channel: str = "email"
    segment_id: str = ""
    variants: list[dict[str, str]] = field(
        default_factory=lambda: [{"name": "A", "template_id": "", "weight": "1"}]
    )
    control_percent: str = "0"
    when: str = "now"  # now | at
    send_at: str = ""  # datetime-local, in the account's time zone
    local_hour: str = ""  # "" = as soon as due; else each customer's own hour
    throttle_per_minute: str = ""
    priority: str = "marketing"
    cap_priority: str = str(DEFAULT_RANK)

    def add_variant(self) -> None:
        if len(self.variants) < MAX_VARIANTS:
            taken = {v["name"] for v in self.variants}
            index = len(self.variants)
            while variant_name(index) in taken:
                index += 1
            self.variants.append({"name": variant_name(index), "template_id": "", "weight": "1"})

    def remove_variant(self, index: int) -> None:
        if len(self.variants) > 1 and 0 <= index < len(self.variants):
            del self.variants[index]


def _text(form: Mapping[str, Any], name: str, default: str = "") -> str:
    value = form.get(name, default)
    return value.strip() if isinstance(value, str) else default


def form_from_post(form: Mapping[str, Any]) -> CampaignForm:
    """The posted fields (variant rows are ``variants-<i>-<field>``), as typed."""
    rows: dict[int, dict[str, str]] = {}
    for key in form:
        found = _VARIANT_FIELD.match(str(key))
        if found:
            rows.setdefault(int(found.group(1)), {})[found.group(2)] = _text(form, str(key))
    variants = [
        {
            "name": row.get("name", ""),
            "template_id": row.get("template_id", ""),
            "weight": row.get("weight", ""),
        }
        for _, row in sorted(rows.items())
    ][:MAX_VARIANTS]
    return CampaignForm(
        name=_text(form, "name"),
        channel=_text(form, "channel", "email"),
        segment_id=_text(form, "segment_id"),
        variants=variants,
        control_percent=_text(form, "control_percent"),
        when=_text(form, "when", "now"),
        send_at=_text(form, "send_at"),
        local_hour=_text(form, "local_hour"),
        throttle_per_minute=_text(form, "throttle_per_minute"),
        priority=_text(form, "priority", "marketing"),
        cap_priority=_text(form, "cap_priority"),
    )


def local_input(moment: datetime | None, zone: ZoneInfo) -> str:
    return "" if moment is None else moment.astimezone(zone).strftime(LOCAL_INPUT)


def form_from_campaign(campaign: Campaign, zone: ZoneInfo) -> CampaignForm:
    """A stored campaign in the form, for editing."""

    def number(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else str(x)

    return CampaignForm(
        name=campaign.name,
        channel=campaign.channel,
        segment_id=str(campaign.segment_id),
        variants=[
            {
                "name": str(v["name"]),
                "template_id": str(v["template_id"]),
                "weight": number(float(v.get("weight", 1))),
            }
            for v in campaign.variants
        ],
        control_percent=number(campaign.control_percent),
        when="at" if campaign.send_at is not None else "now",
        send_at=local_input(campaign.send_at, zone),
        local_hour="" if campaign.local_hour is None else str(campaign.local_hour),
        throttle_per_minute=(
            "" if campaign.throttle_per_minute is None else str(campaign.throttle_per_minute)
        ),
        priority=campaign.priority,
        cap_priority=str(campaign.cap_priority),
    )


def campaign_doc(form: CampaignForm, zone: ZoneInfo) -> tuple[dict[str, Any], list[Problem]]:
    """The whole definition as the API takes it, and the problems only the form can have.

    A required field left empty is left out, so the model says "Field required"; an
    optional one left empty takes the model's default (the form shows every field, so an
    emptied throttle means "no throttle", not "keep the old one"). Any other text is
    passed on as typed for the model to judge (``weight: "abc"`` is "Input should be a
    valid number").
    """
    problems: list[Problem] = []
    doc: dict[str, Any] = {"name": form.name}
    for name in ("channel", "segment_id"):
        value = getattr(form, name)
        if value != "":
            doc[name] = value
    for name in (
        "control_percent",
        "local_hour",
        "throttle_per_minute",
        "priority",
        "cap_priority",
    ):
        value = getattr(form, name)
        doc[name] = value if value != "" else CampaignSpec.model_fields[name].get_default()
    doc["variants"] = [
        {k: v for k, v in variant.items() if v != "" or k == "name"} for variant in form.variants
    ]
    doc["send_at"] = None
    if form.when == "at":
        if not form.send_at:
            problems.append(Problem("send_at", "give the date and time to start"))
        else:
            try:
                local = datetime.strptime(form.send_at, LOCAL_INPUT)
            except ValueError:
                problems.append(Problem("send_at", "must be a date and time (YYYY-MM-DDTHH:MM)"))
            else:
                doc["send_at"] = local.replace(tzinfo=zone).astimezone(UTC)
    elif form.when != "now":
        problems.append(Problem("send_at", "choose now or a date and time"))
    return doc, problems
