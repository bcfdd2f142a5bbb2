"""The ORM tables: evaluations, their runs, the event timeline, comparisons, the audit log, tenants
and their API keys.

The schema itself is owned by the Alembic migrations in `alembic/versions`; these classes describe
it to SQLAlchemy and must match it (a test compares them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from crucible_contracts.names import Backend, Role
from crucible_contracts.status import Status


def utcnow() -> datetime:
    """Storage's own clock: every timestamp it records comes from here."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in, an aware UTC datetime out, on every database.

    SQLite has no time zones, so values are stored there as naive UTC (which also sorts right).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _str_enum(cls: type) -> Enum:
    # Stored as the enum's value in a plain string column; the migration adds the CHECK.
    return Enum(
        cls,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda members: [member.value for member in members],
    )


class Base(DeclarativeBase):
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
        Status: _str_enum(Status),
        Backend: _str_enum(Backend),
        Role: _str_enum(Role),
    }


class Evaluation(Base):
    __tablename__ = "evaluations"

    eval_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    code: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(32))
    timeout: Mapped[float] = mapped_column(Float)
    stdin: Mapped[str | None] = mapped_column(Text)
    memory_mb: Mapped[int | None] = mapped_column(Integer)
    priority: Mapped[bool] = mapped_column(Boolean, default=False)
    routing_key: Mapped[str | None] = mapped_column(String(200))
    tenant: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    runs: Mapped[list[Run]] = relationship(
        back_populates="evaluation",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Run.created_at",
    )

    __table_args__ = (
        Index("ix_evaluations_created_at", "created_at"),
        Index("ix_evaluations_tenant_created_at", "tenant", "created_at"),
    )


class Run(Base):
    """One attempt-carrying run of an evaluation: the primary one, and at most one shadow."""

    __tablename__ = "runs"

    eval_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("evaluations.eval_id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[Role] = mapped_column(primary_key=True)
    backend: Mapped[Backend]
    status: Mapped[Status]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    executor_id: Mapped[str | None] = mapped_column(String(128))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    output: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    output_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    error_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    runtime_ms: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(Text)
    # How often an operator sent it back to queued after it ended `error` (see plan_replay).
    replays: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When it last entered `queued`: its creation, or its latest replay. Null only for rows
    # written before migration 0003 filled it in.
    queued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]

    evaluation: Mapped[Evaluation] = relationship(back_populates="runs")

    __table_args__ = (
        Index("ix_runs_role_status", "role", "status"),
        Index("ix_runs_role_backend", "role", "backend"),
        Index("ix_runs_created_at", "created_at"),
        Index("ix_runs_status_backend", "status", "backend"),
    )


class EventRecord(Base):
    """One entry on an evaluation's timeline (the wire model is `crucible_contracts.models.Event`)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    eval_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("evaluations.eval_id", ondelete="CASCADE")
    )
    event: Mapped[str] = mapped_column(String(64))
    role: Mapped[Role | None]
    status: Mapped[Status | None]
    at: Mapped[datetime] = mapped_column(default=utcnow)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (Index("ix_events_eval_id_id", "eval_id", "id"),)


class Comparison(Base):
    """The primary and shadow runs of one evaluation, compared once both ended.

    `outcome` holds a `crucible_contracts.models.ComparisonOutcome` value, checked by the API rather
    than by a CHECK constraint, so that the comparer can learn a new outcome without a migration.
    """

    __tablename__ = "comparisons"

    eval_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("evaluations.eval_id", ondelete="CASCADE"), primary_key=True
    )
    outcome: Mapped[str] = mapped_column(String(32))
    differing_fields: Mapped[list[str]] = mapped_column(default=list)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_comparisons_created_at", "created_at"),)


class AuditRecord(Base):
    """One change of a settings document (the wire model is `crucible_contracts.models.AuditEntry`).

    `id` is the order of recording (newest first = highest); `audit_id` is the writer's own id, so
    that an entry delivered twice is kept once.
    """

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    audit_id: Mapped[str] = mapped_column(String(32))
    document: Mapped[str] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(64))
    version_before: Mapped[int] = mapped_column(Integer)
    version_after: Mapped[int] = mapped_column(Integer)
    changes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reason: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("audit_id", name="uq_audit_audit_id"),
        Index("ix_audit_document_id", "document", "id"),
    )


class TenantRecord(Base):
    """A tenant and its own limits (null: the gateway's default setting)."""

    __tablename__ = "tenants"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    requests_per_second: Mapped[float | None] = mapped_column(Float)
    max_in_flight: Mapped[int | None] = mapped_column(Integer)
    max_batch: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKeyRecord(Base):
    """A client key, known only by its SHA-256 (`key_hash`), the column a look-up goes by."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.tenant"))
    scopes: Mapped[list[str]] = mapped_column()
    key_hash: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
        Index("ix_api_keys_tenant", "tenant"),
    )
