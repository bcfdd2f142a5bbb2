"""Tenants, their API keys (by hash only) and the in-flight cap checked when an evaluation is created.

Security holds here too, not only at the gateway: a read scoped to a tenant never sees another
tenant's evaluation (it answers 404 exactly as for an unknown one), and the in-flight cap is
counted in the same transaction that inserts the evaluation.
"""

from __future__ import annotations

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crucible_contracts.errors import Busy, Conflict, NotFound
from crucible_contracts.names import Role
from crucible_contracts.status import Status
from crucible_contracts.tenancy import (
    KeyIdentity,
    KeyView,
    Scope,
    StoredKeyCreate,
    TenantLimits,
    TenantView,
)
from crucible_storage.hot import SessionLike, connection_of
from crucible_storage.tables import ApiKeyRecord, Evaluation, Run, TenantRecord, utcnow

IN_FLIGHT = (Status.QUEUED, Status.RUNNING)
# How long a client refused at its in-flight cap is told to wait before it tries again.
IN_FLIGHT_RETRY_AFTER = 1


# --- scoping -------------------------------------------------------------------------------------


def not_found(eval_id: str) -> NotFound:
    """The one answer for an unknown evaluation and for another tenant's: nothing tells them apart."""
    return NotFound(f"evaluation {eval_id} not found", eval_id=eval_id)


def check_tenant(session: SessionLike, *, eval_id: str, tenant: str | None) -> None:
    """NotFound unless the evaluation exists and, when `tenant` is given, belongs to it."""
    query = select(Evaluation.tenant).where(Evaluation.eval_id == eval_id)
    owner = session.scalar(query)
    if owner is None or (tenant is not None and owner != tenant):
        raise not_found(eval_id)


# --- the in-flight cap ----------------------------------------------------------------------------


def lock_tenant(session: SessionLike, tenant: str) -> None:
    """Serialise the creations of one tenant's evaluations until the transaction ends.

    SQLite: write sessions begin IMMEDIATE, so writers are serialised already. PostgreSQL: a
    transaction-scoped advisory lock on the tenant's name (no row needs to exist for it).
    """
    connection = connection_of(session)
    if connection.dialect.name == "postgresql":
        connection.execute(_LOCK_TENANT, {"key": f"crucible:tenant:{tenant}"})


_LOCK_TENANT = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
# Built once: it runs on every creation of a capped tenant's evaluation.
_IN_FLIGHT = (
    select(func.count())
    .select_from(Evaluation)
    .join(Run, (Run.eval_id == Evaluation.eval_id) & (Run.role == Role.PRIMARY))
    .where(Evaluation.tenant == bindparam("tenant"), Run.status.in_(IN_FLIGHT))
)


def in_flight(session: SessionLike, tenant: str) -> int:
    """How many of the tenant's evaluations are queued or running (their primary run)."""
    return connection_of(session).execute(_IN_FLIGHT, {"tenant": tenant}).scalar_one()


def check_in_flight(session: SessionLike, *, tenant: str, cap: int | None) -> None:
    """Busy (429) when the tenant already has `cap` evaluations in flight; call inside the write
    transaction that creates the next one, so that concurrent creations cannot both pass."""
    if cap is None:
        return
    lock_tenant(session, tenant)
    count = in_flight(session, tenant)
    if count >= cap:
        raise Busy(
            f"tenant {tenant} has {count} evaluations queued or running; the limit is {cap}",
            retry_after=IN_FLIGHT_RETRY_AFTER,
            tenant=tenant,
            limit=cap,
            in_flight=count,
        )


# --- tenants -------------------------------------------------------------------------------------


def put_tenant(*, session: Session, tenant: str, limits: TenantLimits) -> TenantView:
    """Create the tenant or replace its limits."""
    row = _ensure_tenant(session, tenant)
    for name, value in limits.model_dump().items():
        setattr(row, name, value)
    row.updated_at = utcnow()
    session.commit()
    return tenant_view(row)


