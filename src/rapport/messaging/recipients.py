"""Where a customer is reached on each channel: the address a message goes to.

email → the card's email; sms → the card's phone (E.164); telegram → the chat linked
through the bot's deep link; webpush → the newest live browser subscription (its JSON);
push → the newest live FCM registration token. A webhook message has no customer address:
its URL comes from whoever sends it. None means the customer cannot be reached there.
"""

from __future__ import annotations

import sqlalchemy as sa
from orjson import dumps

from rapport.store.tables import customers, push_subscriptions, telegram_chats


def recipient_for(conn: sa.Connection, customer_id: int, channel: str) -> str | None:
    if channel in ("email", "sms"):
        column = customers.c.email if channel == "email" else customers.c.phone
        value = conn.execute(
            sa.select(column).where(customers.c.id == customer_id, customers.c.erased_at.is_(None))
        ).scalar_one_or_none()
        return str(value) if value else None
    if channel == "telegram":
        chat = conn.execute(
            sa.select(telegram_chats.c.chat_id)
            .where(
                telegram_chats.c.customer_id == customer_id,
                telegram_chats.c.stopped_at.is_(None),
            )
            .order_by(telegram_chats.c.linked_at.desc())
            .limit(1)
        ).scalar_one_or_none()
        return None if chat is None else str(chat)
    if channel in ("webpush", "push"):
        row = conn.execute(
            sa.select(push_subscriptions.c.endpoint, push_subscriptions.c["keys"])
            .where(
                push_subscriptions.c.customer_id == customer_id,
                push_subscriptions.c.kind == ("webpush" if channel == "webpush" else "fcm"),
                push_subscriptions.c.revoked_at.is_(None),
            )
            .order_by(push_subscriptions.c.updated_at.desc(), push_subscriptions.c.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        if channel == "push":
            return str(row.endpoint)
        return dumps({"endpoint": row.endpoint, "keys": row._mapping["keys"]}).decode()
    return None
