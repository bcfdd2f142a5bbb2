"""The audit log of settings changes, kept in the database instead of only in the state Redis.

- `audit`: one row per change of a settings document (the gateway's migration document), in the
  order recorded (`id`); `audit_id` is the writer's own id, unique, so a redelivery is kept once.
- `ix_audit_document_id`: `GET /audit?document=` pages one document's log, newest first.

Revision ID: 0004_audit
Revises: 0003_replays_and_stuck_runs
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_audit"
down_revision = "0003_replays_and_stuck_runs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("audit_id", sa.String(32), nullable=False),
        sa.Column("document", sa.String(200), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("version_before", sa.Integer(), nullable=False),
        sa.Column("version_after", sa.Integer(), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("audit_id", name="uq_audit_audit_id"),
    )
    op.create_index("ix_audit_document_id", "audit", ["document", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_document_id", table_name="audit")
    op.drop_table("audit")
