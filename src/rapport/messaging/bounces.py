"""Reading bounces and complaints: what a returned e-mail says happened, and to whom.

Mail that comes back to the envelope sender is free text by tradition and structured by
standard: a delivery status notification (DSN, RFC 3464) carries one block of fields per
recipient, a feedback report (ARF, RFC 5965) says a recipient marked the message as spam.
Both quote the original message, or its headers, and so its ``Message-ID``, which Rapport
built from the outbox idempotency key (``email_mime.message_id``); :func:`outbox_ref` is
the inverse that leads back to the outbox row.

Mail servers that predate the DSN (qmail, old Exim, some appliances) send a plain-text
notice instead. :func:`parse_report` reads those too, but only when the notice is
recognisably one (an ``X-Failed-Recipients`` header, a mailer-daemon sender or a failure
subject) and names a failed address: guessing from any mail that mentions an address would
suppress people because of an out-of-office reply.

Parsing is pure: nothing here touches the store. ``delivery_reports.apply_report`` acts on
the result.
"""

from __future__ import annotations

import email
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from email.parser import HeaderParser
from email.utils import parseaddr
from typing import Literal

from rapport.messaging.bounce_mime import (
    ENHANCED,
    SMTP_CODE,
    addresses,
    field_blocks,
    header,
    original_headers,
    original_message_id,
    parse_date,
    split_quoted,
    status_code,
    strip_type,
    text_of,
    typed_address,
    unfold,
)

# hard: the address will not work (suppress); soft: it may work later (count);
# delayed: the MTA is still trying (not an outcome yet); delivered: a positive DSN;
# complaint: the recipient reported the message as spam.
Outcome = Literal["hard", "soft", "delayed", "delivered", "complaint"]
Kind = Literal["bounce", "complaint", "feedback"]
Format = Literal["dsn", "arf", "plain"]

# Feedback types (RFC 5965 §7.3) that mean "this recipient does not want this mail";
# ``not-spam`` and ``auth-failure`` are feedback, not complaints.
COMPLAINT_TYPES = frozenset({"abuse", "fraud", "virus", "other"})

_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_LOCAL = re.compile(r"^rapport\.(?P<local>[^@\s]+)@(?P<domain>[^@\s>]+)$")
_ATEXT = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,200}$")
_DIGEST = re.compile(r"^[0-9a-f]{40}$")
# What a plain-text failure notice looks like from the outside.
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery", re.IGNORECASE)
_FAILURE_SUBJECT = re.compile(
    r"undeliver|delivery (status notification|fail)|failure notice|returned mail"
    r"|mail delivery failed|delivery has failed|could not be delivered|non.?delivery",
    re.IGNORECASE,
)
_PERMANENT_WORDS = re.compile(
    r"permanent|user unknown|unknown user|no such user|does not exist|doesn't exist"
    r"|mailbox unavailable|address rejected|invalid recipient|recipient rejected",
    re.IGNORECASE,
)


class UnparseableReport(ValueError):
    """The input is not a bounce or complaint this module can read; nothing was acted on."""


@dataclass(frozen=True)
class Recipient:
    """One recipient's fate, as the report states it."""

    address: str | None  # the recipient as reported (lower-case), None when redacted
    outcome: Outcome
    status: str | None = None  # enhanced status code, e.g. "5.1.1"
    action: str | None = None  # DSN Action: failed | delayed | delivered | relayed | expanded
    diagnostic: str | None = None
    original_address: str | None = None  # DSN Original-Recipient, when it differs


@dataclass(frozen=True)
class Report:
    kind: Kind
    format: Format
    # The original message's Message-ID, as quoted ("<…>"), or None when not found.
    message_id: str | None
    recipients: tuple[Recipient, ...]
    # Identifies the report itself (its own Message-ID, else a digest of its bytes), so the
    # same report read twice is recognised.
    report_id: str
    feedback_type: str | None = None
    reporter: str | None = None  # Reporting-MTA or the feedback User-Agent
    # When the original was written (its Date header): narrows the outbox search.
    original_date: datetime | None = None


