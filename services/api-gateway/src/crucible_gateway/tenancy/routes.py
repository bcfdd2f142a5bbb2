"""The admin API of tenants and keys (operators only): thin adapters to `tenancy.service`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query

from crucible_contracts.limits import MAX_OFFSET, MAX_PAGE
from crucible_contracts.tenancy import (
    KEY_ID_PATTERN,
    TENANT_PATTERN,
    CreatedKey,
    KeyCreate,
    KeyView,
    TenantLimits,
    TenantView,
)
from crucible_gateway.deps import KeyResolverDep, OperatorDep, StorageDep
from crucible_gateway.tenancy import service

router = APIRouter(prefix="/api/admin")

TenantName = Annotated[str, Path(pattern=TENANT_PATTERN, max_length=64)]


@router.post("/tenants/{tenant}/keys", status_code=201)
def create_key(
    tenant: TenantName,
    actor: OperatorDep,
    storage: StorageDep,
    body: Annotated[KeyCreate | None, Body()] = None,
) -> CreatedKey:
    """A new key of `tenant` (submit and read unless `scopes` says): the key is in this answer
    and nowhere else, ever."""
    return service.create_key(tenant=tenant, body=body or KeyCreate(), actor=actor, storage=storage)


@router.get("/keys")
def list_keys(
    _: OperatorDep,
    storage: StorageDep,
    tenant: Annotated[str | None, Query(pattern=TENANT_PATTERN, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[KeyView]:
    """Keys (never the keys themselves): id, prefix, tenant, scopes, created_at, revoked_at."""
    return service.list_keys(storage=storage, tenant=tenant, limit=limit, offset=offset)


@router.delete("/keys/{key_id}")
def revoke_key(
    key_id: Annotated[str, Path(pattern=KEY_ID_PATTERN)],
    actor: OperatorDep,
    storage: StorageDep,
    resolver: KeyResolverDep,
) -> KeyView:
    """Revoke a key: every replica refuses it within KEY_CACHE_SECONDS (1 s)."""
    return service.revoke_key(key_id=key_id, actor=actor, storage=storage, resolver=resolver)


@router.put("/tenants/{tenant}")
def put_tenant(
    tenant: TenantName, body: TenantLimits, actor: OperatorDep, storage: StorageDep
) -> TenantView:
    """Set the tenant's limits (null: the gateway's default); creates the tenant when new."""
    return service.put_tenant(tenant=tenant, limits=body, actor=actor, storage=storage)


@router.get("/tenants")
def list_tenants(_: OperatorDep, storage: StorageDep) -> list[TenantView]:
    return service.list_tenants(storage=storage)
