"""The operations domain's response bodies (dead-letter pages, replays, purges)."""

from __future__ import annotations

from pydantic import BaseModel

from crucible_contracts.models import DeadLetter, RunView


class DeadLetterPage(BaseModel):
    items: list[DeadLetter]
    total: int
    limit: int
    offset: int


class Replayed(BaseModel):
    entry: DeadLetter
    run: RunView


class Purged(BaseModel):
    purged: int
