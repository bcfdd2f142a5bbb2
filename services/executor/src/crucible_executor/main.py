"""The executor's FastAPI app: `python -m crucible_runtime.serve crucible_executor.main:create_app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from crucible_executor import metrics
from crucible_executor.config import Settings
from crucible_executor.finished import FinishedRuns
from crucible_executor.languages import load_languages
from crucible_executor.probe import select_runner
from crucible_executor.routes import router
from crucible_executor.service import Executor
from crucible_executor.slots import SlotRegistry
from crucible_executor.warm import WarmPool
from crucible_runtime.edge import EdgeLimits
from crucible_runtime.logs import setup_logging
from crucible_runtime.web import install_common


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    setup_logging(f"executor[{settings.executor_id}]", settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runner = await select_runner(settings, load_languages())
        finished = FinishedRuns(
            seconds=settings.result_retention_seconds,
            max_bytes=settings.result_retention_mb * 2**20,
        )
        warm = WarmPool(runner, settings.executor_slots, executor_id=settings.executor_id)
        slots = SlotRegistry(
            settings.executor_slots,
            retry_after=settings.retry_after_seconds,
            finished=finished,
            prefer=warm.ready,
            on_busy=metrics.BUSY_SLOTS.labels(settings.executor_id).set,
        )
        app.state.executor = Executor(settings=settings, runner=runner, slots=slots, warm=warm)
        metrics.SLOTS.labels(settings.executor_id).set(settings.executor_slots)
        metrics.BUSY_SLOTS.labels(settings.executor_id).set(0)
        warm.start()
        yield
        await slots.shutdown()
        await warm.close()
        runner.close()

    app = FastAPI(title="Crucible executor", lifespan=lifespan)
    install_common(
        app,
        service="executor",
        internal_api_key=settings.internal_api_key,
        edge=EdgeLimits.of(settings),
        statuses=(401, 404, 429, 503),
    )
    app.include_router(router)
    return app
