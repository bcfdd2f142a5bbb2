"""Warm sandboxes: a program handed to one sees what a cold run's program sees, gets limits
counted from the hand-over and fresh seeds, and nothing of a sandbox outlives it or the executor."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from pathlib import Path

import httpx
import pytest

from crucible_contracts.models import ExecuteRequest
from crucible_executor.cgroups import CgroupMode, discover, v1_shares
from crucible_executor.runner import Execution
from crucible_executor.sandbox import STARTED_MARKER
from crucible_executor.warm import READY_MARKER, launcher_source
from crucible_runtime.pytest_plugin import wait_for

# What a program can notice of how it was started.
VIEW = r"""
import json, os, sys, __main__
def shown(value):
    return value if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
print(json.dumps({
    "argv": sys.argv,
    "orig_argv": sys.orig_argv,
    "main": {key: shown(value) for key, value in sorted(vars(__main__).items())},
    "file": __file__,
    "loader": [__loader__.name, __loader__.path],
    "path": sys.path,
    "modules": sorted(sys.modules),
    "cwd": os.getcwd(),
    "cmdline": open("/proc/self/cmdline").read(),
    "flags": list(sys.flags),
    "own_source": open(__file__).read()[:40],
    "stdin": sys.stdin.read(),
}, indent=0))
"""

# How programs end: tracebacks, exit codes, SystemExit, a syntax error, an interrupt.
ENDINGS = [
    "def f():\n    raise ValueError('deep')\nf()\n",
    "try:\n    1/0\nexcept ZeroDivisionError:\n    raise KeyError('chained')\n",
    "import sys\nsys.exit(3)\n",
    "raise SystemExit('a message')\n",
    "type = print\nsys = None\nraise RuntimeError('with names the program rebound')\n",
    "x = (\n",
    "raise KeyboardInterrupt\n",
    "import os\nprint('partial', flush=True)\nos._exit(7)\n",
    "import atexit\natexit.register(print, 'at exit')\nraise OSError(2, 'gone')\n",
]


def results(runner, code: str, *, stdin: str | None = None, warm: bool):
    execution = Execution(eval_id="view", slot=0)

    async def go():
        sandbox = await runner.prepare(0) if warm else None
        request = ExecuteRequest(eval_id=uuid.uuid4().hex, code=code, stdin=stdin)
        return await runner.run(request, warm=sandbox, execution=execution)

    result = asyncio.run(go())
    assert execution.warm is warm
    return result


def test_a_warm_program_sees_what_a_cold_one_sees(runner_for):
    runner = runner_for()
    warm = results(runner, VIEW, stdin="the program's own input\n", warm=True)
    cold = results(runner, VIEW, stdin="the program's own input\n", warm=False)
    assert (warm.status, warm.error) == ("completed", "")
    seen = json.loads(warm.output)
    assert seen == json.loads(cold.output)
    assert seen["argv"] == ["main.py"]
    assert seen["cmdline"] == "/usr/bin/python3\0-I\0-B\0main.py\0"
    assert seen["stdin"] == "the program's own input\n"
    assert seen["own_source"] == VIEW[:40]
    assert "resource" not in seen["modules"]
    assert not any("crucible" in key for key in seen["main"])


@pytest.mark.parametrize("code", ENDINGS, ids=lambda code: code.splitlines()[-1][:30])
def test_a_warm_program_ends_as_a_cold_one_does(runner_for, code):
    runner = runner_for()
    warm = results(runner, code, warm=True)
    cold = results(runner, code, warm=False)
    seen = (warm.status, warm.exit_code, warm.reason, warm.output, warm.error)
    assert seen == (cold.status, cold.exit_code, cold.reason, cold.output, cold.error)
    assert "_crucible" not in warm.error


def test_each_warm_sandbox_has_its_own_hash_seed_and_random_state(run):
    code = "import random\nprint(hash('x'), random.random())"
    first, second = run(code).output, run(code).output
    assert first.strip() and second.strip()
    assert first.split()[0] != second.split()[0]
    assert first.split()[1] != second.split()[1]


def test_the_wall_clock_counts_from_the_handover(runner_for):
    """A sandbox that waited longer than the run's timeout still gives its program all of it."""
    runner = runner_for()

    async def go():
        sandbox = await runner.prepare(0)
        await asyncio.sleep(2.5)
        request = ExecuteRequest(
            eval_id=uuid.uuid4().hex, code="import time\ntime.sleep(1)\nprint('done')", timeout=2
        )
        return await runner.run(request, warm=sandbox)

    result = asyncio.run(go())
    assert (result.status, result.output) == ("completed", "done\n")


def test_the_requests_memory_limit_is_written_at_the_handover(run):
    code = "block = b'x' * (100 * 2**20)\nprint('kept')"
    lowered = run(code, memory_mb=64)
    assert (lowered.status, lowered.reason) == ("failed", "memory_limit")
    assert run(code).output == "kept\n"


def test_a_warm_sandbox_that_died_is_replaced_by_a_cold_run(runner_for):
    runner = runner_for()
    execution = Execution(eval_id="died", slot=0)

    async def go():
        sandbox = await runner.prepare(0)
        os.killpg(sandbox.started.proc.pid, signal.SIGKILL)
        await asyncio.to_thread(sandbox.started.proc.wait)
        request = ExecuteRequest(eval_id=uuid.uuid4().hex, code="print('cold')")
        return await runner.run(request, warm=sandbox, execution=execution)

    result = asyncio.run(go())
    assert (result.status, result.output, execution.warm) == ("completed", "cold\n", False)


