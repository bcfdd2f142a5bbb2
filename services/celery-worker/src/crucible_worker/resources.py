"""The clients one worker process keeps for its whole life: storage, executors, and the
dead-letter queue in the broker's Redis."""

from __future__ import annotations

import threading

import redis

from crucible_runtime.clients import ExecutorPool, StorageClient
from crucible_runtime.dead_letters import DeadLetterStore
from crucible_worker.config import Settings


class Resources:
    """Creates each client on first use, per process.

    Nothing is created at import or in the parent of a prefork pool, so no connection is ever
    shared across a fork; `close` is called when the worker process shuts down.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._storage: StorageClient | None = None
        self._executors: ExecutorPool | None = None
        self._dead_letters: DeadLetterStore | None = None
        self._redis: redis.Redis | None = None

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
                    busy_wait=self._settings.executor_busy_wait_seconds,
                )
            return self._executors

    @property
    def dead_letters(self) -> DeadLetterStore:
        """The dead-letter queue, in the broker's Redis (which the gateway's admin API knows)."""
        with self._lock:
            if self._dead_letters is None:
                self._dead_letters = DeadLetterStore(
                    self._broker_locked(), max_entries=self._settings.dead_letter_max
                )
            return self._dead_letters

    def _broker_locked(self) -> redis.Redis:
        if self._redis is None:
            # Short timeouts: a broker that does not answer fails the call, not the worker.
            self._redis = redis.Redis.from_url(
                self._settings.celery_broker_url, socket_connect_timeout=5, socket_timeout=5
            )
        return self._redis

    def close(self) -> None:
        with self._lock:
            for client in (self._storage, self._executors, self._redis):
                if client is not None:
                    client.close()
            self._storage = self._executors = self._dead_letters = self._redis = None
