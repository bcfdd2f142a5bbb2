"""Start-up cost of the sandbox: `python -m crucible_executor.bench [runs]` prints medians in ms.

Compares `print(1)` run through the Runner in each sandbox mode that works here with the bare
interpreter (`/usr/bin/python3 -c 'print(1)'`), each measured `runs` times in this process.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time

from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import ExecuteRequest
from crucible_executor.config import SandboxMode, Settings
from crucible_executor.probe import cgroup_tree, scratch_space
from crucible_executor.runner import Runner
from crucible_executor.sandbox import mode_is_installed


def bare_spawn_ms(runs: int) -> list[float]:
    """Milliseconds to spawn `python3 -c print(1)` outside any sandbox, `runs` times."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(["/usr/bin/python3", "-c", "print(1)"], check=True, capture_output=True)
        times.append((time.perf_counter() - started) * 1000)
    return times


async def _sandboxed(mode: SandboxMode, runs: int) -> list[float]:
    """As the executor runs programs: with a cgroup and a tmpfs per run where this host allows."""
    settings = Settings()
    runner = Runner(
        settings, mode=mode, cgroups=cgroup_tree(settings), scratch=scratch_space(settings)
    )
    times = []
    try:
        for _ in range(runs):
            started = time.perf_counter()
            result = await runner.run(ExecuteRequest(eval_id=new_eval_id(), code="print(1)"))
            times.append((time.perf_counter() - started) * 1000)
            if result.output != "1\n":
                raise RuntimeError(f"{mode} run failed: {result}")
    finally:
        runner.close()
    return times


def main(runs: int = 20) -> None:
    bare = statistics.median(bare_spawn_ms(runs))
    print(f"bare /usr/bin/python3 -c 'print(1)': median {bare:.1f} ms over {runs} runs")
    for mode in (SandboxMode.BWRAP, SandboxMode.UNSHARE):
        if not mode_is_installed(mode, Settings()):
            continue
        median = statistics.median(asyncio.run(_sandboxed(mode, runs)))
        print(f"{mode} sandbox, print(1): median {median:.1f} ms ({median / bare:.2f}x bare)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
