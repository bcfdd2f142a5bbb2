"""Tenants and their API keys: scopes, per-tenant limits and the wire views of keys and tenants.

A key is a high-entropy random token shown once, when it is created; storage keeps only its
SHA-256 (`key_hash`), which is also how a presented key is looked up.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

# The header through which a caller tells storage whose evaluations it may see (absent: all).
TENANT_HEADER = "X-Tenant"
DEFAULT_TENANT = "default"
TENANT_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
KEY_ID_PATTERN = r"^[a-z0-9-]{1,40}$"
KEY_HASH_PATTERN = r"^[0-9a-f]{64}$"
# How much of a key is kept in the clear, so that an operator can tell keys apart.
KEY_PREFIX_CHARS = 8


def is_tenant(name: str) -> bool:
    return re.fullmatch(TENANT_PATTERN, name) is not None


def key_hash(key: str) -> str:
    """The SHA-256 of a key, as stored. Keys are random tokens: no salt is needed to look one up."""
    return hashlib.sha256(key.encode()).hexdigest()


class Scope(StrEnum):
    """What a key may do: submit evaluations, read its tenant's own, use the operators' views."""

    SUBMIT = "submit"
    READ = "read"
    OPERATOR = "operator"


DEFAULT_SCOPES = (Scope.SUBMIT, Scope.READ)


class _Strict(BaseModel):
    """Unknown fields refused and no coercion of numbers or strings (`"5"` is not 5); scopes
    still arrive as their JSON strings."""

    model_config = ConfigDict(extra="forbid")


class TenantLimits(_Strict):
    """A tenant's own limits; None means the gateway's default setting. A `requests_per_second`
    of 0 exempts the tenant from the rate limit (as RATE_LIMIT_PER_SECOND=0 does for all)."""

    requests_per_second: StrictFloat | None = Field(default=None, ge=0, le=1_000_000)
    max_in_flight: StrictInt | None = Field(default=None, ge=1, le=1_000_000)
    max_batch: StrictInt | None = Field(default=None, ge=1, le=100_000)


class TenantView(BaseModel):
    tenant: str
    limits: TenantLimits
    created_at: datetime
    updated_at: datetime


class KeyCreate(_Strict):
    """`POST /api/admin/tenants/{tenant}/keys` body: the scopes of the new key."""

    scopes: list[Scope] = Field(default_factory=lambda: list(DEFAULT_SCOPES), min_length=1)


class StoredKeyCreate(_Strict):
    """`POST /keys` body (gateway → storage): never the key itself, only its hash."""

    key_id: StrictStr = Field(pattern=KEY_ID_PATTERN)
    tenant: StrictStr = Field(pattern=TENANT_PATTERN)
    scopes: list[Scope] = Field(min_length=1)
    key_hash: StrictStr = Field(pattern=KEY_HASH_PATTERN)
    prefix: StrictStr = Field(max_length=KEY_PREFIX_CHARS)


class KeyView(BaseModel):
    """A key as listed: everything but the key (which nobody can see again)."""

    key_id: str
    prefix: str
    tenant: str
    scopes: list[Scope]
    created_at: datetime
    revoked_at: datetime | None = None


class CreatedKey(KeyView):
    """The answer to creating a key: the only time `key` is shown."""

    key: str


class KeyIdentity(BaseModel):
    """Storage's answer to a look-up by hash: an active key, its tenant and the tenant's limits."""

    key_id: str
    tenant: str
    scopes: list[Scope]
    limits: TenantLimits
