"""Initial schema: evaluations, runs, events, comparisons.

Revision ID: 0001_initial
Revises:
Create Date: 2025-11-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the enums at this revision: a migration must not change when the code does.
STATUSES = ("queued", "running", "completed", "failed", "timeout", "cancelled", "error")
BACKENDS = ("legacy", "celery")
ROLES = ("primary", "shadow")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _eval_fk() -> sa.Column:
    return sa.Column(
        "eval_id",
        sa.String(64),
        sa.ForeignKey("evaluations.eval_id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("eval_id", sa.String(64), primary_key=True),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("language", sa.String(32), nullable=False),
        sa.Column("timeout", sa.Float(), nullable=False),
        sa.Column("stdin", sa.Text(), nullable=True),
        sa.Column("memory_mb", sa.Integer(), nullable=True),
        sa.Column("priority", sa.Boolean(), nullable=False),
        sa.Column("routing_key", sa.String(200), nullable=True),
        _timestamp("created_at"),
    )
    op.create_index("ix_evaluations_created_at", "evaluations", ["created_at"])

    op.create_table(
        "runs",
        _eval_fk(),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("backend", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("executor_id", sa.String(128), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("output_truncated", sa.Boolean(), nullable=False),
        sa.Column("error_truncated", sa.Boolean(), nullable=False),
        sa.Column("runtime_ms", sa.Float(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        _timestamp("created_at"),
        _timestamp("started_at", nullable=True),
        _timestamp("completed_at", nullable=True),
        sa.PrimaryKeyConstraint("eval_id", "role", name="pk_runs"),
        sa.CheckConstraint(_one_of("role", ROLES), name="ck_runs_role"),
        sa.CheckConstraint(_one_of("backend", BACKENDS), name="ck_runs_backend"),
        sa.CheckConstraint(_one_of("status", STATUSES), name="ck_runs_status"),
        sa.CheckConstraint("attempts >= 0", name="ck_runs_attempts"),
    )
    op.create_index("ix_runs_role_status", "runs", ["role", "status"])
    op.create_index("ix_runs_role_backend", "runs", ["role", "backend"])

    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        _eval_fk(),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("status", sa.String(16), nullable=True),
        _timestamp("at"),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_events_eval_id_id", "events", ["eval_id", "id"])

    op.create_table(
        "comparisons",
        _eval_fk(),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("differing_fields", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("eval_id", name="pk_comparisons"),
    )


def downgrade() -> None:
    op.drop_table("comparisons")
    op.drop_index("ix_events_eval_id_id", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_runs_role_backend", table_name="runs")
    op.drop_index("ix_runs_role_status", table_name="runs")
    op.drop_table("runs")
    op.drop_index("ix_evaluations_created_at", table_name="evaluations")
    op.drop_table("evaluations")
