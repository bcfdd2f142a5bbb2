"""The queue-service application: `python -m crucible_runtime.serve crucible_queue.main:create_app`."""

from __future__ import annotations

from fastapi import FastAPI

from crucible_queue import metrics
from crucible_queue.config import Settings
from crucible_queue.routes import router
from crucible_queue.taskqueue import TaskQueue
from crucible_runtime.edge import EdgeLimits
from crucible_runtime.logs import setup_logging
from crucible_runtime.web import install_common


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    setup_logging("queue-service", settings.log_level)
    app = FastAPI(title="Crucible legacy queue-service", version="0.1.0")
    app.state.settings = settings
    app.state.queue = TaskQueue(
        lease_seconds=settings.queue_lease_seconds,
        max_depth=settings.queue_max_depth,
        finished_keep=settings.queue_finished_keep,
    )
    metrics.expose(app.state.queue)
    install_common(
        app,
        service="queue-service",
        internal_api_key=settings.internal_api_key,
        edge=EdgeLimits.of(settings),
        statuses=(401, 404, 409, 429),
    )
    app.include_router(router)
    return app
