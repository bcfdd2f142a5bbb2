"""The routing decision: which path (legacy or Celery) an evaluation takes, and where it may fall back.

Pure functions of their arguments. Where the migration settings come from (the shared Redis
document, see `migration.source`) is the caller's business: the decision only sees
`MigrationSettings` (`migration.models`).
"""

from __future__ import annotations

import hashlib

from crucible_contracts.names import Backend
from crucible_gateway.migration.models import MigrationSettings

_BUCKET_SPACE = 2**64
SHADOW_SALT = "shadow:"


def bucket(key: str) -> float:
    """A stable position in [0, 1) for `key`: the first 64 bits of its SHA-256, scaled.

    The same key lands in the same bucket in every process and on every run (unlike `hash()`).
    """
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / _BUCKET_SPACE


def routing_key_of(*, eval_id: str, routing_key: str | None) -> str:
    """The client's routing key when it gave one (keeps a user on one path), else the eval_id."""
    return routing_key if routing_key else eval_id


def choose_backend(
    *, eval_id: str, routing_key: str | None = None, migration: MigrationSettings
) -> Backend:
    """Legacy when forced or Celery is disabled; otherwise Celery iff bucket < celery_percentage.

    Raising the percentage only ever moves evaluations from legacy to Celery, never back.
    """
    if migration.force_legacy or not migration.celery_enabled:
        return Backend.LEGACY
    key = routing_key_of(eval_id=eval_id, routing_key=routing_key)
    return Backend.CELERY if bucket(key) < migration.celery_percentage else Backend.LEGACY


def shadow_backend(
    *, eval_id: str, primary: Backend, routing_key: str | None = None, migration: MigrationSettings
) -> Backend | None:
    """The path of the shadow run of this evaluation (always the other one), or None for no shadow.

    The shadow share is bucketed like the split but with its own salt, so that which evaluations
    are shadowed does not depend on which path they took, and raising `shadow_percentage` only
    adds evaluations to the shadowed set.
    """
    if not migration.shadowing:
        return None
    key = routing_key_of(eval_id=eval_id, routing_key=routing_key)
    return primary.other if bucket(SHADOW_SALT + key) < migration.shadow_percentage else None


def fallback_for(chosen: Backend, *, migration: MigrationSettings) -> Backend | None:
    """The path to try when `chosen` cannot take an evaluation, or None when there is none.

    Falling back to legacy is always allowed: it is the path every deployment runs. Falling back to
    Celery is allowed only while Celery is enabled and legacy is not forced, because an operator
    who disabled or bypassed Celery may have no Celery worker running to drain its queues.
    """
    if chosen is Backend.CELERY:
        return Backend.LEGACY
    if migration.celery_enabled and not migration.force_legacy:
        return Backend.CELERY
    return None
