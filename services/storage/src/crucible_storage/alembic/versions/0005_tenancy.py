"""Tenants and their API keys; every evaluation records its tenant.

- `evaluations.tenant`: whose evaluation it is; rows written before default to 'default'.
  `ix_evaluations_tenant_created_at` serves a tenant's listing and its in-flight count.
- `tenants`: one row per tenant with its own limits (null: the gateway's default).
- `api_keys`: keys by their SHA-256 only (`key_hash`, unique: the look-up), their scopes, and
  when they were revoked.

Revision ID: 0005_tenancy
Revises: 0004_audit
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_tenancy"
down_revision = "0004_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        batch.add_column(
            sa.Column("tenant", sa.String(64), nullable=False, server_default="default")
        )
    op.create_index("ix_evaluations_tenant_created_at", "evaluations", ["tenant", "created_at"])
    op.create_table(
        "tenants",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("requests_per_second", sa.Float(), nullable=True),
        sa.Column("max_in_flight", sa.Integer(), nullable=True),
        sa.Column("max_batch", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(40), primary_key=True),
        sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.tenant"), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_index("ix_api_keys_tenant", "api_keys", ["tenant"])


def downgrade() -> None:
    op.drop_index("ix_api_keys_tenant", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("tenants")
    op.drop_index("ix_evaluations_tenant_created_at", table_name="evaluations")
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_column("tenant")