@dataclass(frozen=True)
class OutboxRef:
    """What a Message-ID of ours says about the outbox key it was made from.

    ``key`` is the idempotency key itself when it was usable as is; ``digest`` is the
    40-hex SHA-256 prefix ``message_id`` uses for every other key (keys with ``:``, the
    usual kind). A 40-hex local part may be either, so both can be set.
    """

    key: str | None
    digest: str | None
    domain: str


def outbox_ref(message_id: str) -> OutboxRef | None:
    """The inverse of ``email_mime.message_id``; None for a Message-ID we did not make."""
    text = message_id.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    m = _LOCAL.match(text)
    if m is None:
        return None
    local, domain = m.group("local"), m.group("domain")
    literal = (
        local
        if _ATEXT.match(local)
        and ".." not in local
        and not local.startswith(".")
        and not local.endswith(".")
        else None
    )
    digest = local if _DIGEST.match(local) else None
    if literal is None and digest is None:
        return None
    return OutboxRef(literal, digest, domain)


def key_digest(key: str) -> str:
    """The hashed local part ``email_mime.message_id`` uses for a key it cannot embed."""
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def outcome_of(status: str | None, action: str | None = "failed") -> Outcome:
    """Hard or soft, from the DSN Action and the RFC 3463 status code.

    5.x.x is permanent and 4.x.x transient, with two exceptions, because suppressing on
    them would lose reachable people: X.2.2 "mailbox full" is a *persistent transient*
    failure in RFC 3463's own words (the owner can make room), and 5.7.x is a policy
    refusal that is usually about the sender (reputation, content, authentication), not
    the address. Both count as soft; an address that keeps failing is suppressed by the
    soft-bounce rule.
    """
    action = (action or "failed").lower()
    if action == "delayed":
        return "delayed"
    if action in ("delivered", "relayed", "expanded"):
        return "delivered"
    code = ENHANCED.search(status or "")
    if code is None:
        return "soft"
    klass, subject, detail = code.groups()
    if klass == "2":
        return "delivered"
    if klass == "4" or (subject, detail) == ("2", "2") or subject == "7":
        return "soft"
    return "hard"


def parse_report(raw: bytes) -> Report:
    """Read a returned message (DSN, ARF or a plain-text failure notice).

    Raises :class:`UnparseableReport` with the reason when the bytes are not one.
    """
    if not raw or not raw.strip():
        raise UnparseableReport("the message is empty")
    msg = email.message_from_bytes(raw)
    if not msg.keys():
        raise UnparseableReport("not an e-mail message: it has no headers")
    report_id = header(msg, "Message-ID") or f"sha256:{hashlib.sha256(raw).hexdigest()}"
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/feedback-report":
            return _arf(msg, part, report_id)
        if ctype == "message/delivery-status":
            return _dsn(msg, part, report_id)
    return _plain(msg, report_id)


# -- DSN (RFC 3464) ---------------------------------------------------------------------


def _dsn(msg: Message, status_part: Message, report_id: str) -> Report:
    blocks = field_blocks(status_part)
    if not blocks:
        raise UnparseableReport("the delivery-status part is empty")
    per_message, per_recipient = blocks[0], blocks[1:]
    if "final-recipient" in per_message or "action" in per_message:
        per_message, per_recipient = {}, blocks  # a report without per-message fields
    recipients = []
    for fields in per_recipient:
        final = typed_address(fields.get("final-recipient"))
        first = typed_address(fields.get("original-recipient"))
        if final is None and first is None:
            continue
        action = (fields.get("action") or "failed").split()[0].lower()
        diagnostic = unfold(fields.get("diagnostic-code"))
        status = status_code(fields.get("status"), diagnostic)
        recipients.append(
            Recipient(
                address=final or first,
                outcome=outcome_of(status, action),
                status=status,
                action=action,
                diagnostic=strip_type(diagnostic),
                original_address=first if first != final else None,
            )
        )
    if not recipients:
        raise UnparseableReport("the delivery-status part names no recipient")
    original = original_headers(msg)
    message_id = original_message_id(msg, original, per_message.get("x-original-message-id"))
    return Report(
        kind="bounce",
        format="dsn",
        message_id=message_id,
        recipients=tuple(recipients),
        report_id=report_id,
        reporter=strip_type(per_message.get("reporting-mta")),
        original_date=parse_date(original.get("Date") if original is not None else None),
    )


