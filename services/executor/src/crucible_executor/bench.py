"""Start-up cost of the sandbox, in ms: `python -m crucible_executor.bench [runs]`, and through
HTTP: `python -m crucible_executor.bench http [runs] --slots 4 --in-flight 1,2,4`.

The first compares `print(1)` run through the Runner in each sandbox mode that works here with the bare
interpreter (`/usr/bin/python3 -c 'print(1)'`), each measured `runs` times in this process. For
bwrap it also hands `print(1)` to warm sandboxes (warm.py): cold and warm runs alternate, and
the warm figure is from the hand-over to the result; the preparation of each warm sandbox (off
the request path in the executor) is reported apart, in wall time and in CPU time (this
process's, and the sandbox's own).

`http` starts one executor process (as `make run` does, `crucible_runtime.serve`) and sends
`POST /execute` of `print(1)` from closed-loop clients, `runs` requests per level of requests in
flight; the levels take turns in rounds (random order each round) with bare spawns between them,
so that every figure comes from the same stretch of the machine's load. For each level: the
median and p95 wall time of a request, and the CPU per request of the executor process (utime +
stime of /proc/<pid>/stat) and of its sandboxes (the usage its parent cgroup counted, which
keeps the count of removed children: preparations included).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import ExecuteRequest
from crucible_executor.cgroups import CgroupMode, CgroupUnavailable, discover
from crucible_executor.config import SandboxMode, Settings
from crucible_executor.orphans import adopt_orphans
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
    adopt_orphans()
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


def sandboxed(runs: int = 20) -> None:
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


# --- through HTTP --------------------------------------------------------------------------------

_ROUNDS = 10


@dataclass
class Level:
    """What `in_flight` closed-loop clients measured: request wall times (ms), statuses, and the
    CPU seconds of the executor process and of its sandboxes over their batches."""

    in_flight: int
    wall: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    own_cpu: float = 0.0
    sandbox_cpu: float = 0.0

    def line(self, bare: float) -> str:
        wall = sorted(self.wall)
        median, p95 = statistics.median(wall), wall[int(len(wall) * 0.95) - 1]
        runs = len(wall)
        return (
            f"{self.in_flight} in flight: median {median:.1f} ms ({median / bare:.2f}x bare), "
            f"p95 {p95:.1f} ms over {runs}; CPU per request: executor {self.own_cpu / runs * 1000:.1f}"
            f" ms, sandboxes {self.sandbox_cpu / runs * 1000:.1f} ms; {self.statuses}"
        )


def _cpu_of(pid: int) -> tuple[float, float]:
    """CPU seconds so far of process `pid` (utime + stime) and of the sandboxes of the executor
    it is (its parent cgroup's count; 0 without cgroups)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    own = (int(fields[11]) + int(fields[12])) / ticks
    sandboxes = 0.0
    with contextlib.suppress(CgroupUnavailable, OSError):
        mode, dirs = discover()
        parent = f"crucible-executor-{pid}"
        if mode is CgroupMode.V2:
            stat = (dirs["unified"] / parent / "cpu.stat").read_text().split()
            sandboxes = int(stat[stat.index("usage_usec") + 1]) / 1e6
        else:
            sandboxes = int((dirs["cpuacct"] / parent / "cpuacct.usage").read_text()) / 1e9
    return own, sandboxes


def _batch(url: str, level: Level, requests: int) -> None:
    """`requests` POST /execute of print(1) from `level.in_flight` closed-loop clients."""
    import httpx

    left = iter(range(requests))
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while True:
                with lock:
                    if next(left, None) is None:
                        return
                body = {"eval_id": uuid.uuid4().hex, "code": "print(1)"}
                started = time.perf_counter()
                answer = http.post("/execute", json=body)
                elapsed = (time.perf_counter() - started) * 1000
                status = answer.json().get("status") if answer.status_code == 200 else None
                key = (
                    status if answer.json().get("output") == "1\n" else f"http_{answer.status_code}"
                )
                with lock:
                    level.wall.append(elapsed)
                    level.statuses[key] = level.statuses.get(key, 0) + 1

    clients = [threading.Thread(target=client) for _ in range(level.in_flight)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()


def over_http(runs: int, *, slots: int, in_flight: list[int]) -> None:
    """`runs` requests per level of `in_flight`, against one executor with `slots` slots."""
    import httpx

    from crucible_runtime.pytest_plugin import ProcessStarter, wait_for

    with open("/proc/loadavg") as handle:
        load = handle.read().split()[:3]
    starter = ProcessStarter(Path(os.environ.get("TMPDIR", "/tmp")))  # noqa: S108
    env = {"EXECUTOR_SLOTS": str(slots), "INTERNAL_API_KEY": "", "LOG_LEVEL": "WARNING"}
    executor = starter.service("crucible_executor.main:create_app", name="bench-executor", env=env)
    try:
        health = httpx.get(f"{executor.url}/health").json()
        warm = health["warm"]
        if warm["enabled"]:
            wait_for(lambda: httpx.get(f"{executor.url}/health").json()["warm"]["ready"] >= slots)
        levels = {n: Level(n) for n in in_flight}
        bare: list[float] = []
        per_round = max(1, runs // _ROUNDS)
        for _ in range(_ROUNDS):
            for n in random.sample(in_flight, len(in_flight)):
                before = _cpu_of(executor.proc.pid)
                _batch(executor.url, levels[n], per_round)
                after = _cpu_of(executor.proc.pid)
                levels[n].own_cpu += after[0] - before[0]
                levels[n].sandbox_cpu += after[1] - before[1]
                bare += bare_spawn_ms(max(1, per_round // 4))
    finally:
        executor.stop()
    with open("/proc/loadavg") as handle:
        load_after = handle.read().split()[:3]
    median_bare = statistics.median(bare)
    print(
        f"executor: {slots} slots, warm sandboxes {warm['enabled']}, cgroup {health['cgroup']}; "
        f"load average {' '.join(load)} before, {' '.join(load_after)} after"
    )
    print(f"bare /usr/bin/python3 -c 'print(1)': median {median_bare:.1f} ms over {len(bare)}")
    for n in in_flight:
        print(levels[n].line(median_bare))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m crucible_executor.bench")
    parser.add_argument("what", nargs="?", choices=["sandbox", "http"], default="sandbox")
    parser.add_argument("runs", nargs="?", type=int, default=20)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--in-flight", default="1,2,4")
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].isdigit():  # `bench 40`: the sandbox bench, as before
        argv = ["sandbox", *argv]
    args = parser.parse_args(argv)
    if args.what == "http":
        in_flight = [int(n) for n in args.in_flight.split(",")]
        over_http(args.runs, slots=args.slots, in_flight=in_flight)
    else:
        sandboxed(args.runs)


if __name__ == "__main__":
    main()
