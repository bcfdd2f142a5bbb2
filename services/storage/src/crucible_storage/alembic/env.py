"""Alembic environment: runs migrations on the connection `crucible_storage.migrate` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from crucible_storage.tables import Base

config = context.config


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # Plain `alembic -x`-style use with sqlalchemy.url set in the config.
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as own:
        _run(own)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run them online")
run_online()
