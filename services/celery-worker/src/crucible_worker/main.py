"""`celery -A crucible_worker.main:app worker|flower`: the one place the settings are read."""

from __future__ import annotations

from crucible_worker.celery_app import create_celery
from crucible_worker.config import Settings

app = create_celery(Settings())
