"""Identifiers in one canonical form, so the same person is found whatever the spelling."""

from __future__ import annotations

import re
import zoneinfo
from datetime import date, datetime
from functools import lru_cache

import phonenumbers

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_email(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("email must be a string")
    email = value.strip().lower()
    if len(email) > 320 or not _EMAIL.match(email):
        raise ValueError(f"{value!r} is not an email address")
    return email


@lru_cache(maxsize=65536)
def _parse_phone(value: str, region: str) -> str:
    try:
        number = phonenumbers.parse(value, None if value.startswith("+") else region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{value!r} is not a phone number") from exc
    if not phonenumbers.is_possible_number(number):
        raise ValueError(f"{value!r} is not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_phone(value: object, region: str) -> str:
    """E.164 (+79161234567); numbers without a country code are read in ``region``."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError("phone must be a non-empty string")
    return _parse_phone(value.strip(), region)


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def normalize_timezone(value: object) -> str:
    if not isinstance(value, str) or value not in _zones():
        raise ValueError(f"{value!r} is not an IANA time zone such as 'Europe/Moscow'")
    return value


def parse_date(value: object) -> date:
    """A calendar date from 'YYYY-MM-DD' or an ISO timestamp (Segment sends both)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                return date.fromisoformat(text)
            return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a date (expected YYYY-MM-DD)")
