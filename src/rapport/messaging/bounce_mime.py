"""The pieces of a returned e-mail that bounce parsing reads, whatever its format.

Bounces come from every kind of mail server, so each helper here is lenient: it decodes
what it can (encoded headers, quoted-printable and base64 parts, unknown charsets) and
answers None rather than raising, leaving ``bounces`` to decide what is missing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

# RFC 3463 enhanced status codes ("5.1.1") and basic SMTP failure replies ("550 ").
ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
SMTP_CODE = re.compile(r"(?<![\d.])([45])\d\d(?=[ -])")
# A Message-ID Rapport made (``email_mime.message_id``).
OUR_ID = re.compile(r"<rapport\.[^<>\s@]+@[^<>\s]+>")
MESSAGE_ID_LINE = re.compile(r"^message-id:[ \t]*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)
# The line a plain-text notice puts above the copy of the original message.
QUOTE_MARKERS = re.compile(
    r"^-{2,}.*(below this line|copy of the message|original message|returned message|"
    r"undelivered message|message headers).*$",
    re.IGNORECASE | re.MULTILINE,
)


def split_quoted(text: str) -> tuple[str, str, str]:
    """(the notice, the marker, the quoted original) — the quote starts at a marker line."""
    m = QUOTE_MARKERS.search(text)
    if m is None:
        return text, "", ""
    return text[: m.start()], m.group(0), text[m.end() :].lstrip("\r\n")


def field_blocks(part: Message) -> list[dict[str, str]]:
    """The header blocks of a delivery-status or feedback-report part, keys lower-case.

    The parser splits ``message/delivery-status`` into blocks itself; a part that arrived
    encoded (base64 happens, against the RFC) is decoded and split here.
    """
    payload = part.get_payload()
    if isinstance(payload, list):
        return [_fields(b) for b in payload if isinstance(b, Message) and b.keys()]
    raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
    blocks = [HeaderParser().parsestr(chunk) for chunk in re.split(r"\r?\n\s*\r?\n", text.strip())]
    return [_fields(block) for block in blocks if block.keys()]


def _fields(block: Message) -> dict[str, str]:
    """Lower-case names; a repeated field (``Original-Rcpt-To``) keeps every value."""
    fields: dict[str, str] = {}
    for name, value in block.items():
        text = unfold(str(value)) or ""
        key = name.lower()
        fields[key] = f"{fields[key]}, {text}" if key in fields else text
    return fields


def original_headers(msg: Message) -> Message | None:
    """The returned original (``message/rfc822``) or its headers (``text/rfc822-headers``)."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
        elif ctype in ("text/rfc822-headers", "message/rfc822-headers"):
            raw = part.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
            headers = HeaderParser().parsestr(text)
            if headers.keys():
                return headers
    return None


def original_message_id(msg: Message, original: Message | None, hinted: str | None) -> str | None:
    """The original's Message-ID: from the quoted headers, else ours found anywhere.

    Ours (``<rapport.…>``) win over any other id, because a report quoting a forwarded
    message can carry several.
    """
    candidates: list[str] = []
    if original is not None:
        candidates += _ids(header(original, "Message-ID"))
    candidates += _ids(hinted)
    for name in ("In-Reply-To", "References"):
        candidates += [i for i in _ids(header(msg, name)) if OUR_ID.fullmatch(i)]
    ours = [c for c in candidates if OUR_ID.fullmatch(c)]
    if ours:
        return ours[0]
    text = text_of(msg)
    found = OUR_ID.search(text)
    if found is not None:
        return found.group(0)
    if candidates:
        return candidates[0]
    quoted = MESSAGE_ID_LINE.findall(split_quoted(text)[2])
    return quoted[0] if quoted else None


def _ids(value: str | None) -> list[str]:
    return re.findall(r"<[^<>\s]+>", value or "")


def text_of(msg: Message) -> str:
    """Every text part, decoded, for the searches a structure-less notice needs."""
    pieces = []
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() not in ("text", "message"):
            continue
        if isinstance(part.get_payload(), list):
            continue
        raw = part.get_payload(decode=True)
        if not isinstance(raw, bytes):
            continue
        charset = part.get_content_charset() or "utf-8"
        try:
            pieces.append(raw.decode(charset, "replace"))
        except LookupError:
            pieces.append(raw.decode("utf-8", "replace"))
    return "\n".join(pieces)


def header(msg: Message, name: str) -> str | None:
    value = msg.get(name)
    if value is None:
        return None
    try:
        text = str(make_header(decode_header(str(value))))
    except (UnicodeDecodeError, LookupError, ValueError, HeaderParseError):
        text = str(value)
    return unfold(text)


def unfold(value: str | None) -> str | None:
    if value is None:
        return None
    text = re.sub(r"\s+", " ", value).strip()
    return text or None


def strip_type(value: str | None) -> str | None:
    """``smtp; 550 …`` → ``550 …``; ``dns; mx.example`` → ``mx.example``."""
    if value is None:
        return None
    kind, sep, rest = value.partition(";")
    if sep and re.fullmatch(r"[A-Za-z0-9-]+", kind.strip()):
        return rest.strip() or None
    return value.strip() or None


def typed_address(value: str | None) -> str | None:
    """``rfc822; <Bob@Example.org>`` → ``bob@example.org``."""
    text = strip_type(value)
    if not text:
        return None
    address = parseaddr(text)[1] or text.strip("<> ")
    return address.lower() if "@" in address else None


def addresses(value: str) -> list[str]:
    return [a.lower() for _, a in getaddresses([value]) if "@" in a]


def status_code(status: str | None, diagnostic: str | None) -> str | None:
    for text in (status, diagnostic):
        m = ENHANCED.search(text or "")
        if m is not None:
            return m.group(0)
    m = SMTP_CODE.search(diagnostic or "")
    return f"{m.group(1)}.0.0" if m else None


def parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    # "-0000" (RFC 5322: UTC, local zone unknown) parses as naive.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
