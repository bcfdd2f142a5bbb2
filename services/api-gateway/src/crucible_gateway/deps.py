"""FastAPI dependencies shared by every domain: what create_app made once, as Annotated aliases.

Each is `async def`: FastAPI runs a plain `def` dependency in the threadpool, a hop that costs
far more than reading an attribute.

A domain's own resource dependencies (e.g. `evaluations.deps.EvaluationDep`) live in its package.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from crucible_contracts.limits import Limits
from crucible_contracts.tenancy import Scope
from crucible_gateway.auth import operator_name, presented_operator_token
from crucible_gateway.config import Settings
from crucible_gateway.leader import LeaderLoop
from crucible_gateway.migration.audit import AuditLog
from crucible_gateway.migration.models import MigrationSettings
from crucible_gateway.migration.source import RedisMigrationSource
from crucible_gateway.migration.store import MigrationStore
from crucible_gateway.paths import Paths
from crucible_gateway.paths.celery_client import CeleryDispatcher
from crucible_gateway.queue_readings import QueueReader
from crucible_gateway.tenancy.principal import KeyResolver, Principal
from crucible_runtime.async_clients import AsyncStorageClient
from crucible_runtime.clients import ExecutorPool, StorageClient
from crucible_runtime.dead_letters import DeadLetterStore


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_storage(request: Request) -> StorageClient:
    return request.app.state.storage


async def get_async_storage(request: Request) -> AsyncStorageClient:
    """Storage's client for routes on the event loop (submit, read)."""
    return request.app.state.async_storage


async def get_paths(request: Request) -> Paths:
    return request.app.state.paths


async def get_celery(request: Request) -> CeleryDispatcher:
    """The Celery dispatcher itself, for views about Celery (workers, tasks); not for dispatch."""
    return request.app.state.celery


async def get_migration(request: Request) -> MigrationSettings:
    return request.app.state.migration_source.current()


async def get_migration_source(request: Request) -> RedisMigrationSource:
    return request.app.state.migration_source


async def get_migration_store(request: Request) -> MigrationStore:
    return request.app.state.migration_store


async def get_audit_log(request: Request) -> AuditLog:
    return request.app.state.audit_log


async def get_leader(request: Request) -> LeaderLoop:
    """The loop of the leader's jobs: `is_leader` says whether this replica leads now."""
    return request.app.state.leader


async def get_principal(request: Request) -> Principal:
    """The caller, as the auth middleware resolved it before the body was read."""
    return request.state.principal


async def get_operator(request: Request) -> str:
    """The calling operator's name (or `key:<key_id>` for a key with the operator scope); the auth
    middleware answered 401/403 already for anyone else."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is not None and not principal.local and principal.can(Scope.OPERATOR):
        return principal.actor
    return operator_name(presented_operator_token(request), request.app.state.operator_tokens)


async def get_key_resolver(request: Request) -> KeyResolver:
    return request.app.state.key_resolver


async def get_executors(request: Request) -> ExecutorPool | None:
    return request.app.state.executors


async def get_dead_letters(request: Request) -> DeadLetterStore:
    return request.app.state.dead_letters


async def get_queue_reader(request: Request) -> QueueReader:
    return request.app.state.queue_reader


async def get_limits(request: Request) -> Limits:
    return request.app.state.limits


async def get_languages(request: Request) -> tuple[str, ...]:
    return request.app.state.settings.languages


SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[StorageClient, Depends(get_storage)]
AsyncStorageDep = Annotated[AsyncStorageClient, Depends(get_async_storage)]
PathsDep = Annotated[Paths, Depends(get_paths)]
CeleryDep = Annotated[CeleryDispatcher, Depends(get_celery)]
MigrationDep = Annotated[MigrationSettings, Depends(get_migration)]
MigrationSourceDep = Annotated[RedisMigrationSource, Depends(get_migration_source)]
MigrationStoreDep = Annotated[MigrationStore, Depends(get_migration_store)]
AuditLogDep = Annotated[AuditLog, Depends(get_audit_log)]
LeaderDep = Annotated[LeaderLoop, Depends(get_leader)]
OperatorDep = Annotated[str, Depends(get_operator)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
KeyResolverDep = Annotated[KeyResolver, Depends(get_key_resolver)]
ExecutorsDep = Annotated[ExecutorPool | None, Depends(get_executors)]
DeadLettersDep = Annotated[DeadLetterStore, Depends(get_dead_letters)]
QueueReaderDep = Annotated[QueueReader, Depends(get_queue_reader)]
LimitsDep = Annotated[Limits, Depends(get_limits)]
LanguagesDep = Annotated[tuple[str, ...], Depends(get_languages)]
