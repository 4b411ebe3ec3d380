"""Masking emails and phones for roles without the view_personal permission (viewers).

The real value never leaves the server: masking happens before rendering, not in CSS.
Enough is kept to tell two customers apart on a call (the first letter and the domain;
the country code and the last two digits), not enough to write to them.
"""

from __future__ import annotations

import re
from typing import Any

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"^\+?[\d\s()\-.]{7,20}$")
PERSONAL_KEYS = ("email", "phone")


def mask_email(value: str) -> str:
    local, at, domain = value.partition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_phone(value: str) -> str:
    digits = [c for c in value if c.isdigit()]
    if len(digits) < 4:
        return "***"
    head = "+" + digits[0] if value.strip().startswith("+") else ""
    return f"{head}***{''.join(digits[-2:])}"


def mask_value(value: str) -> str:
    """An email or a phone, masked; any other text as it is."""
    if _EMAIL.fullmatch(value.strip()):
        return mask_email(value.strip())
    if _PHONE.match(value.strip()) and sum(c.isdigit() for c in value) >= 7:
        return mask_phone(value)
    return value


def mask_document(value: Any, key: str = "") -> Any:
    """A JSON document (event properties, traits) with every email and phone masked: the
    values under keys that name one, and any string that looks like one."""
    if isinstance(value, dict):
        return {k: mask_document(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_document(v, key) for v in value]
    if isinstance(value, str):
        lowered = key.lower()
        if "email" in lowered:
            return mask_email(value) if "@" in value else "***"
        if "phone" in lowered:
            return mask_phone(value)
        if "@" in value:
            return _EMAIL.sub(lambda m: mask_email(m.group(0)), value)
        return mask_value(value)
    return value
