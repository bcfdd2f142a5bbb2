"""HTTP routes of storage for tenants and their API keys (behind the internal key). Thin adapters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from crucible_contracts.limits import MAX_OFFSET, MAX_PAGE
from crucible_contracts.tenancy import (
    KEY_HASH_PATTERN,
    KEY_ID_PATTERN,
    TENANT_PATTERN,
    KeyIdentity,
    KeyView,
    StoredKeyCreate,
    TenantLimits,
    TenantView,
)
from crucible_storage import tenancy
from crucible_storage.deps import ReadSession, WriteSession

router = APIRouter()

TenantName = Annotated[str, Path(pattern=TENANT_PATTERN, max_length=64)]


@router.put("/tenants/{tenant}")
def put_tenant(tenant: TenantName, body: TenantLimits, session: WriteSession) -> TenantView:
    """Create the tenant or replace its limits (null: the gateway's default)."""
    return tenancy.put_tenant(session=session, tenant=tenant, limits=body)


@router.get("/tenants")
def list_tenants(session: ReadSession) -> list[TenantView]:
    return tenancy.list_tenants(session=session)


@router.get("/tenants/{tenant}")
def get_tenant(tenant: TenantName, session: ReadSession) -> TenantView:
    return tenancy.get_tenant(session=session, tenant=tenant)


@router.post("/keys", responses={201: {"model": KeyView, "description": "recorded now"}})
def create_key(body: StoredKeyCreate, session: WriteSession, response: Response) -> KeyView:
    """Record a key by its hash: 201 when new, 200 with the key recorded first for a known hash."""
    view, created = tenancy.create_key(session=session, create=body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return view


@router.get("/keys")
def list_keys(
    session: ReadSession,
    tenant: Annotated[str | None, Query(pattern=TENANT_PATTERN, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[KeyView]:
    return tenancy.list_keys(session=session, tenant=tenant, limit=limit, offset=offset)


@router.delete("/keys/{key_id}")
def revoke_key(
    key_id: Annotated[str, Path(pattern=KEY_ID_PATTERN)], session: WriteSession
) -> KeyView:
    return tenancy.revoke_key(session=session, key_id=key_id)


@router.get("/keys/by-hash/{key_hash}")
def identify_key(
    key_hash: Annotated[str, Path(pattern=KEY_HASH_PATTERN)], session: ReadSession
) -> KeyIdentity:
    """The active key of this SHA-256 with its tenant's limits; 404 when unknown or revoked."""
    return tenancy.identify(session=session, key_hash=key_hash)
