"""Positions in the events stream: Redis stream entry ids, which are also the SSE `id:`."""

from __future__ import annotations

import re
from typing import NamedTuple

# `<milliseconds>-<sequence>`, each an unsigned 64-bit integer, as Redis makes them.
_ENTRY_ID = re.compile(r"(\d{1,20})-(\d{1,20})")
_MAX_PART = 2**64 - 1


class StreamId(NamedTuple):
    """An entry id of a Redis stream; ordered as Redis orders them."""

    ms: int
    seq: int

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"

    @classmethod
    def parse(cls, text: str) -> StreamId:
        """The id `text` spells (`1733300000000-0`); ValueError for anything else."""
        match = _ENTRY_ID.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"not a stream entry id: {text[:64]!r}")
        ms, seq = int(match.group(1)), int(match.group(2))
        if ms > _MAX_PART or seq > _MAX_PART:
            raise ValueError(f"not a stream entry id: {text[:64]!r}")
        return cls(ms, seq)


# Before every entry Redis can make.
ORIGIN = StreamId(0, 0)
