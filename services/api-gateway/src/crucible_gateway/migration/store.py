"""The shared migration settings in Redis: the versioned document, compare-and-set writes, the
audit outbox, the guard's decisions.

Keys (under a prefix, MIGRATION_KEY_PREFIX): `<prefix>:document` holds the `MigrationDocument`,
`<prefix>:audit:outbox` the `AuditEntry` of each change until storage has it, oldest first (the
log itself is storage's: see `migration.audit`);
the guard's `<prefix>:guard` (latest decision, expiring), `<prefix>:guard:decisions` (a capped
list, newest first) and `<prefix>:guard:streak` (the breach streak a new leader carries on).
A write names the version it read; WATCH/MULTI makes it fail with Conflict when anyone wrote in
between, so exactly one of several concurrent writers of one version wins.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import redis
from pydantic import ValidationError

from crucible_contracts.errors import Conflict, InvalidInput, Unavailable
from crucible_contracts.models import AuditEntry
from crucible_gateway.migration.hysteresis import GuardStreak
from crucible_gateway.migration.models import (
    EDITABLE_FIELDS,
    NESTED_FIELDS,
    GuardStatus,
    MigrationDocument,
)


class MigrationStore:
    """The document and its audit log in one Redis, under `prefix`."""

    def __init__(self, client: redis.Redis, *, prefix: str, guard_history_max: int = 200) -> None:
        self._redis = client
        self.prefix = prefix
        self.document_key = f"{prefix}:document"
        self.outbox_key = f"{prefix}:audit:outbox"
        self.leader_key = f"{prefix}:leader"
        self.guard_key = f"{prefix}:guard"
        self.guard_decisions_key = f"{prefix}:guard:decisions"
        self.guard_streak_key = f"{prefix}:guard:streak"
        self._guard_history_max = guard_history_max

    def load(self) -> MigrationDocument | None:
        """The stored document, or None when there is none. Raises redis.RedisError."""
        raw = self._redis.get(self.document_key)
        return None if raw is None else MigrationDocument.model_validate_json(raw)

    def seed(self, document: MigrationDocument) -> MigrationDocument:
        """Store `document` only if none exists (SET NX); returns the document now in force."""
        self._redis.set(self.document_key, document.model_dump_json(), nx=True)
        stored = self.load()
        return stored if stored is not None else document

    def update(
        self,
        *,
        expected_version: int,
        changes: dict[str, Any],
        actor: str,
        reason: str,
        action: str = "update",
    ) -> MigrationDocument:
        """Apply `changes` if the stored version is still `expected_version`, and put the
        change's audit entry in the outbox in the same transaction (`migration.audit` delivers it).

        Raises InvalidInput (empty reason, unknown field, invalid value), Conflict when
        the version moved on (details name the current version), Unavailable when Redis fails.
        """
        if not reason.strip():
            raise InvalidInput("reason", "a non-empty reason is required for every change")
        unknown = set(changes) - set(EDITABLE_FIELDS)
        if unknown:
            raise InvalidInput(sorted(unknown)[0], "not a field an operator may change")
        try:
            with self._redis.pipeline() as pipe:
                pipe.watch(self.document_key)
                current = self._current(pipe)
                if current.version != expected_version:
                    raise _stale(expected_version, current.version)
                new = _apply(current, changes, actor=actor)
                entry = _entry(current, new, document=self.prefix, action=action, reason=reason)
                pipe.multi()
                pipe.set(self.document_key, new.model_dump_json())
                pipe.rpush(self.outbox_key, entry.model_dump_json())
                pipe.execute()
                return new
        except redis.WatchError:
            latest = self.load()
            raise _stale(expected_version, latest.version if latest else None) from None
        except redis.RedisError as exc:
            raise Unavailable(f"state Redis: {exc}") from exc

    def pending_audit(self) -> list[tuple[bytes, AuditEntry]]:
        """The audit entries storage does not have yet, oldest first, each with its stored form
        (for `audit_delivered`)."""
        try:
            raw = self._redis.lrange(self.outbox_key, 0, -1)
        except redis.RedisError as exc:
            raise Unavailable(f"state Redis: {exc}") from exc
        return [(item, AuditEntry.model_validate_json(item)) for item in raw]

    def audit_delivered(self, raw: bytes) -> None:
        """Take one delivered entry (as `pending_audit` gave it) out of the outbox."""
        try:
            self._redis.lrem(self.outbox_key, 1, raw)
        except redis.RedisError as exc:
            raise Unavailable(f"state Redis: {exc}") from exc

    def record_guard_decision(
        self, status: GuardStatus, streak: GuardStreak, *, ttl_seconds: float
    ) -> None:
        """Store one guard decision, in one transaction: as the latest (expiring after
        `ttl_seconds`, so that a guard nobody runs shows none), at the head of the capped
        history, and the streak after it. Raises redis.RedisError."""
        with self._redis.pipeline() as pipe:
            pipe.set(self.guard_key, status.model_dump_json(), px=max(1, int(ttl_seconds * 1000)))
            pipe.lpush(self.guard_decisions_key, status.model_dump_json())
            pipe.ltrim(self.guard_decisions_key, 0, self._guard_history_max - 1)
            pipe.set(self.guard_streak_key, streak.model_dump_json())
            pipe.execute()

    def guard_streak(self) -> GuardStreak | None:
        """The breach streak the last decision left, or None."""
        try:
            raw = self._redis.get(self.guard_streak_key)
        except redis.RedisError as exc:
            raise Unavailable(f"state Redis: {exc}") from exc
        return None if raw is None else GuardStreak.model_validate_json(raw)

    def guard_decisions(self, *, limit: int = 50) -> list[GuardStatus]:
        """The newest `limit` guard decisions, newest first."""
        try:
            raw = self._redis.lrange(self.guard_decisions_key, 0, limit - 1)
        except redis.RedisError as exc:
            raise Unavailable(f"state Redis: {exc}") from exc
        return [GuardStatus.model_validate_json(item) for item in raw]

    def guard_status(self) -> GuardStatus | None:
        """The latest guard evaluation, or None when no leader evaluated lately."""
        try:
            raw = self._redis.get(self.guard_key)
        except redis.RedisError as exc:
            raise Unavailable(f"state Redis: {exc}") from exc
        return None if raw is None else GuardStatus.model_validate_json(raw)

    def _current(self, pipe: redis.client.Pipeline) -> MigrationDocument:
        raw = pipe.get(self.document_key)
        if raw is None:
            raise Conflict("no migration document is stored yet", current_version=None)
        return MigrationDocument.model_validate_json(raw)


def _stale(expected: int, current: int | None) -> Conflict:
    return Conflict(
        f"expected_version {expected} is stale: the current version is {current}",
        expected_version=expected,
        current_version=current,
    )


def _apply(current: MigrationDocument, changes: dict[str, Any], *, actor: str) -> MigrationDocument:
    data = current.model_dump()
    for name, value in changes.items():
        if name in NESTED_FIELDS and isinstance(value, dict):
            data[name] = {**data[name], **value}
        else:
            data[name] = value
    data.update(version=current.version + 1, updated_at=datetime.now(UTC), updated_by=actor)
    try:
        new = MigrationDocument.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(str(part) for part in problem["loc"]) or "body"
        raise InvalidInput(field, problem["msg"]) from exc
    return _bump_rules_version(current, new)


def _entry(
    current: MigrationDocument, new: MigrationDocument, *, document: str, action: str, reason: str
) -> AuditEntry:
    """The audit entry of the change from `current` to `new`; InvalidInput when it is not one
    storage would take (e.g. a reason past its length), so that nothing is written."""
    try:
        return AuditEntry(
            document=document,
            actor=new.updated_by,
            at=new.updated_at,
            action=action,
            version_before=current.version,
            version_after=new.version,
            changes=_diff(current, new),
            reason=reason.strip(),
        )
    except ValidationError as exc:
        problem = exc.errors()[0]
        raise InvalidInput(".".join(map(str, problem["loc"])) or "body", problem["msg"]) from exc


def _bump_rules_version(current: MigrationDocument, new: MigrationDocument) -> MigrationDocument:
    """New normalisation rules get a new rules_version, so that each comparison names its rules."""
    old_rules, new_rules = current.comparison, new.comparison
    if new_rules.rules == old_rules.rules or new_rules.rules_version > old_rules.rules_version:
        return new
    bumped = new_rules.model_copy(update={"rules_version": old_rules.rules_version + 1})
    return new.model_copy(update={"comparison": bumped})


def _diff(old: MigrationDocument, new: MigrationDocument) -> dict[str, list[Any]]:
    before, after = old.model_dump(mode="json"), new.model_dump(mode="json")
    return {
        name: [before[name], after[name]] for name in EDITABLE_FIELDS if before[name] != after[name]
    }
