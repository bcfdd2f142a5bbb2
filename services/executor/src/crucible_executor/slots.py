"""The executor's slots: at most N programs at once, one run per (eval_id, role), never a queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from crucible_contracts.errors import Busy
from crucible_contracts.models import ExecuteResult
from crucible_contracts.names import Role
from crucible_executor.runner import Execution

log = logging.getLogger(__name__)

RunKey = tuple[str, Role]
Start = Callable[[Execution], Awaitable[ExecuteResult]]


@dataclass
class Running:
    execution: Execution
    task: asyncio.Task[ExecuteResult]


class SlotRegistry:
    """Which slot runs which (eval_id, role). Lives on the event loop: no locks needed.

    `join_or_start` starts a run in a free slot, or hands back the run already under way for the
    same key (an idempotent retry joins it); with no free slot it raises Busy at once.
    """

    def __init__(self, slots: int, *, retry_after: float = 1) -> None:
        self.slots = slots
        self.retry_after = retry_after
        self._free = list(range(slots))
        self._running: dict[RunKey, Running] = {}

    @property
    def busy(self) -> int:
        return self.slots - len(self._free)

    @property
    def free(self) -> int:
        return len(self._free)

    def running(self, key: RunKey) -> Running | None:
        return self._running.get(key)

    def join_or_start(self, key: RunKey, start: Start) -> tuple[asyncio.Task[ExecuteResult], bool]:
        """The task of the run for `key`, and whether it was already running (a join)."""
        if (current := self._running.get(key)) is not None:
            return current.task, True
        if not self._free:
            raise Busy(f"all {self.slots} slots are running programs", retry_after=self.retry_after)
        slot = self._free.pop(0)
        execution = Execution(eval_id=key[0], role=key[1], slot=slot)
        task = asyncio.create_task(start(execution), name=f"run-{key[0]}-{key[1]}")
        self._running[key] = Running(execution, task)
        task.add_done_callback(lambda _: self._release(key, slot))
        return task, False

    def _release(self, key: RunKey, slot: int) -> None:
        self._running.pop(key, None)
        self._free.append(slot)
        self._free.sort()

    def kill(self, eval_id: str) -> bool:
        """End every run of `eval_id` (all roles); True when there was one."""
        found = [r for (run_eval, _), r in self._running.items() if run_eval == eval_id]
        for running in found:
            running.execution.kill()
        return bool(found)

    async def shutdown(self) -> None:
        """Kill and reap every running program (executor stopping)."""
        tasks = [running.task for running in self._running.values()]
        for running in self._running.values():
            running.execution.kill()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, BaseException):
                log.error("a run failed while the executor stopped: %r", outcome)
