"""analytics: one row per message with its outcomes, a daily roll-up, order attribution,
and the predicted-CLV fields on the card

Revision ID: 0008
Revises: 0007

Create Date: 2026-11-22 17:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import rapport.store.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

OUTCOMES = (
    "queued",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "bounced",
    "complained",
    "unsubscribed",
    "failed",
)


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    moment = rapport.store.types.UTCDateTime(timezone=True)
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("predicted_clv", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("expected_purchases_90d", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("churn_risk", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("clv_scored_at", moment, nullable=True))

    op.create_table(
        "message_facts",
        sa.Column("message_key", sa.String(length=300), nullable=False),
        sa.Column("customer_id", big_id, nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("campaign_id", sa.String(length=100), nullable=True),
        sa.Column("scenario_id", sa.String(length=100), nullable=True),
        sa.Column("step", sa.String(length=100), nullable=True),
        sa.Column("template_id", sa.String(length=100), nullable=True),
        sa.Column("variant", sa.String(length=100), nullable=True),
        sa.Column("day", sa.Date(), nullable=False),
        *[sa.Column(f"{name}_at", moment, nullable=True) for name in OUTCOMES],
        sa.Column("opens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("clicks", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("message_key", name=op.f("pk_message_facts")),
    )
    op.create_index("ix_message_facts_customer", "message_facts", ["customer_id", "sent_at"])
    op.create_index("ix_message_facts_day", "message_facts", ["day"])
    op.create_index("ix_message_facts_campaign", "message_facts", ["campaign_id"])
    op.create_index("ix_message_facts_scenario", "message_facts", ["scenario_id", "step"])

    op.create_table(
        "message_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("campaign_id", sa.String(length=100), nullable=False),
        sa.Column("scenario_id", sa.String(length=100), nullable=False),
        sa.Column("step", sa.String(length=100), nullable=False),
        sa.Column("variant", sa.String(length=100), nullable=False),
        *[sa.Column(name, sa.Integer(), server_default="0", nullable=False) for name in OUTCOMES],
        sa.PrimaryKeyConstraint(
            "day",
            "channel",
            "campaign_id",
            "scenario_id",
            "step",
            "variant",
            name=op.f("pk_message_daily"),
        ),
    )

    op.create_table(
        "order_attributions",
        sa.Column("order_pk", big_id, nullable=False),
        sa.Column("customer_id", big_id, nullable=False),
        sa.Column("occurred_at", moment, nullable=False),
        sa.Column("message_key", sa.String(length=300), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("campaign_id", sa.String(length=100), nullable=True),
        sa.Column("scenario_id", sa.String(length=100), nullable=True),
        sa.Column("step", sa.String(length=100), nullable=True),
        sa.Column("variant", sa.String(length=100), nullable=True),
        sa.Column("message_day", sa.Date(), nullable=False),
        sa.Column("model", sa.String(length=8), nullable=False),
        sa.Column("touch_at", moment, nullable=False),
        sa.PrimaryKeyConstraint("order_pk", name=op.f("pk_order_attributions")),
    )
    op.create_index("ix_order_attributions_time", "order_attributions", ["occurred_at"])
    op.create_index("ix_order_attributions_day", "order_attributions", ["message_day"])
    op.create_index("ix_order_attributions_campaign", "order_attributions", ["campaign_id"])
    op.create_index("ix_order_attributions_scenario", "order_attributions", ["scenario_id", "step"])
    op.create_index("ix_orders_occurred_at", "orders", ["occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_orders_occurred_at", table_name="orders")
    op.drop_table("order_attributions")
    op.drop_table("message_daily")
    op.drop_table("message_facts")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        for name in ("clv_scored_at", "churn_risk", "expected_purchases_90d", "predicted_clv"):
            batch_op.drop_column(name)
