"""Builds the api-gateway app: clients created once, public routes, auth, one error body, /metrics."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from crucible_gateway import metrics
from crucible_gateway.auth import Authenticator, install_auth
from crucible_gateway.config import Settings
from crucible_gateway.console.routes import install_console
from crucible_gateway.evaluations.routes import router as evaluations_router
from crucible_gateway.events.routes import router as events_router
from crucible_gateway.housekeeping.repair import Reconciler
from crucible_gateway.housekeeping.service import Housekeeping
from crucible_gateway.leader import Job, LeaderLease, LeaderLoop
from crucible_gateway.migration.audit import AuditLog
from crucible_gateway.migration.models import MigrationDocument
from crucible_gateway.migration.routes import router as migration_router
from crucible_gateway.migration.source import RedisMigrationSource
from crucible_gateway.migration.store import MigrationStore
from crucible_gateway.migration.supervisor import Supervisor
from crucible_gateway.operations.routes import router as operations_router
from crucible_gateway.paths import CeleryPath, LegacyPath, Paths
from crucible_gateway.paths.celery_client import CeleryDispatcher
from crucible_gateway.queue_readings import CachedQueueReader, QueueReader
from crucible_gateway.ratelimit import RateLimiter
from crucible_gateway.ratelimit_middleware import install_rate_limit
from crucible_gateway.tenancy.principal import KeyResolver
from crucible_gateway.tenancy.routes import router as tenancy_router
from crucible_gateway.tenancy.service import seed_in_background
from crucible_runtime.async_clients import AsyncQueueServiceClient, AsyncStorageClient
from crucible_runtime.clients import ExecutorPool, QueueServiceClient, StorageClient
from crucible_runtime.dead_letters import DeadLetterStore
from crucible_runtime.edge import EdgeLimits
from crucible_runtime.logs import setup_logging
from crucible_runtime.redis_client import fail_fast_redis
from crucible_runtime.web import install_common

SERVICE = "api-gateway"
# Short, so that a dead state Redis marks the settings stale quickly and never holds a request.
STATE_REDIS_TIMEOUT = 1.0


def create_app(settings: Settings | None = None) -> FastAPI:
    """The gateway app; `settings` default to the environment (read here, never at import)."""
    settings = settings or Settings()
    setup_logging(SERVICE, settings.log_level)
    # One INFO line per downstream call drowns the gateway's own log; failures still surface.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    storage = StorageClient(
        settings.storage_service_url,
        internal_key=settings.internal_api_key,
        timeout=settings.downstream_timeout,
    )
    celery = CeleryDispatcher(
        settings.celery_broker_url, connect_timeout=settings.broker_connect_timeout
    )
    legacy = QueueServiceClient(
        settings.queue_service_url,
        internal_key=settings.internal_api_key,
        timeout=settings.downstream_timeout,
    )
    # The submit and read routes run on the event loop and call storage and the queue-service
    # with these; the threadpool's routes and the leader's jobs use the sync clients above.
    async_storage = AsyncStorageClient(
        settings.storage_service_url,
        internal_key=settings.internal_api_key,
        timeout=settings.downstream_timeout,
    )
    async_legacy = AsyncQueueServiceClient(
        settings.queue_service_url,
        internal_key=settings.internal_api_key,
        timeout=settings.downstream_timeout,
    )
    paths = Paths(LegacyPath(legacy, async_client=async_legacy), CeleryPath(celery))

    urls = settings.all_executor_urls()
    executors = ExecutorPool(urls, internal_key=settings.internal_api_key) if urls else None
    broker_redis = fail_fast_redis(
        settings.celery_broker_url, timeout=settings.broker_connect_timeout
    )
    dead_letters = DeadLetterStore(broker_redis)

    state_redis = fail_fast_redis(settings.redis_url, timeout=STATE_REDIS_TIMEOUT)
    store = MigrationStore(
        state_redis,
        prefix=settings.migration_key_prefix,
        guard_history_max=settings.guard_history_max,
    )
    audit = AuditLog(store=store, storage=storage)
    # The environment only seeds the shared document when none exists yet.
    source = RedisMigrationSource(
        store=store,
        seed=MigrationDocument.seed_from(settings.migration()),
        refresh_interval=settings.migration_refresh_interval,
    )
    leader = _leader_loop(
        settings,
        state_redis=state_redis,
        store=store,
        audit=audit,
        source=source,
        storage=storage,
        paths=paths,
        executors=executors,
        dead_letters=dead_letters,
    )

    queue_reader = QueueReader(legacy=legacy, broker=broker_redis, dead_letters=dead_letters)
    metrics.expose(queues=CachedQueueReader(queue_reader), source=source, store=store)

    resolver = KeyResolver(storage, ttl=settings.key_cache_seconds, async_storage=async_storage)
    stop_seeding = threading.Event()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Before serving: a key of API_KEYS works from the first request (or as soon as
        # storage takes it, when storage is not up yet).
        await run_in_threadpool(
            lambda: seed_in_background(
                keys=settings.seeded_keys, storage=storage, stop=stop_seeding
            )
        )
        source.start()
        leader.start()
        yield
        stop_seeding.set()
        leader.stop()
        source.stop()
        state_redis.close()
        broker_redis.close()
        if executors is not None:
            executors.close()
        storage.close()
        paths.close()
        await async_storage.aclose()
        await async_legacy.aclose()
        await rate_limiter.close()

    app = FastAPI(title="Crucible api-gateway", lifespan=lifespan)
    app.state.settings = settings
    app.state.storage = storage
    app.state.async_storage = async_storage
    app.state.paths = paths
    # Only for the views about Celery itself (workers, tasks); everything else goes through paths.
    app.state.celery = celery
    app.state.limits = settings.limits()
    app.state.migration_store = store
    app.state.migration_source = source
    app.state.audit_log = audit
    app.state.leader = leader
    app.state.executors = executors
    app.state.dead_letters = dead_letters
    app.state.queue_reader = queue_reader
    app.state.operator_tokens = settings.operator_tokens
    app.state.key_resolver = resolver
    app.state.tenant_max_in_flight = settings.tenant_max_in_flight

    # Before the auth middleware, so that it runs after it: it counts authenticated requests
    # against the tenant auth found.
    rate_limiter = RateLimiter(
        settings.redis_url,
        window_seconds=settings.rate_limit_window_seconds,
        key_prefix=settings.rate_limit_key_prefix,
    )
    install_rate_limit(app, rate_limiter, default_per_second=settings.rate_limit_per_second)
    install_auth(
        app,
        Authenticator(
            resolver=resolver,
            operator_tokens=settings.operator_tokens,
            keys_required=settings.keys_required,
        ),
    )
    # The gateway is the public edge: clients authenticate with their tenant's keys, not with the
    # internal key, which it only sends on its own calls to storage and the queue-service.
    install_common(
        app,
        service=SERVICE,
        internal_api_key=None,
        edge=EdgeLimits.of(settings, {"/api/eval-batch": settings.max_batch_body_bytes}),
        statuses=(401, 403, 404, 409, 429, 503),
    )
    app.include_router(evaluations_router)
    app.include_router(migration_router)
    app.include_router(operations_router)
    app.include_router(tenancy_router)
    app.include_router(events_router)
    install_console(app)

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness: 200 while the process serves requests, whatever its dependencies do."""
        return {"status": "ok", "service": SERVICE}

    return app


