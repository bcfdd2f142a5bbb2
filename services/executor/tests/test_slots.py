"""The slot registry on its own: a retry never joins a killed run, and kills wait for the slot."""

from __future__ import annotations

import asyncio

import pytest

from crucible_contracts.errors import Busy
from crucible_contracts.models import ExecuteResult
from crucible_contracts.names import Role
from crucible_contracts.status import Status
from crucible_executor.finished import FinishedRuns
from crucible_executor.runner import Execution
from crucible_executor.slots import How, Killed, SlotRegistry

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
        fresh, how = await retry

        assert await killing == Killed(killed=True, reaped=True)
        assert (await first).reason == "killed"
        assert how is How.STARTED
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
        fresh, how = await slots.join_or_start(KEY, completes, reap_timeout=5)
        assert (how, (await fresh).status) == (How.STARTED, Status.COMPLETED)

    asyncio.run(scenario())


def test_a_retry_of_a_live_run_joins_it_and_a_kill_of_nothing_reports_nothing() -> None:
    async def scenario() -> None:
        slots, running = SlotRegistry(1), Program()
        first, _ = await slots.join_or_start(KEY, running.run_until_killed, reap_timeout=5)

        again, how = await slots.join_or_start(KEY, completes, reap_timeout=5)

        assert (again, how) == (first, How.JOINED)
        assert await slots.kill("other", reap_timeout=1) == Killed(killed=False, reaped=True)
        running.reaped.set()
        await slots.kill("eval-1", reap_timeout=5)
        assert slots.free == 1

    asyncio.run(scenario())


def test_a_retry_after_the_run_ended_collects_its_result_and_runs_nothing() -> None:
    async def scenario() -> None:
        finished = FinishedRuns(seconds=60, max_bytes=2**20)
        slots, starts = SlotRegistry(1, finished=finished), []

        async def counted(execution: Execution) -> ExecuteResult:
            starts.append(execution.eval_id)
            return await completes(execution)

        first, how = await slots.join_or_start(KEY, counted, reap_timeout=5)
        result = await first
        again, how_again = await slots.join_or_start(KEY, counted, reap_timeout=5)

        assert (how, how_again) == (How.STARTED, How.COLLECTED)
        assert await again == result
        assert starts == ["eval-1"]
        # A kill forgets it: the next call runs the program afresh.
        await slots.kill("eval-1", reap_timeout=1)
        fresh, how_fresh = await slots.join_or_start(KEY, counted, reap_timeout=5)
        await fresh
        assert (how_fresh, starts) == (How.STARTED, ["eval-1", "eval-1"])

    asyncio.run(scenario())


def test_kept_results_expire_and_are_bounded_in_memory() -> None:
    now = [0.0]
    finished = FinishedRuns(seconds=10, max_bytes=3 * (1000 + 512), clock=lambda: now[0])
    results = {
        n: ExecuteResult(eval_id=f"{n:032x}", status=Status.COMPLETED, output="x" * 1000)
        for n in range(4)
    }
    for result in results.values():
        finished.put((result.eval_id, Role.PRIMARY), result)
    # The fourth pushed the oldest out: the bound is the bytes held, not the count.
    assert finished.get((results[0].eval_id, Role.PRIMARY)) is None
    assert finished.get((results[3].eval_id, Role.PRIMARY)) == results[3]
    assert finished.bytes <= finished.max_bytes
    now[0] = 10.0
    assert finished.get((results[3].eval_id, Role.PRIMARY)) is None
    assert (len(finished), finished.bytes) == (0, 0)


def test_a_kill_of_one_role_leaves_the_other_roles_run_and_kept_result_alone() -> None:
    async def scenario() -> None:
        finished = FinishedRuns(seconds=60, max_bytes=2**20)
        slots = SlotRegistry(2, finished=finished)
        primary, shadow = Program(), Program()
        shadow_key = ("eval-1", Role.SHADOW)
        first, _ = await slots.join_or_start(KEY, primary.run_until_killed, reap_timeout=5)
        second, _ = await slots.join_or_start(shadow_key, shadow.run_until_killed, reap_timeout=5)

        killing = asyncio.create_task(slots.kill("eval-1", role=Role.SHADOW, reap_timeout=5))
        await asyncio.sleep(0)
        shadow.reaped.set()

        assert await killing == Killed(killed=True, reaped=True)
        assert (await second).reason == "killed"
        assert not first.done() and slots.busy == 1
        primary.reaped.set()  # the test may reap it only once it was killed: kill it now
        await slots.kill("eval-1", role=Role.PRIMARY, reap_timeout=5)
        assert (await first).reason == "killed"

    asyncio.run(scenario())


def test_a_kill_of_one_role_forgets_only_that_roles_kept_result() -> None:
    finished = FinishedRuns(seconds=60, max_bytes=2**20)
    result = ExecuteResult(eval_id="eval-1", status=Status.COMPLETED, output="kept\n")
    finished.put(KEY, result)
    finished.put(("eval-1", Role.SHADOW), result)

    finished.discard("eval-1", Role.SHADOW)

    assert finished.get(KEY) == result
    assert finished.get(("eval-1", Role.SHADOW)) is None
    finished.discard("eval-1")
    assert finished.get(KEY) is None


def test_a_run_answers_before_its_teardown_and_the_slots_next_run_does_not_wait_for_it() -> None:
    """A warm sandbox is torn down after its program answered: the caller has the result and
    the slot is free, and its next program starts at once (in another sandbox, under another
    uid: runner.py); the executor's shutdown still waits for the teardown."""

    async def scenario() -> None:
        slots, torn_down, order = SlotRegistry(1), asyncio.Event(), []

        async def answers_then_tears_down(execution: Execution) -> ExecuteResult:
            result = await completes(execution)
            execution.deliver(result)
            await torn_down.wait()
            order.append("teardown")
            return result

        async def next_program(execution: Execution) -> ExecuteResult:
            order.append("next")
            return await completes(execution)

        first, _ = await slots.join_or_start(KEY, answers_then_tears_down, reap_timeout=5)
        assert (await first).output == "fresh\n"
        await _let_others_run()
        assert (slots.busy, slots.free) == (0, 1)
        second, how = await slots.join_or_start(
            ("eval-2", Role.PRIMARY), next_program, reap_timeout=5
        )
        assert how is How.STARTED
        assert (await second).output == "fresh\n"
        assert order == ["next"]

        shutdown = asyncio.create_task(slots.shutdown())
        await _let_others_run()
        assert not shutdown.done()
        torn_down.set()
        await shutdown
        assert order == ["next", "teardown"]

    asyncio.run(scenario())
