"""The clients one worker process keeps for its whole life: storage and the executor pool."""

from __future__ import annotations

import threading

from crucible_contracts.clients import ExecutorPool, StorageClient
from crucible_worker.config import Settings


class Resources:
    """Creates the storage client and the executor pool on first use, once per process.

    Nothing is created at import or in the parent of a prefork pool, so no connection is ever
    shared across a fork; `close` is called when the worker process shuts down.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._storage: StorageClient | None = None
        self._executors: ExecutorPool | None = None

    @property
    def storage(self) -> StorageClient:
        with self._lock:
            if self._storage is None:
                self._storage = StorageClient(
                    self._settings.storage_service_url,
                    internal_key=self._settings.internal_api_key,
                )
            return self._storage

    @property
    def executors(self) -> ExecutorPool:
        with self._lock:
            if self._executors is None:
                self._executors = ExecutorPool(
                    self._settings.executor_urls(),
                    internal_key=self._settings.internal_api_key,
                    down_cooldown=self._settings.executor_down_cooldown,
                )
            return self._executors

    def close(self) -> None:
        with self._lock:
            if self._storage is not None:
                self._storage.close()
            if self._executors is not None:
                self._executors.close()
            self._storage = self._executors = None