def _leader_loop(
    settings: Settings,
    *,
    state_redis: redis.Redis,
    store: MigrationStore,
    audit: AuditLog,
    source: RedisMigrationSource,
    storage: StorageClient,
    paths: Paths,
    executors: ExecutorPool | None,
    dead_letters: DeadLetterStore,
) -> LeaderLoop:
    """What one replica at a time (the lease holder) runs, each job on its own interval: the
    migration round (comparison sweep, guard, ramp) and housekeeping (reconciler, purge)."""
    lease = LeaderLease(
        state_redis, key=store.leader_key, ttl_seconds=settings.leader_lease_seconds
    )
    leader = LeaderLoop(lease)
    supervisor = Supervisor(
        storage=storage,
        store=store,
        audit=audit,
        source=source,
        leader=lease.identity,
        interval=settings.supervisor_interval,
    )
    leader.add(Job("migration", settings.supervisor_interval, supervisor.tick))
    housekeeping = Housekeeping(
        reconciler=Reconciler(
            storage=storage,
            paths=paths,
            executors=executors,
            dead_letters=dead_letters,
            rules=settings.reconcile_rules(),
            batch=settings.reconcile_batch,
        ),
        storage=storage,
        retention_seconds=settings.retention_seconds(),
        reconcile_interval=settings.reconcile_interval_seconds,
        purge_interval=settings.purge_interval_seconds,
        still_leader=leader.still_leader,
    )
    for job in housekeeping.jobs():
        leader.add(job)
    return leader
