"""Finding the outbox row a delivery report is about.

A report names a message the way its source knows it: a bounce quotes the Message-ID we
gave the e-mail, a provider's webhook usually sends our idempotency key back, an SMSC's
receipt names the id it gave one part of an SMS.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rapport.messaging.bounces import key_digest, outbox_ref
from rapport.messaging.suppressions import normalize_address
from rapport.store.tables import customers, identities, outbox

# How far a message's send time may be from the Date header it carries.
_NEAR = timedelta(days=2)


def find_by_key(conn: sa.Connection, key: str) -> Any | None:
    return conn.execute(sa.select(outbox).where(outbox.c.idempotency_key == key)).first()


def find_message(conn: sa.Connection, ref: str, addresses: Sequence[str] = ()) -> Any | None:
    """The outbox row for an idempotency key or for the Message-ID we gave an e-mail."""
    text = ref.strip()
    row = find_by_key(conn, text)
    if row is None and "@" in text:
        bracketed = text if text.startswith("<") else f"<{text}>"
        row = find_email_message(conn, bracketed, addresses)
    return row


def find_email_message(
    conn: sa.Connection,
    message_id: str,
    addresses: Sequence[str] = (),
    sent_near: datetime | None = None,
) -> Any | None:
    """The outbox row an e-mail's Message-ID was made from, or None if it is not ours.

    Keys that fit a Message-ID are in it verbatim: one indexed lookup. Every other key
    (anything with ``:``) is in it as a SHA-256 prefix, which only hashing the candidates
    can match: first the messages of the customers who own the reported addresses (an
    indexed lookup, and what a DSN always names), then the e-mails sent within two days of
    the original's ``Date`` (complaints often hide the recipient). On PostgreSQL the
    hashing runs in the database.
    """
    ref = outbox_ref(message_id)
    if ref is None:
        return None
    if ref.key is not None:
        row = find_by_key(conn, ref.key)
        if row is not None and row.channel == "email":
            return row
    if ref.digest is None:
        return None
    owners = address_owners(conn, "email", [normalize_address("email", a) for a in addresses])
    if owners:
        candidates = conn.execute(
            sa.select(outbox).where(outbox.c.customer_id.in_(owners), outbox.c.channel == "email")
        )
        for row in candidates:
            if key_digest(row.idempotency_key) == ref.digest:
                return row
    where = [outbox.c.channel == "email", outbox.c.status == "sent"]
    if sent_near is not None:
        where.append(outbox.c.sent_at.between(sent_near - _NEAR, sent_near + _NEAR))
    if conn.dialect.name == "postgresql":
        utf8 = sa.func.convert_to(outbox.c.idempotency_key, sa.literal("UTF8"))
        hashed = sa.func.substr(sa.func.encode(sa.func.sha256(utf8), sa.literal("hex")), 1, 40)
        return conn.execute(sa.select(outbox).where(*where, hashed == ref.digest).limit(1)).first()
    for row_id, key in conn.execute(sa.select(outbox.c.id, outbox.c.idempotency_key).where(*where)):
        if key_digest(key) == ref.digest:
            return conn.execute(sa.select(outbox).where(outbox.c.id == row_id)).first()
    return None


def find_by_smsc_id(conn: sa.Connection, smsc_id: str) -> Any | None:
    """The SMS whose comma-separated ``provider_id`` lists this SMSC message id."""
    pid = outbox.c.provider_id
    return conn.execute(
        sa.select(outbox)
        .where(
            outbox.c.channel == "sms",
            sa.or_(
                pid == smsc_id,
                pid.startswith(f"{smsc_id},", autoescape=True),
                pid.endswith(f",{smsc_id}", autoescape=True),
                pid.contains(f",{smsc_id},", autoescape=True),
            ),
        )
        .order_by(outbox.c.id.desc())
        .limit(1)
    ).first()


def address_owners(conn: sa.Connection, channel: str, addresses: Sequence[str]) -> list[int]:
    """Customers with this address as an identity or on their card."""
    kind = {"email": "email", "sms": "phone"}.get(channel)
    values = sorted({a for a in addresses if a})
    if kind is None or not values:
        return []
    found = set(
        conn.execute(
            sa.select(identities.c.customer_id).where(
                identities.c.kind == kind, identities.c.value.in_(values)
            )
        ).scalars()
    )
    column = customers.c.email if kind == "email" else customers.c.phone
    found.update(
        conn.execute(
            sa.select(customers.c.id).where(
                column.in_(values),
                customers.c.merged_into.is_(None),
                customers.c.erased_at.is_(None),
            )
        ).scalars()
    )
    return sorted(int(c) for c in found)
