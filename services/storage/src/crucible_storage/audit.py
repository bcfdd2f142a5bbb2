"""The audit log of settings changes: record each entry once, page through it newest first."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crucible_contracts.models import AuditEntry
from crucible_storage.tables import AuditRecord


def record(*, session: Session, entry: AuditEntry) -> tuple[AuditEntry, bool]:
    """Record `entry` unless an entry of its `audit_id` is recorded already: (the entry recorded
    first, True when it is this call's). A writer that delivers again after a lost answer
    therefore never doubles the log."""
    existing = _by_audit_id(session, entry.audit_id)
    if existing is not None:
        return _view(existing), False
    row = AuditRecord(**entry.model_dump())
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # a concurrent delivery of the same entry won
        session.rollback()
        winner = _by_audit_id(session, entry.audit_id)
        if winner is None:
            raise
        return _view(winner), False
    return _view(row), True


def page(*, session: Session, document: str | None, limit: int, offset: int) -> list[AuditEntry]:
    """Entries newest first (in the order recorded), of one `document` or of all."""
    query = select(AuditRecord).order_by(AuditRecord.id.desc()).limit(limit).offset(offset)
    if document is not None:
        query = query.where(AuditRecord.document == document)
    return [_view(row) for row in session.scalars(query)]


def _by_audit_id(session: Session, audit_id: str) -> AuditRecord | None:
    return session.scalar(select(AuditRecord).where(AuditRecord.audit_id == audit_id))


def _view(row: AuditRecord) -> AuditEntry:
    return AuditEntry.model_validate(row, from_attributes=True)
