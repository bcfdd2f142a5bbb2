"""Managing tenants and keys: create (the key shown once), list, revoke, set limits, seed API_KEYS.

Every change is recorded in storage's audit log (document `tenancy`), best effort: the change
itself is already durable in storage, so a lost audit entry is logged, not turned into a failure.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from crucible_contracts.errors import Conflict, CrucibleError
from crucible_contracts.models import AuditEntry
from crucible_contracts.tenancy import (
    DEFAULT_SCOPES,
    KEY_PREFIX_CHARS,
    CreatedKey,
    KeyCreate,
    KeyView,
    StoredKeyCreate,
    TenantLimits,
    TenantView,
    key_hash,
)
from crucible_gateway.tenancy.principal import KeyResolver
from crucible_runtime.clients import StorageClient

log = logging.getLogger(__name__)

AUDIT_DOCUMENT = "tenancy"
KEY_TOKEN_BYTES = 32
KEY_SCHEME = "cru_"
# Seeded keys are the operator's own strings, maybe short: fewer of their characters are shown.
SEEDED_PREFIX_CHARS = 3
SEED_RETRY_SECONDS = 2.0


def new_key() -> str:
    """A fresh client key: 256 random bits, URL-safe."""
    return KEY_SCHEME + secrets.token_urlsafe(KEY_TOKEN_BYTES)


def create_key(*, tenant: str, body: KeyCreate, actor: str, storage: StorageClient) -> CreatedKey:
    """Create a key of `tenant` (the tenant is created when new); the answer is the only place
    the key itself ever appears."""
    key = new_key()
    stored = StoredKeyCreate(
        key_id=secrets.token_hex(8),
        tenant=tenant,
        scopes=list(dict.fromkeys(body.scopes)),
        key_hash=key_hash(key),
        prefix=key[:KEY_PREFIX_CHARS],
    )
    view, _ = storage.create_key(stored)
    _audit(
        storage,
        actor=actor,
        action="create_key",
        changes={"key_id": [None, view.key_id], "scopes": [None, [s.value for s in view.scopes]]},
        reason=f"key {view.key_id} created for tenant {tenant}",
    )
    return CreatedKey(**view.model_dump(), key=key)


def list_keys(
    *, storage: StorageClient, tenant: str | None, limit: int, offset: int
) -> list[KeyView]:
    return storage.keys(tenant=tenant, limit=limit, offset=offset)


def revoke_key(
    *, key_id: str, actor: str, storage: StorageClient, resolver: KeyResolver
) -> KeyView:
    """Revoke the key: refused here at once, and by every other replica within its cache time."""
    view = storage.revoke_key(key_id)
    resolver.forget()
    _audit(
        storage,
        actor=actor,
        action="revoke_key",
        changes={"revoked_at": [None, view.revoked_at.isoformat() if view.revoked_at else None]},
        reason=f"key {key_id} of tenant {view.tenant} revoked",
    )
    return view


def put_tenant(
    *, tenant: str, limits: TenantLimits, actor: str, storage: StorageClient
) -> TenantView:
    before = {t.tenant: t.limits for t in storage.tenants()}.get(tenant)
    view = storage.put_tenant(tenant, limits)
    old = before.model_dump() if before is not None else {}
    _audit(
        storage,
        actor=actor,
        action="put_tenant",
        changes={
            name: [old.get(name), value]
            for name, value in limits.model_dump().items()
            if old.get(name) != value or before is None
        },
        reason=f"limits of tenant {tenant} set",
    )
    return view


def list_tenants(*, storage: StorageClient) -> list[TenantView]:
    return storage.tenants()


def seed_keys(*, keys: Sequence[tuple[str, str]], storage: StorageClient) -> int:
    """Record the keys of API_KEYS ((tenant, key) pairs) in storage; those recorded before stay
    as they are (a revoked one stays revoked). How many were new. Raises what storage raises."""
    created = 0
    for tenant, key in keys:
        hashed = key_hash(key)
        stored = StoredKeyCreate(
            key_id=f"seed-{hashed[:12]}",
            tenant=tenant,
            scopes=list(DEFAULT_SCOPES),
            key_hash=hashed,
            prefix=key[:SEEDED_PREFIX_CHARS],
        )
        try:
            _, new = storage.create_key(stored)
        except Conflict as exc:
            log.error("API_KEYS: a key of tenant %s is not seeded: %s", tenant, exc)
            continue
        created += new
    return created


def seed_in_background(
    *, keys: Sequence[tuple[str, str]], storage: StorageClient, stop: threading.Event
) -> None:
    """`seed_keys` now, and again every few seconds until storage takes them (or `stop`)."""
    if not keys:
        return

    def attempt() -> bool:
        try:
            seed_keys(keys=keys, storage=storage)
            return True
        except CrucibleError as exc:
            log.warning("API_KEYS not seeded yet (storage: %s); trying again", exc)
            return False

    if attempt():
        return

    def retry() -> None:
        while not stop.wait(SEED_RETRY_SECONDS):
            if attempt():
                return

    threading.Thread(target=retry, name="seed-api-keys", daemon=True).start()


def _audit(
    storage: StorageClient, *, actor: str, action: str, changes: dict[str, Any], reason: str
) -> None:
    entry = AuditEntry(
        document=AUDIT_DOCUMENT,
        actor=actor[:200],
        at=datetime.now(UTC),
        action=action,
        version_before=0,
        version_after=0,
        changes={name: list(pair) for name, pair in changes.items()},
        reason=reason,
    )
    try:
        storage.record_audit(entry)
    except CrucibleError as exc:
        log.error("audit entry of %s (%s) not recorded: %s", action, reason, exc)