# -- ARF (RFC 5965) ---------------------------------------------------------------------


def _arf(msg: Message, feedback_part: Message, report_id: str) -> Report:
    blocks = field_blocks(feedback_part)
    fields = blocks[0] if blocks else {}
    feedback_type = (fields.get("feedback-type") or "").strip().lower()
    if not feedback_type:
        raise UnparseableReport("the feedback report has no Feedback-Type")
    original = original_headers(msg)
    rcpts = [a for a in addresses(fields.get("original-rcpt-to", "")) if a]
    if not rcpts and original is not None:
        rcpts = [a for a in addresses(original.get("To", "")) if a]
    message_id = original_message_id(msg, original, None)
    is_complaint = feedback_type in COMPLAINT_TYPES
    if is_complaint and message_id is None and not rcpts:
        raise UnparseableReport(
            "the complaint names neither the original message nor its recipient"
        )
    recipients: tuple[Recipient, ...]
    if is_complaint:
        recipients = tuple(Recipient(a, "complaint") for a in rcpts) or (
            Recipient(None, "complaint"),
        )
    else:
        recipients = ()
    return Report(
        kind="complaint" if is_complaint else "feedback",
        format="arf",
        message_id=message_id,
        recipients=recipients,
        report_id=report_id,
        feedback_type=feedback_type,
        reporter=fields.get("user-agent"),
        original_date=parse_date(original.get("Date") if original is not None else None),
    )


# -- plain-text failure notices --------------------------------------------------------


def _plain(msg: Message, report_id: str) -> Report:
    failed = [a for a in addresses(header(msg, "X-Failed-Recipients") or "") if a]
    sender = header(msg, "From") or ""
    subject = header(msg, "Subject") or ""
    looks_like_one = bool(failed) or bool(
        _DAEMON.search(sender) and _FAILURE_SUBJECT.search(subject)
    )
    if not looks_like_one:
        raise UnparseableReport(
            "not a bounce or complaint: no delivery-status or feedback-report part, no "
            "X-Failed-Recipients header, and not a failure notice from a mail server"
        )
    text = text_of(msg)
    notice, _, quoted = split_quoted(text)
    if not failed:
        failed = _failed_in_notice(notice)
    if not failed:
        raise UnparseableReport("the failure notice names no failed recipient")
    # The first failure code: a notice may also quote the 2.x.x of an earlier hop.
    codes = [m.group(0) for m in ENHANCED.finditer(notice) if m.group(1) in "45"]
    status = codes[0] if codes else None
    if status is None:
        basic = SMTP_CODE.search(notice)
        if basic is not None:
            status = f"{basic.group(1)}.0.0"
        elif _PERMANENT_WORDS.search(notice) or header(msg, "X-Failed-Recipients"):
            status = "5.0.0"  # Exim writes X-Failed-Recipients for permanent failures only
    diagnostic = _diagnostic_line(notice)
    original = HeaderParser().parsestr(quoted) if quoted else None
    message_id = original_message_id(msg, original if original and original.keys() else None, None)
    return Report(
        kind="bounce",
        format="plain",
        message_id=message_id,
        recipients=tuple(
            Recipient(a, outcome_of(status), status=status, action="failed", diagnostic=diagnostic)
            for a in dict.fromkeys(failed)
        ),
        report_id=report_id,
        reporter=parseaddr(sender)[1] or None,
        original_date=parse_date(original.get("Date") if original is not None else None),
    )


def _failed_in_notice(notice: str) -> list[str]:
    """Addresses the notice reports as failed: qmail's ``<addr>:`` lines, or addresses on
    lines carrying an SMTP failure code."""
    found = [m.group(1).lower() for m in re.finditer(r"^<([^<>\s]+@[^<>\s]+)>:", notice, re.M)]
    if found:
        return found
    for line in notice.splitlines():
        if ENHANCED.search(line) or SMTP_CODE.search(line):
            found += [a.lower() for a in _ADDRESS.findall(line)]
    return found


def _diagnostic_line(notice: str) -> str | None:
    for line in notice.splitlines():
        if ENHANCED.search(line) or SMTP_CODE.search(line):
            return line.strip()[:1000] or None
    return None
