"""The executor's slots: at most N programs at once, one run per (eval_id, role), never a queue;
a call for a run that ended lately collects its kept result (finished.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from crucible_contracts.errors import Busy
from crucible_contracts.models import ExecuteResult
from crucible_contracts.names import Role
from crucible_contracts.status import Status
from crucible_executor.finished import FinishedRuns
from crucible_executor.runner import Execution

log = logging.getLogger(__name__)

RunKey = tuple[str, Role]
Start = Callable[[Execution], Awaitable[ExecuteResult]]


@dataclass
class Running:
    execution: Execution
    task: asyncio.Task[ExecuteResult]
    # The run's result, for callers: set by the run as soon as it is known (its sandbox may
    # still be being torn down), else when the task ends.
    answer: asyncio.Future[ExecuteResult]
    # Set once the run has left its slot (its program reaped and answered, the slot free for
    # the next run, which may start while this task still tears its sandbox down: the two
    # sandboxes never share a uid, a cgroup or a tmpfs).
    released: asyncio.Event = field(default_factory=asyncio.Event)


class How(StrEnum):
    """How a call got its run: started it, joined it while it ran, or collected its result."""

    STARTED = "started"
    JOINED = "joined"
    COLLECTED = "collected"


@dataclass(frozen=True)
class Killed:
    """What POST /kill did: whether a run of the eval was there, and whether every such run has
    left its slot within the wait (False: still being reaped when the wait ran out)."""

    killed: bool
    reaped: bool


class SlotRegistry:
    """Which slot runs which (eval_id, role). Lives on the event loop: no locks needed.

    `join_or_start` starts a run in a free slot, or hands back the run already under way for the
    same key (an idempotent retry joins it); with no free slot it raises Busy at once. A run that
    was killed is never joined: a retry waits for it to leave its slot and starts afresh, so a
    kill followed by a retry cannot hand the retry the killed run's `failed`/`killed` result.
    """

    def __init__(
        self,
        slots: int,
        *,
        retry_after: float = 1,
        finished: FinishedRuns | None = None,
        prefer: Callable[[int], bool] | None = None,
        on_busy: Callable[[int], None] | None = None,
    ) -> None:
        """`prefer(slot)`: whether a free slot is the better choice (it has a warm sandbox);
        `on_busy(n)`: told how many slots run a program whenever that changes."""
        self.slots = slots
        self.prefer = prefer
        self.on_busy = on_busy
        # Tasks of runs that answered and still tear their sandbox down (shutdown waits for them).
        self._settling: set[asyncio.Task[ExecuteResult]] = set()
        self.retry_after = retry_after
        self.finished = finished
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

    async def join_or_start(
        self, key: RunKey, start: Start, *, reap_timeout: float
    ) -> tuple[asyncio.Future[ExecuteResult], How]:
        """The run for `key` and how this call got it: the kept result of a run that ended
        lately (collected), the run under way (joined), or a new one in a free slot (started).

        A killed run of `key` still in its slot is waited for (up to `reap_timeout` seconds),
        then a new run starts; Busy when it has not left by then.
        """
        deadline = time.monotonic() + reap_timeout
        while (current := self._running.get(key)) is not None and current.execution.killed:
            if not await _released([current], within=deadline - time.monotonic()):
                raise Busy(
                    f"the killed run of {key[0]} {key[1]} is still leaving its slot",
                    retry_after=self.retry_after,
                )
        return self._join_or_start_now(key, start)

    def _join_or_start_now(
        self, key: RunKey, start: Start
    ) -> tuple[asyncio.Future[ExecuteResult], How]:
        if (current := self._running.get(key)) is not None:
            return current.answer, How.JOINED
        if self.finished is not None and (result := self.finished.get(key)) is not None:
            collected: asyncio.Future[ExecuteResult] = asyncio.get_running_loop().create_future()
            collected.set_result(result)
            return collected, How.COLLECTED
        if not self._free:
            raise Busy(f"all {self.slots} slots are running programs", retry_after=self.retry_after)
        slot = self._pick()
        answer: asyncio.Future[ExecuteResult] = asyncio.get_running_loop().create_future()
        execution = Execution(eval_id=key[0], role=key[1], slot=slot, answer=answer)
        task = asyncio.create_task(start(execution), name=f"run-{key[0]}-{key[1]}")
        running = Running(execution, task, answer)
        self._running[key] = running
        task.add_done_callback(lambda _: _answer_from(task, answer))
        answer.add_done_callback(lambda _: self._release(key, slot, running))
        self._busy_changed()
        return answer, How.STARTED

    def _pick(self) -> int:
        """The lowest free slot that `prefer` likes, else the lowest free slot."""
        slot = self._free[0]
        if self.prefer is not None:
            slot = next((free for free in self._free if self.prefer(free)), slot)
        self._free.remove(slot)
        return slot

    def _release(self, key: RunKey, slot: int, running: Running) -> None:
        """The run answered: its key and slot are free (its task may still tear its sandbox
        down)."""
        if self._running.get(key) is running:
            del self._running[key]
        if not running.task.done():
            self._settling.add(running.task)
            running.task.add_done_callback(self._settling.discard)
        self._free.append(slot)
        self._free.sort()
        self._keep(key, running)
        running.released.set()
        self._busy_changed()

    def _busy_changed(self) -> None:
        if self.on_busy is not None:
            self.on_busy(self.busy)

    def _keep(self, key: RunKey, running: Running) -> None:
        """Keep the result of a run that ended by itself; a killed run's or a sandbox failure's
        is not worth collecting (a retry runs it afresh)."""
        answer = running.answer
        if self.finished is None or running.execution.killed or answer.cancelled():
            return
        if answer.exception() is None and answer.result().status is not Status.ERROR:
            self.finished.put(key, answer.result())

    async def kill(self, eval_id: str, *, role: Role | None = None, reap_timeout: float) -> Killed:
        """End every run of `eval_id` (of `role` only, when given; else all roles) and wait, up
        to `reap_timeout` seconds, until each has been reaped and has left its slot."""
        found = [
            running
            for (run_eval, run_role), running in self._running.items()
            if run_eval == eval_id and role in (None, run_role)
        ]
        for running in found:
            running.execution.kill()
        if self.finished is not None:
            self.finished.discard(eval_id, role)
        reaped = await _released(found, within=reap_timeout)
        if not reaped:
            log.warning("killed runs of eval %s still hold a slot after %gs", eval_id, reap_timeout)
        return Killed(killed=bool(found), reaped=reaped)

    async def shutdown(self) -> None:
        """Kill and reap every running program (executor stopping)."""
        tasks = [running.task for running in self._running.values()]
        tasks += self._settling
        for running in self._running.values():
            running.execution.kill()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, BaseException):
                log.error("a run failed while the executor stopped: %r", outcome)


def _answer_from(task: asyncio.Task[ExecuteResult], answer: asyncio.Future[ExecuteResult]) -> None:
    """Give callers what the task ended with, unless the run answered them already."""
    if answer.done():
        return
    if task.cancelled():
        answer.cancel()
    elif task.exception() is not None:
        answer.set_exception(task.exception())
    else:
        answer.set_result(task.result())


async def _released(runs: Iterable[Running], *, within: float) -> bool:
    """True once every run of `runs` has left its slot; False when `within` seconds pass first."""
    waiting = [running.released.wait() for running in runs if not running.released.is_set()]
    if not waiting:
        return True
    try:
        await asyncio.wait_for(asyncio.gather(*waiting), max(within, 0))
    except TimeoutError:
        return False
    return True