def test_the_launcher_writes_the_ready_marker_the_executor_waits_for():
    assert READY_MARKER != STARTED_MARKER
    assert READY_MARKER.decode("ascii").encode("unicode_escape") in launcher_source("python")


def test_runs_get_a_lower_cpu_weight_than_the_platform(runner_for):
    runner = runner_for()
    assert runner.cgroups is not None
    weight = runner.settings.run_cpu_weight
    assert weight < 100

    async def go():
        sandbox = await runner.prepare(0)
        try:
            return read_weight(runner.cgroups.mode, sandbox.cgroup.dirs), read_weight(
                runner.cgroups.mode, runner.cgroups.parents
            )
        finally:
            await asyncio.to_thread(runner.discard, sandbox)

    runs, parent = asyncio.run(go())
    expected = str(weight) if runner.cgroups.mode is CgroupMode.V2 else str(v1_shares(weight))
    assert runs == parent == expected
    if runner.cgroups.mode is CgroupMode.V1:
        assert expected == "256"


def read_weight(mode: CgroupMode, dirs: dict[str, Path]) -> str:
    if mode is CgroupMode.V2:
        return (dirs["unified"] / "cpu.weight").read_text().strip()
    return (dirs["cpu"] / "cpu.shares").read_text().strip()


def metric(url: str, name: str) -> float:
    total = 0.0
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith((name + "{", name + " ")) or line.rsplit(" ", 1)[0] == name:
            total += float(line.rsplit(" ", 1)[1])
    return total


def warm_ready(url: str) -> int:
    return httpx.get(f"{url}/health").json()["warm"]["ready"]


def test_the_executor_hands_programs_to_warm_sandboxes_and_leaves_nothing_at_shutdown(
    processes, start_executor, execute, all_pids_in_uid_range
):
    executor = start_executor(processes, executor_slots=2)
    url, pid, base = executor.url, executor.proc.pid, executor.extra["uid_base"]
    health = httpx.get(f"{url}/health").json()
    assert health["warm"]["enabled"] is True
    assert health["warm"]["languages"] == ["python"]
    wait_for(lambda: warm_ready(url) == 2, what="a warm sandbox in each slot")
    for n in range(3):
        answer = execute(url, f"print({n})").json()
        assert (answer["status"], answer["output"]) == ("completed", f"{n}\n")
    assert metric(url, "crucible_executor_warm_handovers_total") == 3
    assert metric(url, "crucible_executor_cold_runs_total") == 0
    assert metric(url, "crucible_executor_warm_prepare_seconds_count") >= 3
    wait_for(lambda: warm_ready(url) == 2, what="the slots warm again")
    assert all_pids_in_uid_range(base)  # the waiting sandboxes
    _, own = discover()
    trees = [directory / f"crucible-executor-{pid}" for directory in own.values()]
    children = {child.name for tree in trees for child in tree.iterdir() if child.is_dir()}
    waiting = httpx.get(f"{url}/health").json()["warm"]["waiting"]
    assert children == {sandbox["cgroup"] for sandbox in waiting}, (children, waiting)
    assert {sandbox["slot"] for sandbox in waiting} == {0, 1}
    scratch = Path("/run/crucible-executor") / f"executor-{pid}"
    # One tmpfs per waiting sandbox; those of the three runs are gone.
    assert len([entry for entry in scratch.iterdir() if entry.name.startswith("run-")]) == 2

    executor.stop()
    # uvicorn ends by the SIGTERM it caught, once the app's shutdown has run.
    assert executor.proc.returncode in (0, -signal.SIGTERM), executor.logs()
    wait_for(lambda: all_pids_in_uid_range(base) == [], timeout=10, what="no sandbox left")
    assert not any(tree.exists() for tree in trees)
    assert not scratch.exists()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert f"executor-{pid}/" not in mounts


def test_without_warm_sandboxes_every_run_is_cold(processes, start_executor, execute):
    executor = start_executor(processes, executor_slots=1, warm_sandboxes="false")
    url = executor.url
    assert httpx.get(f"{url}/health").json()["warm"] == {
        "enabled": False,
        "languages": [],
        "ready": 0,
        "preparing": 0,
        "waiting": [],
    }
    assert execute(url, "print('cold')").json()["output"] == "cold\n"
    assert metric(url, "crucible_executor_warm_handovers_total") == 0
    assert metric(url, "crucible_executor_cold_runs_total") == 1


def test_a_warm_sandbox_that_waited_too_long_is_replaced(processes, start_executor):
    executor = start_executor(processes, executor_slots=1, warm_max_idle_seconds=0.5)
    url = executor.url
    wait_for(
        lambda: (
            metric(
                url,
                'crucible_executor_warm_discarded_total{executor_id="executor-test",reason="idle"}',
            )
            >= 2
        ),
        what="idle sandboxes replaced",
    )
    wait_for(lambda: warm_ready(url) == 1, what="a fresh sandbox waiting")
