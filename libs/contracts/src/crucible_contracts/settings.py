"""The settings base every service's `Settings` extends: environment-driven, refusing unsafe secrets."""

from __future__ import annotations

import os
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from crucible_contracts.limits import KIB, MIB
from crucible_contracts.retry import EXECUTOR_BUSY, RECORD_RESULT, TRANSIENT, Budgets, RetryPolicy

UNSAFE_SECRETS = frozenset({"changeme", "change-me", "secret", "password", "admin"})


class ServiceSettings(BaseSettings):
    """Fields here are read by every service; each service adds its own.

    `environment=production` makes a missing or well-known `INTERNAL_API_KEY` a start-up error.
    """

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    environment: str = "local"
    log_level: str = "INFO"
    internal_api_key: str | None = None

    # The edge (docs/security.md): request bodies over MAX_BODY_BYTES answer 413 before they are
    # read in full; a body whose next chunk takes over BODY_IDLE_TIMEOUT_SECONDS, or that is not
    # in after BODY_TIMEOUT_SECONDS, answers 408 (crucible_runtime.edge). The internal services'
    # cap fits a run's result (two 1 MiB outputs, JSON-escaped); the gateway sets its own. The
    # request head is bounded by the server: ServerSettings.
    max_body_bytes: int = Field(default=16 * MIB, gt=0)
    body_idle_timeout_seconds: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    body_timeout_seconds: float = Field(default=60.0, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _refuse_unsafe_secrets(self) -> Self:
        if self.environment == "production":
            key = self.internal_api_key or ""
            if len(key) < 16 or key.lower() in UNSAFE_SECRETS:
                raise ValueError(
                    "INTERNAL_API_KEY must be set to a secret of at least 16 characters "
                    "when ENVIRONMENT=production"
                )
        return self


class ServerSettings(BaseSettings):
    """How `crucible_runtime.serve` runs a service's HTTP server (the same for every service).

    A request head (request line and headers) over MAX_HEADER_BYTES answers 431; one not complete
    HEADER_TIMEOUT_SECONDS after its connection opened or its previous response ended answers 408
    and the connection is closed. An idle keep-alive connection is closed after
    KEEP_ALIVE_TIMEOUT_SECONDS.
    """

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    max_header_bytes: int = Field(default=16 * KIB, ge=1 * KIB, le=1 * MIB)
    header_timeout_seconds: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    keep_alive_timeout_seconds: float = Field(default=5.0, gt=0, allow_inf_nan=False)


# Retry settings that had another name on the legacy path: refused, naming the one to use.
RENAMED = {
    f"QUEUE_{old}_{part}": f"{new}_RETRY_{new_part}"
    for old, new in (("TRANSIENT", "TRANSIENT"), ("BUSY", "BUSY"), ("RECORD", "RECORD"))
    for part, new_part in (
        ("ATTEMPTS", "MAX_ATTEMPTS"),
        ("BASE_DELAY", "BASE_DELAY"),
        ("MAX_DELAY", "MAX_DELAY"),
    )
} | {"QUEUE_MAX_ATTEMPTS": "MAX_WORKER_LOSSES"}


class RetrySettings(BaseSettings):
    """The retry budgets of a consumer, one set of names on both paths (see retry.Budgets)."""

    # Executor answered busy: load, not a failure, so many quick retries.
    busy_retry_max_attempts: int = Field(default=EXECUTOR_BUSY.max_attempts, ge=1)
    busy_retry_base_delay: float = Field(default=EXECUTOR_BUSY.base_delay, ge=0)
    busy_retry_max_delay: float = Field(default=EXECUTOR_BUSY.max_delay, ge=0)
    # Executors or storage unreachable (or 5xx): exponential back-off with jitter, then `error`.
    transient_retry_max_attempts: int = Field(default=TRANSIENT.max_attempts, ge=1)
    transient_retry_base_delay: float = Field(default=TRANSIENT.base_delay, ge=0)
    transient_retry_max_delay: float = Field(default=TRANSIENT.max_delay, ge=0)
    # No transient retry starts later than this after the run's first failure.
    transient_retry_window_seconds: float = Field(default=TRANSIENT.window, gt=0)
    # Recording a finished program's result: worth waiting for rather than running it again.
    record_retry_max_attempts: int = Field(default=RECORD_RESULT.max_attempts, ge=1)
    record_retry_base_delay: float = Field(default=RECORD_RESULT.base_delay, ge=0)
    record_retry_max_delay: float = Field(default=RECORD_RESULT.max_delay, ge=0)
    # Worker processes lost running one run (killed, OOM) before it ends `error`.
    max_worker_losses: int = Field(default=Budgets.worker_losses, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _refuse_old_names(cls, data: object) -> object:
        used = sorted(name for name in RENAMED if name in os.environ)
        if used:
            renames = ", ".join(f"{name} is now {RENAMED[name]}" for name in used)
            raise ValueError(f"renamed settings: {renames}")
        return data

    def budgets(self) -> Budgets:
        return Budgets(
            busy=RetryPolicy(
                max_attempts=self.busy_retry_max_attempts,
                base_delay=self.busy_retry_base_delay,
                max_delay=self.busy_retry_max_delay,
            ),
            transient=RetryPolicy(
                max_attempts=self.transient_retry_max_attempts,
                base_delay=self.transient_retry_base_delay,
                max_delay=self.transient_retry_max_delay,
                window=self.transient_retry_window_seconds,
            ),
            record=RetryPolicy(
                max_attempts=self.record_retry_max_attempts,
                base_delay=self.record_retry_base_delay,
                max_delay=self.record_retry_max_delay,
            ),
            worker_losses=self.max_worker_losses,
        )


def split_urls(value: str) -> list[str]:
    """A comma-separated URL list from the environment, trailing slashes removed, blanks dropped."""
    return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
