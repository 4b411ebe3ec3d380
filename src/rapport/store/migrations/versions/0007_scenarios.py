"""scenarios, their versions, runs, the step log and account-manager tasks

Revision ID: 0007
Revises: 0006

Create Date: 2026-11-22 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import rapport.store.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

LIVE = sa.text("status IN ('active', 'waiting')")


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    moment = rapport.store.types.UTCDateTime(timezone=True)
    op.create_table(
        "scenarios",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("definition", json, nullable=False),
        sa.Column("created_at", moment, nullable=False),
        sa.Column("updated_at", moment, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scenarios")),
        sa.UniqueConstraint("name", name=op.f("uq_scenarios_name")),
    )
    op.create_table(
        "scenario_versions",
        sa.Column("scenario_id", big_id, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("definition", json, nullable=False),
        sa.Column("created_at", moment, nullable=False),
        sa.PrimaryKeyConstraint("scenario_id", "version", name=op.f("pk_scenario_versions")),
    )
    op.create_table(
        "scenario_runs",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("scenario_id", big_id, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("customer_id", big_id, nullable=False),
        sa.Column("entity_key", sa.String(length=200), server_default="", nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=True),
        sa.Column("wake_at", moment, nullable=True),
        sa.Column("waiting_event", sa.String(length=200), nullable=True),
        sa.Column("context", json, nullable=False),
        sa.Column("started_at", moment, nullable=False),
        sa.Column("updated_at", moment, nullable=False),
        sa.Column("ended_at", moment, nullable=True),
        sa.Column("end_reason", sa.String(length=200), nullable=True),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("claimed_until", moment, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scenario_runs")),
    )
    op.create_index("ix_scenario_runs_due", "scenario_runs", ["status", "wake_at"])
    op.create_index("ix_scenario_runs_customer", "scenario_runs", ["customer_id", "scenario_id"])
    op.create_index(
        "uq_scenario_runs_live",
        "scenario_runs",
        ["scenario_id", "customer_id", "entity_key"],
        unique=True,
        postgresql_where=LIVE,
        sqlite_where=LIVE,
    )
    op.create_table(
        "scenario_step_log",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("run_id", big_id, nullable=False),
        sa.Column("scenario_id", big_id, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("customer_id", big_id, nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=True),
        sa.Column("at", moment, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scenario_step_log")),
    )
    op.create_index(op.f("ix_scenario_step_log_run_id"), "scenario_step_log", ["run_id"])
    op.create_index(
        "ix_scenario_step_log_stats", "scenario_step_log", ["scenario_id", "step", "outcome"]
    )
    op.create_table(
        "tasks",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("customer_id", big_id, nullable=False),
        sa.Column("scenario_id", big_id, nullable=True),
        sa.Column("run_id", big_id, nullable=True),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("assignee", sa.String(length=200), nullable=True),
        sa.Column("created_at", moment, nullable=False),
        sa.Column("done_at", moment, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    op.create_index(op.f("ix_tasks_customer_id"), "tasks", ["customer_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_tasks_customer_id"), table_name="tasks")
    op.drop_table("tasks")
    op.drop_index("ix_scenario_step_log_stats", table_name="scenario_step_log")
    op.drop_index(op.f("ix_scenario_step_log_run_id"), table_name="scenario_step_log")
    op.drop_table("scenario_step_log")
    op.drop_index("uq_scenario_runs_live", table_name="scenario_runs")
    op.drop_index("ix_scenario_runs_customer", table_name="scenario_runs")
    op.drop_index("ix_scenario_runs_due", table_name="scenario_runs")
    op.drop_table("scenario_runs")
    op.drop_table("scenario_versions")
    op.drop_table("scenarios")
