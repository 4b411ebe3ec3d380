"""the ingest inbox: requests acknowledged before they are applied (queued ingest)

Revision ID: 0016
Revises: 0015

Create Date: 2026-11-24 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import rapport.store.types

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    moment = rapport.store.types.UTCDateTime(timezone=True)
    op.create_table(
        "ingest_inbox",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("received_at", moment, nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failed_at", moment, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("ingest_inbox")