def list_tenants(*, session: Session) -> list[TenantView]:
    rows = session.scalars(select(TenantRecord).order_by(TenantRecord.tenant))
    return [tenant_view(row) for row in rows]


def get_tenant(*, session: Session, tenant: str) -> TenantView:
    row = session.get(TenantRecord, tenant)
    if row is None:
        raise NotFound(f"no tenant {tenant}", tenant=tenant)
    return tenant_view(row)


def _ensure_tenant(session: Session, tenant: str) -> TenantRecord:
    row = session.get(TenantRecord, tenant)
    if row is None:
        now = utcnow()
        row = TenantRecord(tenant=tenant, created_at=now, updated_at=now)
        session.add(row)
        session.flush()
    return row


# --- keys ----------------------------------------------------------------------------------------


def create_key(*, session: Session, create: StoredKeyCreate) -> tuple[KeyView, bool]:
    """Record a key (its tenant is created when new): (view, True); for a hash recorded already,
    (that key, unchanged, False), so that seeding the same key again is harmless. Conflict when
    that hash belongs to another tenant, or the key_id is taken."""
    existing = _by_hash(session, create.key_hash)
    if existing is None:
        _ensure_tenant(session, create.tenant)
        row = ApiKeyRecord(
            key_id=create.key_id,
            tenant=create.tenant,
            scopes=[scope.value for scope in create.scopes],
            key_hash=create.key_hash,
            prefix=create.prefix,
            created_at=utcnow(),
        )
        session.add(row)
        try:
            session.commit()
            return key_view(row), True
        except IntegrityError:
            session.rollback()
            existing = _by_hash(session, create.key_hash)
            if existing is None:
                raise Conflict(f"key_id {create.key_id} is taken", key_id=create.key_id) from None
    if existing.tenant != create.tenant:
        raise Conflict("this key belongs to another tenant", key_id=existing.key_id)
    return key_view(existing), False


def list_keys(*, session: Session, tenant: str | None, limit: int, offset: int) -> list[KeyView]:
    query = select(ApiKeyRecord).order_by(ApiKeyRecord.created_at, ApiKeyRecord.key_id)
    if tenant is not None:
        query = query.where(ApiKeyRecord.tenant == tenant)
    return [key_view(row) for row in session.scalars(query.limit(limit).offset(offset))]


def revoke_key(*, session: Session, key_id: str) -> KeyView:
    """Revoke the key (once: revoking again keeps the first revoked_at); NotFound when unknown."""
    row = session.get(ApiKeyRecord, key_id)
    if row is None:
        raise NotFound(f"no key {key_id}", key_id=key_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.commit()
    return key_view(row)


def identify(*, session: Session, key_hash: str) -> KeyIdentity:
    """The active key of this hash with its tenant's limits; NotFound when unknown or revoked."""
    row = _by_hash(session, key_hash)
    if row is None or row.revoked_at is not None:
        raise NotFound("no active key with this hash")
    tenant = session.get(TenantRecord, row.tenant)
    return KeyIdentity(
        key_id=row.key_id,
        tenant=row.tenant,
        scopes=[Scope(scope) for scope in row.scopes],
        limits=_limits(tenant) if tenant is not None else TenantLimits(),
    )


def _by_hash(session: Session, hashed: str) -> ApiKeyRecord | None:
    return session.scalar(select(ApiKeyRecord).where(ApiKeyRecord.key_hash == hashed))


# --- views ---------------------------------------------------------------------------------------


def _limits(row: TenantRecord) -> TenantLimits:
    return TenantLimits(
        requests_per_second=row.requests_per_second,
        max_in_flight=row.max_in_flight,
        max_batch=row.max_batch,
    )


def tenant_view(row: TenantRecord) -> TenantView:
    return TenantView(
        tenant=row.tenant, limits=_limits(row), created_at=row.created_at, updated_at=row.updated_at
    )


def key_view(row: ApiKeyRecord) -> KeyView:
    return KeyView(
        key_id=row.key_id,
        prefix=row.prefix,
        tenant=row.tenant,
        scopes=[Scope(scope) for scope in row.scopes],
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
