"""Builds Crucible's Celery app from Settings: configuration, tasks and per-process resources."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from crucible_runtime.logs import setup_logging
from crucible_worker.celery_config import celery_config
from crucible_worker.config import Settings
from crucible_worker.resources import Resources
from crucible_worker.tasks import register_tasks

SERVICE = "celery-worker"


def create_celery(settings: Settings) -> Celery:
    """The app the worker and Flower run; connects to nothing until one of them starts."""
    app = Celery("crucible_worker")
    app.conf.update(celery_config(settings))
    resources = Resources(settings)
    register_tasks(app, settings=settings, resources=resources)

    def close_resources(**_: Any) -> None:
        resources.close()

    def configure_logging(loglevel: int | str | None = None, **_: Any) -> None:
        level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else loglevel
        setup_logging(SERVICE, level or settings.log_level)
        # One INFO line per HTTP call to storage and executors drowns the task lines.
        logging.getLogger("httpx").setLevel(logging.WARNING)

    signals.worker_process_shutdown.connect(close_resources, weak=False)
    # Connecting this signal tells Celery to leave logging to us: one line format for every service.
    signals.setup_logging.connect(configure_logging, weak=False)
    return app
