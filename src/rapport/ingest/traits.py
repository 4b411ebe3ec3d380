"""From Segment traits to the card's typed attributes.

Standard traits (Segment's reserved names, in camelCase or snake_case) fill typed columns
and are validated; every other trait is kept as JSON in ``traits``. See docs/ingest.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from rapport.errors import Problem
from rapport.ingest.normalize import (
    normalize_email,
    normalize_phone,
    normalize_timezone,
    parse_date,
)

CONSENT_CHANNELS = ("email", "sms", "push", "telegram", "whatsapp", "viber", "webpush", "call")
CONSENT_STATUSES = ("subscribed", "unsubscribed", "pending")

_TEXT_FIELDS = {
    "firstName": "first_name",
    "first_name": "first_name",
    "lastName": "last_name",
    "last_name": "last_name",
    "gender": "gender",
    "city": "city",
    "country": "country",
}
# Traits that fill columns or identities and so are not repeated in the JSON traits.
_CONSUMED = {
    *_TEXT_FIELDS,
    "name",
    "birthday",
    "timezone",
    "locale",
    "email",
    "phone",
    "consents",
}


@dataclass(slots=True)
class Attributes:
    """The attribute updates one identify call carries; None means 'not given'."""

    columns: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    consents: dict[str, str] = field(default_factory=dict)


def consent_status(value: object) -> str:
    if value is True:
        return "subscribed"
    if value is False:
        return "unsubscribed"
    if isinstance(value, str) and value in CONSENT_STATUSES:
        return value
    raise ValueError(
        f"{value!r} is not a consent status (true, false or one of {CONSENT_STATUSES})"
    )


def read_attributes(
    traits: dict[str, Any], context: dict[str, Any], where: str, problems: list[Problem]
) -> Attributes:
    attrs = Attributes()
    cols = attrs.columns

    def bad(key: str, reason: str) -> None:
        problems.append(Problem(f"{where}.traits.{key}", reason))

    for key, column in _TEXT_FIELDS.items():
        value = traits.get(key)
        if value is None:
            continue
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            bad(key, "must be a string")
            continue
        cols[column] = str(value).strip()[:200]
    name = traits.get("name")
    if isinstance(name, str) and name.strip() and "first_name" not in cols:
        first, _, last = name.strip().partition(" ")
        cols["first_name"] = first
        if last and "last_name" not in cols:
            cols["last_name"] = last.strip()
    address = traits.get("address")
    if isinstance(address, dict):
        for key in ("city", "country"):
            if isinstance(address.get(key), str) and key not in cols:
                cols[key] = address[key].strip()[:200]
    if traits.get("birthday") is not None:
        try:
            birthday: date = parse_date(traits["birthday"])
            cols["birthday"] = birthday
        except ValueError as exc:
            bad("birthday", str(exc))
    zone = traits.get("timezone", context.get("timezone"))
    if zone is not None:
        try:
            cols["timezone"] = normalize_timezone(zone)
        except ValueError as exc:
            if "timezone" in traits:
                bad("timezone", str(exc))
    locale = traits.get("locale", context.get("locale"))
    if isinstance(locale, str) and locale.strip():
        cols["locale"] = locale.strip().replace("_", "-")[:35]
    consents = traits.get("consents")
    if consents is not None:
        if not isinstance(consents, dict):
            bad("consents", "must be an object of channel: status")
        else:
            for channel, value in consents.items():
                if channel not in CONSENT_CHANNELS:
                    bad(
                        f"consents.{channel}",
                        f"unknown channel (expected one of {CONSENT_CHANNELS})",
                    )
                    continue
                try:
                    attrs.consents[channel] = consent_status(value)
                except ValueError as exc:
                    bad(f"consents.{channel}", str(exc))
    attrs.traits = {k: v for k, v in traits.items() if k not in _CONSUMED}
    return attrs


def contact_points(
    traits: dict[str, Any],
    context: dict[str, Any],
    where: str,
    region: str,
    problems: list[Problem],
) -> tuple[list[str], list[str]]:
    """Emails and phones a message names, from its traits or ``context.traits``."""
    emails: list[str] = []
    phones: list[str] = []
    sources: list[tuple[str, dict[str, Any]]] = [("traits", traits)]
    ctx_traits = context.get("traits")
    if isinstance(ctx_traits, dict):
        sources.append(("context.traits", ctx_traits))
    for label, source in sources:
        if source.get("email") not in (None, ""):
            try:
                email = normalize_email(source["email"])
                if email not in emails:
                    emails.append(email)
            except ValueError as exc:
                problems.append(Problem(f"{where}.{label}.email", str(exc)))
        if source.get("phone") not in (None, ""):
            try:
                phone = normalize_phone(source["phone"], region)
                if phone not in phones:
                    phones.append(phone)
            except ValueError as exc:
                problems.append(Problem(f"{where}.{label}.phone", str(exc)))
    return emails, phones
