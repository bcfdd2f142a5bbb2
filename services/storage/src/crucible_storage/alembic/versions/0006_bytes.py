"""Programs and their output kept as bytes, so that NUL survives PostgreSQL.

- `evaluations.code`, `evaluations.stdin`, `runs.output`, `runs.error`: text → binary (bytea on
  PostgreSQL, BLOB on SQLite) holding the text's UTF-8 bytes (`tables.Utf8Bytes`). PostgreSQL's
  text types refuse NUL, which a client may send and a program may print. Existing rows are
  converted in place (`convert_to(…, 'UTF8')`; on SQLite `CAST(… AS BLOB)`, the same bytes).
- `runs.output_base64`, `runs.error_base64`: the exact bytes of output / error when they are not
  valid UTF-8 (`crucible_contracts.output`), null otherwise; existing rows get null.

Downgrading gives the columns back as text; on PostgreSQL it fails on a row holding NUL, which
text cannot keep (the downgrade is refused rather than altering what a program printed).

Revision ID: 0006_bytes
Revises: 0005_tenancy
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_bytes"
down_revision = "0005_tenancy"
branch_labels = None
depends_on = None

# table → (column, nullable)
TEXT_COLUMNS: dict[str, tuple[tuple[str, bool], ...]] = {
    "evaluations": (("code", False), ("stdin", True)),
    "runs": (("output", True), ("error", True)),
}
RAW_COLUMNS = ("output_base64", "error_base64")


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _cast(table: str, column: str, type_: sa.types.TypeEngine) -> sa.Update:
    """UPDATE table SET column = CAST(column AS type_)."""
    target = sa.table(table, sa.column(column))
    return target.update().values({column: sa.cast(target.c[column], type_)})


def upgrade() -> None:
    for table, columns in TEXT_COLUMNS.items():
        # On SQLite this rebuilds the table (migrate.upgrade turns foreign keys off meanwhile).
        with op.batch_alter_table(table) as batch:
            for column, nullable in columns:
                batch.alter_column(
                    column,
                    existing_type=sa.Text(),
                    existing_nullable=nullable,
                    type_=sa.LargeBinary(),
                    postgresql_using=f"convert_to({column}, 'UTF8')",
                )
        if _sqlite():
            # A BLOB column keeps a TEXT value as TEXT: make each one its UTF-8 bytes.
            for column, _ in columns:
                op.execute(_cast(table, column, sa.LargeBinary()))
    for column in RAW_COLUMNS:
        op.add_column("runs", sa.Column(column, sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for column in RAW_COLUMNS:
            batch.drop_column(column)
    for table, columns in TEXT_COLUMNS.items():
        if _sqlite():
            for column, _ in columns:
                op.execute(_cast(table, column, sa.Text()))
        with op.batch_alter_table(table) as batch:
            for column, nullable in columns:
                batch.alter_column(
                    column,
                    existing_type=sa.LargeBinary(),
                    existing_nullable=nullable,
                    type_=sa.Text(),
                    postgresql_using=f"convert_from({column}, 'UTF8')",
                )
