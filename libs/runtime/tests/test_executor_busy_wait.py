"""A consumer holding more runs than the executors have slots: a run that finds every slot taken
waits for one in place (up to `busy_wait`), against a real executor with one slot."""

from __future__ import annotations

import random
import threading
import uuid

import httpx
import pytest

from crucible_contracts.errors import Busy
from crucible_contracts.models import ExecuteRequest, Program
from crucible_contracts.names import Role
from crucible_contracts.status import Status
from crucible_runtime.clients import ExecutorPool
from crucible_runtime.pytest_plugin import ProcessStarter, wait_for


def _request(code: str) -> ExecuteRequest:
    program = Program(language="python", code=code, timeout=10)
    return ExecuteRequest.of(eval_id=uuid.uuid4().hex, role=Role.PRIMARY, program=program)


@pytest.fixture
def one_slot_executor(processes: ProcessStarter):
    env = {
        "EXECUTOR_ID": "executor-busy-wait",
        "EXECUTOR_SLOTS": "1",
        "SANDBOX_UID_BASE": str(460_000 + random.randrange(0, 10_000) * 16),
        "INTERNAL_API_KEY": "",
    }
    return processes.service("crucible_executor.main:create_app", name="executor", env=env)


def _hold_the_slot(pool: ExecutorPool, seconds: float) -> threading.Thread:
    """Run a program that keeps the one slot for `seconds`; returns once it is running."""
    holder = threading.Thread(
        target=pool.execute, args=(_request(f"import time; time.sleep({seconds})"),), daemon=True
    )
    holder.start()

    def slot_taken() -> bool:
        url = pool.clients[0].base_url
        return httpx.get(f"{url}/capacity", timeout=2).json()["free"] == 0

    wait_for(slot_taken, timeout=20, what="the holder's program to take the slot")
    return holder


def test_a_run_waits_in_place_for_a_slot_and_then_runs(one_slot_executor):
    pool = ExecutorPool([one_slot_executor.url], busy_wait=20)
    holder = _hold_the_slot(ExecutorPool([one_slot_executor.url]), seconds=1.5)
    result = pool.execute(_request("print('after the wait')"))
    assert result.status == Status.COMPLETED
    assert result.output == "after the wait\n"
    holder.join(timeout=20)


def test_without_a_wait_a_full_executor_is_busy_at_once(one_slot_executor):
    holder = _hold_the_slot(ExecutorPool([one_slot_executor.url]), seconds=3)
    with pytest.raises(Busy):
        ExecutorPool([one_slot_executor.url]).execute(_request("print(1)"))
    holder.join(timeout=20)
