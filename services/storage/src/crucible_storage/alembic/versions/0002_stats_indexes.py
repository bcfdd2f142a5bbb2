"""Indexes for the migration statistics: runs and comparisons by their created_at.

`GET /stats` reads the runs created and the comparisons recorded in a time window; without these
it would scan both tables whole on every report.

Revision ID: 0002_stats_indexes
Revises: 0001_initial
Create Date: 2026-11-20
"""

from __future__ import annotations

from alembic import op

revision = "0002_stats_indexes"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_created_at", "runs", ["created_at"])
    op.create_index("ix_comparisons_created_at", "comparisons", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_comparisons_created_at", table_name="comparisons")
    op.drop_index("ix_runs_created_at", table_name="runs")
