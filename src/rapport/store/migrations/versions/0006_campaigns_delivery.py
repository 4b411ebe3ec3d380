"""campaigns, suppressions, push subscriptions, telegram chats, webhook subscriptions

Revision ID: 0006
Revises: 0005

Campaigns and their frozen audience (variant per customer, the control group), the
suppression list that bounces and complaints feed, where push and Telegram messages go,
and outgoing event subscriptions.

Create Date: 2026-11-22 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import rapport.store.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    moment = rapport.store.types.UTCDateTime(timezone=True)
    op.create_table(
        "campaigns",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("segment_id", big_id, nullable=False),
        sa.Column("variants", json, nullable=False),
        sa.Column("control_percent", sa.Float(), server_default="0", nullable=False),
        sa.Column("fallback", json, nullable=False),
        sa.Column("send_at", moment, nullable=True),
        sa.Column("local_hour", sa.SmallInteger(), nullable=True),
        sa.Column("throttle_per_minute", sa.Integer(), nullable=True),
        sa.Column("options", json, nullable=False),
        sa.Column("created_at", moment, nullable=False),
        sa.Column("updated_at", moment, nullable=False),
        sa.Column("started_at", moment, nullable=True),
        sa.Column("finished_at", moment, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("name", name=op.f("uq_campaigns_name")),
    )
    op.create_table(
        "campaign_audience",
        sa.Column("campaign_id", big_id, nullable=False),
        sa.Column("customer_id", big_id, nullable=False),
        sa.Column("variant", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("updated_at", moment, nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "customer_id", name=op.f("pk_campaign_audience")),
    )
    op.create_index("ix_campaign_audience_status", "campaign_audience", ["campaign_id", "status"])
    op.create_table(
        "suppressions",
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("details", json, nullable=False),
        sa.Column("created_at", moment, nullable=False),
        sa.PrimaryKeyConstraint("channel", "address", name=op.f("pk_suppressions")),
    )
    op.create_table(
        "push_subscriptions",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("customer_id", big_id, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("endpoint", sa.String(length=2000), nullable=False),
        sa.Column("keys", json, nullable=False),
        sa.Column("user_agent", sa.String(length=500), nullable=True),
        sa.Column("created_at", moment, nullable=False),
        sa.Column("updated_at", moment, nullable=False),
        sa.Column("revoked_at", moment, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_subscriptions")),
        sa.UniqueConstraint("endpoint", name=op.f("uq_push_subscriptions_endpoint")),
    )
    op.create_index(
        op.f("ix_push_subscriptions_customer_id"), "push_subscriptions", ["customer_id"]
    )
    op.create_table(
        "telegram_chats",
        sa.Column("chat_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", big_id, nullable=False),
        sa.Column("username", sa.String(length=200), nullable=True),
        sa.Column("linked_at", moment, nullable=False),
        sa.Column("stopped_at", moment, nullable=True),
        sa.PrimaryKeyConstraint("chat_id", name=op.f("pk_telegram_chats")),
    )
    op.create_index(op.f("ix_telegram_chats_customer_id"), "telegram_chats", ["customer_id"])
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("event_names", json, nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", moment, nullable=False),
        sa.Column("updated_at", moment, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_subscriptions")),
        sa.UniqueConstraint("name", name=op.f("uq_webhook_subscriptions_name")),
    )


def downgrade() -> None:
    op.drop_table("webhook_subscriptions")
    op.drop_index(op.f("ix_telegram_chats_customer_id"), table_name="telegram_chats")
    op.drop_table("telegram_chats")
    op.drop_index(op.f("ix_push_subscriptions_customer_id"), table_name="push_subscriptions")
    op.drop_table("push_subscriptions")
    op.drop_table("suppressions")
    op.drop_index("ix_campaign_audience_status", table_name="campaign_audience")
    op.drop_table("campaign_audience")
    op.drop_table("campaigns")
