"""Who is calling: a `Principal` (tenant, scopes, limits), resolved from a key through storage.

Keys live in storage, by their SHA-256 only. A replica remembers a look-up for at most
`KeyResolver.ttl` seconds (1 s by default), so a key revoked on any replica is refused by every
replica within that time, while a busy client costs storage at most one look-up a second.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from crucible_contracts.tenancy import (
    DEFAULT_SCOPES,
    DEFAULT_TENANT,
    KeyIdentity,
    Scope,
    TenantLimits,
    key_hash,
)
from crucible_runtime.async_clients import AsyncStorageClient
from crucible_runtime.clients import StorageClient

# Unknown keys are remembered too (a client retrying a wrong key costs one look-up a second);
# past this many entries the cache starts afresh, so a flood of random keys cannot grow it.
MAX_CACHED = 10_000


@dataclass(frozen=True)
class Principal:
    """The caller of a request: its tenant, what it may do, its tenant's own limits.

    `actor` names it in logs and the audit log. `local` marks the anonymous caller of a gateway
    that requires no keys (local mode), which keeps today's open views.
    """

    tenant: str
    scopes: frozenset[Scope]
    limits: TenantLimits
    actor: str
    local: bool = False

    def can(self, scope: Scope) -> bool:
        if scope is Scope.OPERATOR and self.local:
            return True
        return scope in self.scopes

    @property
    def read_scope(self) -> str | None:
        """The tenant whose evaluations it may read; None (all of them) for operators."""
        return None if Scope.OPERATOR in self.scopes else self.tenant

    @classmethod
    def of_key(cls, identity: KeyIdentity) -> Principal:
        return cls(
            tenant=identity.tenant,
            scopes=frozenset(identity.scopes),
            limits=identity.limits,
            actor=f"key:{identity.key_id}",
        )

    @classmethod
    def operator(cls, name: str) -> Principal:
        """An operator by OPERATOR_TOKEN: the operators' views and every tenant's evaluations;
        what it submits (a smoke test) is tenant `default`'s."""
        return cls(
            tenant=DEFAULT_TENANT,
            scopes=frozenset(Scope),
            limits=TenantLimits(),
            actor=name,
        )

    @classmethod
    def anonymous(cls) -> Principal:
        """The caller without a key in local mode: tenant `default`, submit and read."""
        return cls(
            tenant=DEFAULT_TENANT,
            scopes=frozenset(DEFAULT_SCOPES),
            limits=TenantLimits(),
            actor="local",
            local=True,
        )


class KeyResolver:
    """Key → Principal through storage's look-up by hash, each answer kept at most `ttl` seconds.

    Raises what the storage client raises (Unavailable when storage cannot answer): a key is
    never taken as valid on a guess. `resolve` is for threads, `resolve_async` for the event
    loop (with `async_storage`); both share one cache.
    """

    def __init__(
        self,
        storage: StorageClient,
        *,
        ttl: float = 1.0,
        async_storage: AsyncStorageClient | None = None,
    ) -> None:
        self.storage = storage
        self.async_storage = async_storage
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def resolve(self, key: str) -> Principal | None:
        """The principal of an active key; None for an unknown or revoked one."""
        hashed = key_hash(key)
        found, principal = self._cached(hashed)
        if found:
            return principal
        asked_at = time.monotonic()
        return self._remember(hashed, self.storage.identify_key(hashed), asked_at)

    async def resolve_async(self, key: str) -> Principal | None:
        """`resolve` on the event loop: a remembered answer costs no call at all."""
        hashed = key_hash(key)
        found, principal = self._cached(hashed)
        if found:
            return principal
        if self.async_storage is None:
            raise RuntimeError("KeyResolver.resolve_async needs async_storage")
        asked_at = time.monotonic()
        return self._remember(hashed, await self.async_storage.identify_key(hashed), asked_at)

    def _cached(self, hashed: str) -> tuple[bool, Principal | None]:
        with self._lock:
            cached = self._cache.get(hashed)
        if cached is not None and cached[0] > time.monotonic():
            return True, cached[1]
        return False, None

    def _remember(
        self, hashed: str, identity: KeyIdentity | None, asked_at: float
    ) -> Principal | None:
        # Kept from the moment storage was asked, so no answer outlives `ttl` from its source.
        principal = Principal.of_key(identity) if identity is not None else None
        with self._lock:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[hashed] = (asked_at + self.ttl, principal)
        return principal

    def forget(self) -> None:
        """Drop every remembered answer (after a revocation on this replica)."""
        with self._lock:
            self._cache.clear()
