"""Start-up cost of the sandbox: `python -m crucible_executor.bench [runs]` prints medians in ms.

Compares `print(1)` run through the Runner in each sandbox mode that works here with the bare
interpreter (`/usr/bin/python3 -c 'print(1)'`), each measured `runs` times in this process. For
bwrap it also hands `print(1)` to warm sandboxes (warm.py): cold and warm runs alternate, and
the warm figure is from the hand-over to the result; the preparation of each warm sandbox (off
the request path in the executor) is reported apart, in wall time and in CPU time (this
process's, and the sandbox's own).
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import ExecuteRequest
from crucible_executor.config import SandboxMode, Settings
from crucible_executor.probe import cgroup_tree, scratch_space
from crucible_executor.runner import Execution, Runner
from crucible_executor.sandbox import mode_is_installed


def bare_spawn_ms(runs: int) -> list[float]:
    """Milliseconds to spawn `python3 -c print(1)` outside any sandbox, `runs` times."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(["/usr/bin/python3", "-c", "print(1)"], check=True, capture_output=True)
        times.append((time.perf_counter() - started) * 1000)
    return times


@dataclass
class Figures:
    """Wall milliseconds of each step, CPU milliseconds of this process (its threads included)
    in it, and for a preparation the CPU its sandbox's cgroup counted until it was ready."""

    wall: list[float] = field(default_factory=list)
    own_cpu: list[float] = field(default_factory=list)
    sandbox_cpu: list[float] = field(default_factory=list)

    def line(self, name: str, bare: float) -> str:
        wall = statistics.median(self.wall)
        line = (
            f"{name}: median {wall:.1f} ms ({wall / bare:.2f}x bare); "
            f"executor CPU {statistics.mean(self.own_cpu):.1f} ms"
        )
        if self.sandbox_cpu:
            line += f", sandbox CPU {statistics.mean(self.sandbox_cpu):.1f} ms"
        return line


class _Meter:
    """Wall and CPU time of one step, added to `figures`."""

    def __init__(self, figures: Figures) -> None:
        self.figures = figures

    def __enter__(self) -> None:
        self._wall = time.perf_counter()
        self._own = _cpu()

    def __exit__(self, *_: object) -> None:
        self.figures.wall.append((time.perf_counter() - self._wall) * 1000)
        self.figures.own_cpu.append((_cpu() - self._own) * 1000)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _runner(mode: SandboxMode) -> Runner:
    """As the executor runs programs: with a cgroup and a tmpfs per run where this host allows."""
    settings = Settings()
    return Runner(
        settings, mode=mode, cgroups=cgroup_tree(settings), scratch=scratch_space(settings)
    )


async def _one(runner: Runner, figures: Figures, *, warm: bool, prepare: Figures) -> None:
    sandbox = None
    if warm:
        with _Meter(prepare):
            sandbox = await runner.prepare(0)
        if sandbox.cgroup is not None:
            prepare.sandbox_cpu.append(sandbox.cgroup.usage().cpu_seconds * 1000)
    execution = Execution(eval_id=new_eval_id())
    with _Meter(figures):
        request = ExecuteRequest(eval_id=execution.eval_id, code="print(1)")
        result = await runner.run(request, warm=sandbox, execution=execution)
    if result.output != "1\n" or execution.warm is not warm:
        raise RuntimeError(f"{runner.mode} run (warm={warm}) failed: {result}")


async def _sandboxed(mode: SandboxMode, runs: int) -> dict[str, Figures]:
    """Cold runs, and (bwrap) warm ones alternating with them, with each preparation's cost."""
    runner = _runner(mode)
    figures = {"cold": Figures(), "warm": Figures(), "prepare": Figures()}
    variants = ["cold", "warm"] if runner.warm_languages else ["cold"]
    try:
        for _ in range(runs):
            for variant in variants:
                await _one(
                    runner,
                    figures[variant],
                    warm=variant == "warm",
                    prepare=figures["prepare"],
                )
    finally:
        runner.close()
    return {name: found for name, found in figures.items() if found.wall}


def main(runs: int = 20) -> None:
    bare = statistics.median(bare_spawn_ms(runs))
    print(f"bare /usr/bin/python3 -c 'print(1)': median {bare:.1f} ms over {runs} runs")
    for mode in (SandboxMode.BWRAP, SandboxMode.UNSHARE):
        if not mode_is_installed(mode, Settings()):
            continue
        found = asyncio.run(_sandboxed(mode, runs))
        print(found["cold"].line(f"{mode} sandbox, cold, print(1)", bare))
        if "warm" in found:
            print(found["warm"].line(f"{mode} sandbox, warm (hand-over to result)", bare))
            print(found["prepare"].line(f"{mode} warm sandbox preparation (off the request)", bare))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
