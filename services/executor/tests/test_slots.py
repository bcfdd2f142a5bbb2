"""The slot registry on its own: a retry never joins a killed run, and kills wait for the slot."""

from __future__ import annotations

import asyncio

import pytest

from crucible_contracts.errors import Busy
from crucible_contracts.models import ExecuteResult
from crucible_contracts.names import Role
from crucible_contracts.status import Status
from crucible_executor.runner import Execution
from crucible_executor.slots import Killed, SlotRegistry

KEY = ("eval-1", Role.PRIMARY)


class Program:
    """A run driven by the test: it runs until the test lets it be reaped (after killing it)."""

    def __init__(self) -> None:
        self.reaped = asyncio.Event()

    async def run_until_killed(self, execution: Execution) -> ExecuteResult:
        await self.reaped.wait()
        assert execution.killed, "the test reaps a program only once it was killed"
        return ExecuteResult(eval_id=execution.eval_id, status=Status.FAILED, reason="killed")


async def completes(execution: Execution) -> ExecuteResult:
    return ExecuteResult(eval_id=execution.eval_id, status=Status.COMPLETED, output="fresh\n")


async def _let_others_run(rounds: int = 20) -> None:
    """Yield to the event loop until every other task has gone as far as it can without us."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def test_a_retry_waits_for_the_killed_run_to_leave_its_slot_and_starts_afresh() -> None:
    async def scenario() -> None:
        slots, doomed = SlotRegistry(1), Program()
        first, _ = await slots.join_or_start(KEY, doomed.run_until_killed, reap_timeout=5)
        killing = asyncio.create_task(slots.kill("eval-1", reap_timeout=5))
        await asyncio.sleep(0)  # the kill has flagged the run, which still holds the slot
        retry = asyncio.create_task(slots.join_or_start(KEY, completes, reap_timeout=5))
        await _let_others_run()
        # Both wait on the killed run's release, which only this test can trigger.
        assert not retry.done() and not killing.done()

        doomed.reaped.set()
        fresh, joined = await retry

        assert await killing == Killed(killed=True, reaped=True)
        assert (await first).reason == "killed"
        assert joined is False
        assert (await fresh).output == "fresh\n"
        await asyncio.sleep(0)  # the slot is given back by the task's done callback
        assert slots.free == 1

    asyncio.run(scenario())


def test_a_run_that_is_not_reaped_in_time_is_reported_and_refuses_retries() -> None:
    async def scenario() -> None:
        slots, stuck = SlotRegistry(2), Program()
        first, _ = await slots.join_or_start(KEY, stuck.run_until_killed, reap_timeout=5)

        assert await slots.kill("eval-1", reap_timeout=0.05) == Killed(killed=True, reaped=False)
        with pytest.raises(Busy):
            await slots.join_or_start(KEY, completes, reap_timeout=0.05)

        stuck.reaped.set()
        await first
        fresh, joined = await slots.join_or_start(KEY, completes, reap_timeout=5)
        assert (joined, (await fresh).status) == (False, Status.COMPLETED)

    asyncio.run(scenario())


def test_a_retry_of_a_live_run_joins_it_and_a_kill_of_nothing_reports_nothing() -> None:
    async def scenario() -> None:
        slots, running = SlotRegistry(1), Program()
        first, _ = await slots.join_or_start(KEY, running.run_until_killed, reap_timeout=5)

        again, joined = await slots.join_or_start(KEY, completes, reap_timeout=5)

        assert (again, joined) == (first, True)
        assert await slots.kill("other", reap_timeout=1) == Killed(killed=False, reaped=True)
        running.reaped.set()
        await slots.kill("eval-1", reap_timeout=5)
        assert slots.free == 1

    asyncio.run(scenario())
