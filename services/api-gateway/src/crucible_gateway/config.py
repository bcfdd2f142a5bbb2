"""The api-gateway's settings: migration defaults, downstream URLs, client auth, input limits and
the leader's housekeeping."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from crucible_contracts.limits import MIB, Limits
from crucible_contracts.names import Backend
from crucible_contracts.settings import UNSAFE_SECRETS, ServiceSettings, split_urls
from crucible_contracts.tenancy import DEFAULT_TENANT, TENANT_PATTERN, is_tenant
from crucible_gateway.housekeeping.stuck import Rules
from crucible_gateway.migration.models import MigrationMode, MigrationSettings

_DEFAULT_LIMITS = Limits()
SECONDS_PER_DAY = 86_400


class Settings(ServiceSettings):
    """Read from the environment (names as in DESIGN.md); invalid values refuse to start."""

    celery_enabled: bool = False
    celery_percentage: float = Field(default=0.0, ge=0.0, le=1.0)
    # The environment names are DESIGN.md's; in code and in the migration document they are
    # `force_legacy` and `mode`, one name each.
    force_legacy: bool = Field(default=False, validation_alias="force_legacy_queue")
    mode: MigrationMode = Field(default=MigrationMode.SPLIT, validation_alias="migration_mode")
    # The share of evaluations that get a shadow run while MIGRATION_MODE=shadow.
    shadow_percentage: float = Field(default=1.0, ge=0.0, le=1.0)

    celery_broker_url: str = "redis://127.0.0.1:6380/0"
    redis_url: str = "redis://127.0.0.1:6381/0"
    queue_service_url: str = "http://127.0.0.1:8002"
    storage_service_url: str = "http://127.0.0.1:8082"
    # Every executor, so that a cancel can stop a program wherever it runs (both paths' lists).
    executor_service_url: str = "http://127.0.0.1:8084,http://127.0.0.1:8085"
    legacy_executor_url: str = "http://127.0.0.1:8083"

    # Migration control: the shared settings document in REDIS_URL, under this key prefix.
    migration_key_prefix: str = Field(default="crucible:migration", min_length=1)
    migration_refresh_interval: float = Field(default=0.5, gt=0, le=10)
    # Guard decisions kept in the state Redis (one per SUPERVISOR_INTERVAL), newest first.
    guard_history_max: int = Field(default=200, gt=0, le=10_000)
    # The leader replica's loop: comparison sweep, rollback guard and ramp, every this many seconds.
    supervisor_interval: float = Field(default=1.0, gt=0, le=60)
    # How long a leader's lease lasts unless renewed; another replica takes over after it.
    leader_lease_seconds: float = Field(default=5.0, gt=0)

    # Housekeeping, by the leader (housekeeping/), each job on its own interval. The names are
    # those the Celery beat schedule read before the leader took housekeeping over.
    retention_days: float = Field(default=30, gt=0)
    purge_interval_seconds: float = Field(default=3600, gt=0)
    # The reconciler of runs stuck in queued or running.
    reconcile_interval_seconds: float = Field(default=5, gt=0)
    # A legacy run queued this long is looked up in the queue-service (whose deque a restart loses).
    reconcile_queued_after_seconds: float = Field(default=15, ge=0)
    # A Celery run queued this long while no Celery queue holds a message is sent again.
    reconcile_celery_queued_after_seconds: float = Field(default=15, ge=0)
    # A running run's lease is its timeout + this grace from its last sign of life (its start,
    # a retry): past it, its consumer is taken for gone and the run is sent again to collect.
    reconcile_running_grace_seconds: float = Field(default=15, ge=0)
    # Times a run lost by its queue, or by a consumer that died, is sent again before it ends
    # `error`.
    reconcile_max_redispatches: int = Field(default=3, ge=0)
    # Stuck runs looked at per backend and round (the oldest first).
    reconcile_batch: int = Field(default=100, ge=1, le=500)

    operator_token: str | None = None
    # Client keys seeded into storage at start: "tenant:key" entries, comma-separated; a bare
    # "key" belongs to tenant `default`. Seeded keys get submit and read.
    api_keys: str = ""
    # Whether a request without a key is refused (401). Unset: only when API_KEYS seeds keys;
    # with neither, the gateway runs in local mode (one `default` tenant, no key needed).
    require_api_keys: bool | None = None
    # How long a replica keeps the answer to a key's look-up: a revoked key is refused by every
    # replica within this time.
    key_cache_seconds: float = Field(default=1.0, ge=0, le=1.0)
    # Evaluations a tenant may have queued or running at once, unless its own limit says. What a
    # tenant sends past it is refused (429) before it reaches a queue, so another tenant's work
    # waits behind at most this many of it (docs/security.md, "Fair share"): one batch's worth.
    tenant_max_in_flight: int = Field(default=100, ge=1)

    # Per-tenant request rate on /api/* (ratelimit.py), shared by every replica through REDIS_URL:
    # requests per second on average, counted over a moving window of RATE_LIMIT_WINDOW_SECONDS,
    # so a tenant may spend rate x window at once (its burst). 0: no limit, unless a tenant's own.
    rate_limit_per_second: float = Field(default=50.0, ge=0)
    rate_limit_window_seconds: int = Field(default=2, ge=1, le=3600)
    rate_limit_key_prefix: str = Field(default="crucible:ratelimit", min_length=1)

    gateway_languages: str = "python,javascript"
    max_code_bytes: int = Field(default=_DEFAULT_LIMITS.max_code_bytes, gt=0)
    max_stdin_bytes: int = Field(default=_DEFAULT_LIMITS.max_stdin_bytes, ge=0)
    min_timeout: float = Field(default=_DEFAULT_LIMITS.min_timeout, gt=0)
    max_timeout: float = Field(default=_DEFAULT_LIMITS.max_timeout, gt=0)
    default_timeout: float = Field(default=_DEFAULT_LIMITS.default_timeout, gt=0)
    max_batch: int = Field(default=_DEFAULT_LIMITS.max_batch, gt=0)
    # The public edge's body caps (docs/security.md): one evaluation (64 KiB of code, 1 MiB of
    # stdin, even fully JSON-escaped) fits MAX_BODY_BYTES; a batch gets MAX_BATCH_BODY_BYTES.
    max_body_bytes: int = Field(default=8 * MIB, gt=0)
    max_batch_body_bytes: int = Field(default=32 * MIB, gt=0)

    # Live events (events/): listeners one gateway process serves at once (past it: 503 with
    # Retry-After of EVENTS_RETRY_AFTER_SECONDS), entries one listener may fall behind before it
    # is closed (a `closed` notice; it resumes with Last-Event-ID), and the keep-alive comment.
    events_max_listeners: int = Field(default=1000, ge=1)
    events_queue_size: int = Field(default=500, ge=1)
    events_ping_seconds: float = Field(default=15, gt=0)
    # The operators' stream sends what arrived within this long of an event in one write: at
    # 100 events/s and a hundred listeners, a write per event each would cost the event loop
    # (which the submit path shares) ten thousand writes a second. An evaluation's own stream
    # never waits.
    events_batch_seconds: float = Field(default=0.05, ge=0, le=1)
    events_retry_after_seconds: float = Field(default=5, gt=0)

    # How long a dead dependency may hold a request before the gateway gives up on it.
    broker_connect_timeout: float = Field(default=1.5, gt=0)
    downstream_timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _check_gateway(self) -> Self:
        if not self.min_timeout <= self.default_timeout <= self.max_timeout:
            raise ValueError("DEFAULT_TIMEOUT must lie between MIN_TIMEOUT and MAX_TIMEOUT")
        if not self.languages:
            raise ValueError("GATEWAY_LANGUAGES must name at least one language")
        if self.environment == "production":
            for token in self.operator_tokens.values():
                if len(token) < 16 or token.lower() in UNSAFE_SECRETS:
                    raise ValueError("OPERATOR_TOKEN must be a secret of at least 16 characters")
            for _, key in self.seeded_keys:
                if len(key) < 16 or key.lower() in UNSAFE_SECRETS:
                    raise ValueError("every key of API_KEYS must be at least 16 characters")
        for tenant, _ in self.seeded_keys:
            if not is_tenant(tenant):
                raise ValueError(f"API_KEYS: {tenant!r} is not a tenant name ({TENANT_PATTERN})")
        return self

    @property
    def operator_tokens(self) -> dict[str, str]:
        """Operator name -> token: "name:token,name2:token2", or one bare token named "operator"."""
        tokens: dict[str, str] = {}
        for part in (self.operator_token or "").split(","):
            name, sep, token = part.strip().partition(":")
            if not sep:
                name, token = "operator", name
            if token.strip():
                tokens[name.strip() or "operator"] = token.strip()
        return tokens

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.gateway_languages.split(",") if part.strip())

    @property
    def seeded_keys(self) -> tuple[tuple[str, str], ...]:
        """(tenant, key) of every API_KEYS entry: "tenant:key", or a bare "key" of `default`."""
        entries = []
        for part in self.api_keys.split(","):
            tenant, sep, key = part.strip().partition(":")
            if not sep:
                tenant, key = DEFAULT_TENANT, tenant
            if key.strip():
                entries.append((tenant.strip(), key.strip()))
        return tuple(entries)

    @property
    def keys_required(self) -> bool:
        if self.require_api_keys is not None:
            return self.require_api_keys
        return bool(self.seeded_keys)

    def all_executor_urls(self) -> list[str]:
        urls = split_urls(self.legacy_executor_url) + split_urls(self.executor_service_url)
        return list(dict.fromkeys(urls))

    def limits(self) -> Limits:
        return Limits(
            max_code_bytes=self.max_code_bytes,
            max_stdin_bytes=self.max_stdin_bytes,
            min_timeout=self.min_timeout,
            max_timeout=self.max_timeout,
            default_timeout=self.default_timeout,
            max_batch=self.max_batch,
        )

    def migration(self) -> MigrationSettings:
        """The split the environment asks for: only the seed of the shared document (when absent)."""
        return MigrationSettings.model_validate(
            self.model_dump(include=set(MigrationSettings.model_fields))
        )

    def retention_seconds(self) -> float:
        return self.retention_days * SECONDS_PER_DAY

    def reconcile_rules(self) -> Rules:
        return Rules(
            queued_after={
                Backend.LEGACY: self.reconcile_queued_after_seconds,
                Backend.CELERY: self.reconcile_celery_queued_after_seconds,
            },
            running_grace=self.reconcile_running_grace_seconds,
            max_redispatches=self.reconcile_max_redispatches,
        )
