"""The migration audit log: every change of the settings document, kept durably by storage.

The document's compare-and-set stays in the state Redis (`MigrationStore.update`); the state
Redis may lose its data, so the log lives in storage's database. The two cannot be written in
one transaction, so a change goes through an outbox:

1. **Before** anything changes, storage must answer (its database included) and take every
   entry still waiting in the outbox. When it cannot, the change is refused with 503
   (`Unavailable`) and nothing is written: an operator's change is never made while its entry
   could not be kept, and the operator knows to try again.
2. The versioned write puts the new document **and** its entry in the outbox
   (`<prefix>:audit:outbox`) in one Redis transaction: no change without an entry waiting.
3. The entry is delivered at once. Should storage fail in the moment between 1 and 3, the
   change stands (it is in force; answering 503 would be a lie) and its entry stays in the
   outbox, logged as an error, until the next change or the leader's next round delivers it.
   Storage records an entry once per `audit_id`, so delivering again is harmless.

What can still be lost: an entry in that outbox when the state Redis loses its data before
storage is back, i.e. two failures at once, the second of which also loses the change itself.
"""

from __future__ import annotations

import logging
from typing import Any

from crucible_contracts.errors import CrucibleError, Unavailable
from crucible_contracts.models import AuditEntry
from crucible_gateway.migration.models import MigrationDocument
from crucible_gateway.migration.store import MigrationStore
from crucible_runtime.clients import StorageClient

log = logging.getLogger(__name__)


class AuditLog:
    """Audited changes of one migration document (`store.prefix` names it in storage)."""

    def __init__(self, *, store: MigrationStore, storage: StorageClient) -> None:
        self.store = store
        self.storage = storage

    def change(
        self,
        *,
        expected_version: int,
        changes: dict[str, Any],
        actor: str,
        reason: str,
        action: str = "update",
    ) -> MigrationDocument:
        """`MigrationStore.update` with its entry delivered to storage (see the module's steps).

        Raises what `update` raises (InvalidInput, Conflict, Unavailable), and Unavailable when
        storage cannot take the audit entries waiting before the change; then nothing changed.
        """
        try:
            self.storage.ping()
            self.flush()
        except CrucibleError as exc:
            raise Unavailable(
                f"storage cannot record the audit log ({exc}); nothing was changed", retry_after=1
            ) from exc
        document = self.store.update(
            expected_version=expected_version,
            changes=changes,
            actor=actor,
            reason=reason,
            action=action,
        )
        self.deliver()
        return document

    def flush(self) -> int:
        """Deliver every entry waiting in the outbox, oldest first; how many were delivered.
        Raises Unavailable (Redis or storage down) or storage's refusal; undelivered stay."""
        delivered = 0
        for raw, entry in self.store.pending_audit():
            self.storage.record_audit(entry)
            self.store.audit_delivered(raw)
            delivered += 1
        return delivered

    def deliver(self) -> None:
        """`flush`, for after a change: what storage cannot take now stays in the outbox for the
        next change or the leader's next round, and is logged, never dropped."""
        try:
            self.storage.ping()
            self.flush()
        except CrucibleError as exc:
            log.error("audit entries wait in the outbox, storage did not take them: %s", exc)

    def entries(self, *, limit: int, offset: int = 0) -> list[AuditEntry]:
        """This document's log, newest first, from storage (Unavailable while it is down)."""
        return self.storage.audit(document=self.store.prefix, limit=limit, offset=offset)
