"""The e-mail a message becomes: MIME, stable Message-ID, RFC 8058 headers, DKIM.

Kept apart from the SMTP transport so a provider backend with an HTTP API can send the
same bytes, and so the exact bytes DKIM signed are the bytes that go on the wire.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Literal

import dkim

from rapport.messaging.channels.base import OutgoingMessage

# Headers a DKIM signature covers. The List-Unsubscribe pair is required by RFC 8058 §4
# (a one-click link that a relay could rewrite would unsubscribe the wrong person); naming
# a header that is absent also signs its absence, so nobody can add one later.
SIGNED_HEADERS = (
    b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type",
    b"reply-to", b"cc", b"list-unsubscribe", b"list-unsubscribe-post", b"list-id",
)  # fmt: skip
# Headers the backend writes itself; a message's own ``headers`` cannot override them.
RESERVED = {
    "from", "to", "subject", "date", "message-id", "mime-version", "content-type",
    "content-transfer-encoding", "list-unsubscribe", "list-unsubscribe-post", "dkim-signature",
}  # fmt: skip
_ATEXT = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,200}$")


@dataclass(frozen=True)
class DkimKey:
    """One signing key: ``d=`` domain, ``s=`` selector, and the private key.

    ``rsa``: a PEM private key (2048 bits or more). ``ed25519`` (RFC 8463): the base64
    32-byte seed, as dkimpy's ``dknewkey --ktype ed25519`` writes it. Signing with both
    is the usual way to offer Ed25519 while receivers that only know RSA still verify.
    """

    domain: str
    selector: str
    private_key: bytes
    algorithm: Literal["rsa", "ed25519"] = "rsa"

    def sign(self, message: bytes) -> bytes:
        """The ``DKIM-Signature:`` header line (with CRLF) for ``message``."""
        return dkim.sign(
            message,
            self.selector.encode(),
            self.domain.encode(),
            self.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=b"ed25519-sha256" if self.algorithm == "ed25519" else b"rsa-sha256",
            include_headers=list(SIGNED_HEADERS),
        )


def message_id(outgoing_id: str, domain: str) -> str:
    """``<…@domain>`` from the outbox id, the same on every retry, so duplicates show."""
    local = outgoing_id if _ATEXT.match(outgoing_id) and ".." not in outgoing_id else None
    if local is None or local.startswith(".") or local.endswith("."):
        local = hashlib.sha256(outgoing_id.encode()).hexdigest()[:40]
    return f"<rapport.{local}@{domain}>"


def unsubscribe_headers(msg: OutgoingMessage) -> dict[str, str]:
    """``List-Unsubscribe`` (+ ``-Post`` for one-click, RFC 8058) from ``data``.

    ``data["unsubscribe_url"]`` must be https for one-click; ``data["unsubscribe_mailto"]``
    is an optional address for clients that only do mail.
    """
    url = msg.data.get("unsubscribe_url")
    mailto = msg.data.get("unsubscribe_mailto")
    targets = []
    if isinstance(url, str) and url:
        targets.append(f"<{url}>")
    if isinstance(mailto, str) and mailto:
        targets.append(f"<mailto:{mailto.removeprefix('mailto:')}>")
    if not targets:
        return {}
    headers = {"List-Unsubscribe": ", ".join(targets)}
    if isinstance(url, str) and url.startswith("https://"):
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers


def build_email(
    msg: OutgoingMessage,
    *,
    sender: str,
    id_domain: str,
    keys: Sequence[DkimKey] = (),
    now: datetime | None = None,
) -> bytes:
    """The bytes to send: multipart/alternative (text + HTML) when there is HTML, signed."""
    email = EmailMessage(policy=policy.SMTP)
    email["From"] = msg.headers.get("From") or sender
    email["To"] = msg.to
    email["Subject"] = msg.subject or ""
    email["Date"] = format_datetime(now or datetime.now(UTC))
    email["Message-ID"] = message_id(msg.id, id_domain)
    for name, value in unsubscribe_headers(msg).items():
        email[name] = value
    for name, value in msg.headers.items():
        if name.lower() not in RESERVED:
            email[name] = value
    email.set_content(msg.body_text or "", subtype="plain", charset="utf-8")
    if msg.body_html:
        email.add_alternative(msg.body_html, subtype="html", charset="utf-8")
    raw = email.as_bytes()
    signatures = b"".join(key.sign(raw) for key in keys)
    return signatures + raw


def envelope_sender(msg: OutgoingMessage, sender: str) -> str:
    """The MAIL FROM address: ``data["return_path"]`` (for bounce handling) or From's."""
    explicit = msg.data.get("return_path")
    if isinstance(explicit, str) and explicit:
        return explicit
    return parseaddr(msg.headers.get("From") or sender)[1]


def address(display: str, addr: str) -> str:
    """``"Shop" <news@shop.example>`` with the display name encoded as needed."""
    user, _, domain = addr.partition("@")
    return str(Address(display_name=display, username=user, domain=domain))
