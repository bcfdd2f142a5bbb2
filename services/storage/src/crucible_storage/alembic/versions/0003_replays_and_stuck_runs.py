"""Replays of runs that ended `error`, and what the reconciler's stuck-run query needs.

- `runs.replays`: how often an operator sent the run back to `queued` (capped by MAX_REPLAYS).
- `runs.queued_at`: when the run last entered `queued` (its creation, or its latest replay), so
  that a run replayed long after it was created is not taken for one stuck since its creation.
  Existing rows get their `created_at`.
- `ix_runs_status_backend`: `GET /runs/stuck` looks for the few queued and running runs among
  many ended ones.

Revision ID: 0003_replays_and_stuck_runs
Revises: 0002_stats_indexes
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_replays_and_stuck_runs"
down_revision = "0002_stats_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "runs", sa.Column("replays", sa.Integer(), nullable=False, server_default=sa.text("0"))
    )
    op.add_column("runs", sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE runs SET queued_at = created_at")
    op.create_index("ix_runs_status_backend", "runs", ["status", "backend"])


def downgrade() -> None:
    op.drop_index("ix_runs_status_backend", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("queued_at")
        batch.drop_column("replays")
