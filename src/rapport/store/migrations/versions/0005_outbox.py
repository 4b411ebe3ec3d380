"""delivery outbox

Revision ID: 0005
Revises: 0004

One row per message to send, keyed by an idempotency key, with its rendered content,
status, attempts, next attempt time, fallback chain and the lease of the dispatcher
sending it (messaging/outbox.py).

Create Date: 2026-11-23 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import rapport.store.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    moment = rapport.store.types.UTCDateTime(timezone=True)
    op.create_table(
        "outbox",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.String(length=300), nullable=False),
        sa.Column("customer_id", big_id, nullable=True),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=True),
        sa.Column("headers", json, nullable=False),
        sa.Column("data", json, nullable=False),
        sa.Column("campaign_id", sa.String(length=100), nullable=True),
        sa.Column("scenario_id", sa.String(length=100), nullable=True),
        sa.Column("step", sa.String(length=100), nullable=True),
        sa.Column("template_id", sa.String(length=100), nullable=True),
        sa.Column("variant", sa.String(length=100), nullable=True),
        sa.Column("fallback", json, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", moment, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("provider_id", sa.String(length=300), nullable=True),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("claimed_until", moment, nullable=True),
        sa.Column("created_at", moment, nullable=False),
        sa.Column("updated_at", moment, nullable=False),
        sa.Column("sent_at", moment, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_outbox_idempotency_key")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_due", ["channel", "status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(op.f("ix_outbox_customer_id"), ["customer_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(op.f("ix_outbox_customer_id"))
        batch_op.drop_index("ix_outbox_due")
    op.drop_table("outbox")
