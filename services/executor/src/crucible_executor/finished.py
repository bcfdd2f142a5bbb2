"""The results of runs that ended, kept for a while: a retry of the same run collects its result.

A consumer that died after the program started, a redelivered Celery message, a reconciler: each
sends `POST /execute` again for a run that may already have ended here. Within the retention
window that call answers the recorded result instead of running the program a second time. The
store is bounded in time (`RESULT_RETENTION_SECONDS`) and in memory (`RESULT_RETENTION_MB`, the
programs' output and error counted); past either bound the oldest results go first, and a call
for a result no longer kept runs the program again, as it would have without this store.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from crucible_contracts.models import ExecuteResult
from crucible_contracts.names import Role

RunKey = tuple[str, Role]


@dataclass(frozen=True)
class _Kept:
    result: ExecuteResult
    size: int
    until: float


def _size(result: ExecuteResult) -> int:
    """Roughly what a kept result holds: its output and error dominate (up to 1 MiB each, and
    as much again in base64 when they are not UTF-8)."""
    streams = (result.output, result.error, result.output_base64, result.error_base64)
    return sum(len(stream or "") for stream in streams) + 512


class FinishedRuns:
    """Results by (eval_id, role), oldest first; lives on the event loop, no locks needed."""

    def __init__(
        self,
        *,
        seconds: float,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._clock = clock
        self._kept: OrderedDict[RunKey, _Kept] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, key: RunKey) -> ExecuteResult | None:
        self._expire()
        kept = self._kept.get(key)
        return kept.result if kept is not None else None

    def put(self, key: RunKey, result: ExecuteResult) -> None:
        if self.seconds <= 0:
            return
        self._drop(key)
        kept = _Kept(result, _size(result), self._clock() + self.seconds)
        self._kept[key] = kept
        self._bytes += kept.size
        while self._bytes > self.max_bytes and self._kept:
            self._drop(next(iter(self._kept)))
        self._expire()

    def discard(self, eval_id: str, role: Role | None = None) -> None:
        """Forget `eval_id`'s result of `role`, or of every role (it was killed: a later call
        must run it afresh)."""
        for key in [key for key in self._kept if key[0] == eval_id and role in (None, key[1])]:
            self._drop(key)

    def _expire(self) -> None:
        now = self._clock()
        while self._kept and next(iter(self._kept.values())).until <= now:
            self._drop(next(iter(self._kept)))

    def _drop(self, key: RunKey) -> None:
        kept = self._kept.pop(key, None)
        if kept is not None:
            self._bytes -= kept.size
