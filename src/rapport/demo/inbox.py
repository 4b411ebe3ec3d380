"""Reading the demo's caught mail the way a recipient's mail client would.

The simulation learns what arrived from the mail catcher's Maildir, not from the outbox:
which message it was (the key signed into its open pixel), and what it showed (the
product pages its tracked links lead to). Each message read is moved from ``new/`` to
``cur/``, as a mail client does, so the next look finds only what arrived since.
"""

from __future__ import annotations

import binascii
import email
import os
import re
from dataclasses import dataclass
from email import policy
from pathlib import Path
from urllib.parse import unquote

from rapport.demo.catalog import SHOP_URL
from rapport.messaging.tracking import BadToken, verify

_TRACKED = re.compile(r"/t/([oc])/([A-Za-z0-9_\-.%]+)")
_PRODUCT = re.compile(re.escape(SHOP_URL) + r"/p/([A-Za-z0-9_\-]+)")


@dataclass(frozen=True)
class Caught:
    """One e-mail in the catcher: the outbox key it was sent under and where it links."""

    key: str
    recipients: tuple[str, ...]
    links: tuple[str, ...]  # the targets of its tracked links, in order
    product_ids: tuple[str, ...]


_BLANK = re.compile(rb"\r?\n\r?\n")
_DELIVERED_TO = re.compile(rb"^Delivered-To: *(\S+?)\r?$", re.MULTILINE | re.IGNORECASE)
_BOUNDARY = re.compile(rb'boundary="?([^"\r\n;]+)"?', re.IGNORECASE)
_HTML_PART = re.compile(rb"^Content-Type: *text/html", re.MULTILINE | re.IGNORECASE)


def _html(raw: bytes) -> tuple[str, tuple[str, ...]]:
    """The HTML part, decoded, and the envelope recipients.

    Rapport's own e-mails carry their HTML quoted-printable: that part is cut out and
    decoded directly, a tenth of what parsing the whole MIME tree costs; anything else
    goes through the standard parser.
    """
    fast = _quoted_printable_html(raw)
    if fast is not None:
        return fast
    message = email.message_from_bytes(raw, policy=policy.compat32)
    recipients = tuple(str(v) for v in message.get_all("Delivered-To", []))
    for part in message.walk():
        if part.get_content_type() == "text/html":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                charset = part.get_content_charset() or "utf-8"
                return payload.decode(charset, "replace"), recipients
    return "", recipients


def _quoted_printable_html(raw: bytes) -> tuple[str, tuple[str, ...]] | None:
    head = _BLANK.search(raw)
    part = _HTML_PART.search(raw)
    if head is None or part is None:
        return None
    body_at = _BLANK.search(raw, part.start())
    if body_at is None:
        return None
    part_head = raw[part.start() : body_at.start()].lower()
    if b"quoted-printable" not in part_head or b"utf-8" not in part_head:
        return None
    boundary = _BOUNDARY.search(raw, 0, head.start())
    if boundary is None:
        return None
    end = raw.find(b"\n--" + boundary.group(1), body_at.end())
    body = binascii.a2b_qp(raw[body_at.end() : end if end >= 0 else len(raw)])
    recipients = tuple(
        r.decode("ascii", "replace") for r in _DELIVERED_TO.findall(raw[: head.start()])
    )
    return body.decode("utf-8", "replace"), recipients


def read(raw: bytes, key: bytes) -> Caught | None:
    """What one caught e-mail says; None when it carries no genuine open pixel of ours."""
    html, recipients = _html(raw)
    message_key: str | None = None
    links: list[str] = []
    for kind, token in _TRACKED.findall(html):
        try:
            parts = verify(key, kind, unquote(token))
        except BadToken:
            continue
        if kind == "o":
            message_key = parts[0]
        elif len(parts) == 2 and parts[1] not in links:
            links.append(parts[1])
    if message_key is None:
        return None
    products = tuple(dict.fromkeys(m for link in links for m in _PRODUCT.findall(link)))
    return Caught(message_key, recipients, tuple(links), products)


def collect(directory: Path, key: bytes) -> list[Caught]:
    """Every message delivered since the last look, oldest file name first."""
    new, cur = directory / "new", directory / "cur"
    if not new.is_dir():
        return []
    cur.mkdir(exist_ok=True)
    found: list[Caught] = []
    for name in sorted(os.listdir(new)):
        path = new / name
        caught = read(path.read_bytes(), key)
        os.replace(path, cur / f"{name}:2,")
        if caught is not None:
            found.append(caught)
    return found
