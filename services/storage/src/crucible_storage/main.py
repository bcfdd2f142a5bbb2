"""The storage app: `python -m crucible_runtime.serve crucible_storage.main:create_app` (port 8082)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError

from crucible_contracts.errors import CrucibleError, Unavailable
from crucible_runtime.edge import EdgeLimits
from crucible_runtime.logs import setup_logging
from crucible_runtime.web import error_response, install_common
from crucible_storage import migrate
from crucible_storage.config import Settings
from crucible_storage.db import Database
from crucible_storage.events import EventPublisher
from crucible_storage.routes import router
from crucible_storage.tenant_routes import router as tenant_router

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    setup_logging("storage", settings.log_level)
    database = Database(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        inline=settings.db_inline,
    )
    publisher = EventPublisher(
        settings.redis_url,
        timeout=settings.redis_timeout_seconds,
        maxlen=settings.events_stream_maxlen,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await run_in_threadpool(
                lambda: migrate.upgrade_when_reachable(
                    database, wait_seconds=settings.startup_wait_seconds
                )
            )
        if not publisher.enabled:
            log.info("REDIS_URL is not set: events are recorded but not published")
        yield
        publisher.close()
        database.dispose()

    app = FastAPI(title="crucible-storage", lifespan=lifespan)
    app.state.settings = settings
    app.state.database = database
    app.state.publisher = publisher
    install_common(
        app,
        service="storage",
        internal_api_key=settings.internal_api_key,
        edge=EdgeLimits.of(settings),
        statuses=(401, 404, 409, 429, 503),
    )
    _install_database_errors(app, database)
    app.include_router(router)
    app.include_router(tenant_router)
    return app


def _install_database_errors(app: FastAPI, database: Database) -> None:
    """A database that cannot be reached answers 503 (callers retry); other failures, 500."""

    @app.exception_handler(OperationalError)
    async def _unreachable(_: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database error: %s", exc.orig)
        return error_response(
            Unavailable(f"the {database.dialect} database cannot be reached", retry_after=1)
        )

    @app.exception_handler(DBAPIError)
    async def _database(_: Request, exc: DBAPIError) -> JSONResponse:
        log.error("database error: %s", exc.orig)
        if exc.connection_invalidated:
            return error_response(Unavailable(f"the {database.dialect} database went away"))
        return error_response(CrucibleError("database error"))
