"""Where the time goes inside the services: py-spy sampling during chosen phases (`--profile`).

py-spy attaches to the running processes (no restart, no code change) and samples their Python
stacks without pausing them (`--nonblocking`); only threads on CPU are sampled, so a function's
share of samples is its share of the process's CPU. Profiling costs CPU on a small machine, so
figures from a profiled run are not the ones the report compares with targets.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

# The phases worth profiling, and the processes sampled during them.
PROFILED_PHASES = {
    "celery_saturated": ("gateway", "storage", "celery-worker", "executor-2"),
    "legacy_saturated": ("gateway", "storage", "queue-service", "queue-worker", "executor-1"),
    "submit_celery": ("gateway", "storage"),
}
# Celery's prefork pool runs the tasks in child processes; an executor's children are the
# sandboxed programs themselves (not Python of ours), so they are left alone.
WITH_SUBPROCESSES = frozenset({"celery-worker"})
SAMPLE_RATE = 200
_LINE_NUMBER = re.compile(r":\d+\)$")


def frame_name(frame: str) -> str:
    """ "func (path/module.py:123)" -> "func (path/module.py)": one entry per function, not line."""
    return _LINE_NUMBER.sub(")", frame.strip())


def parse_collapsed(text: str) -> Counter[tuple[str, ...]]:
    """py-spy's raw (collapsed) output: "frame;frame;... count" per line -> stack -> samples."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks[tuple(frame_name(frame) for frame in stack.split(";"))] += int(count)
    return stacks


def package_of(frame: str) -> str:
    """The top-level package or module of a frame: "f (sqlalchemy/orm/query.py)" -> "sqlalchemy"."""
    _, _, where = frame.rpartition(" (")
    where = where.rstrip(")")
    if where.startswith("<"):
        return where
    return where.split("/", 1)[0].removesuffix(".py")


def summarize_stacks(stacks: Counter[tuple[str, ...]], *, top: int = 12) -> dict[str, Any]:
    """Total samples and, as shares of them: self samples per package (where the CPU is spent),
    self samples per function, and inclusive samples of Crucible's own functions (each function
    once per stack: which of our calls the time is spent under)."""
    total = sum(stacks.values())
    if not total:
        return {"samples": 0, "by_package": [], "self": [], "ours": []}
    packages: Counter[str] = Counter()
    own: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = [frame for frame in stack if not frame.startswith("process ")]
        if not frames:
            continue
        packages[package_of(frames[-1])] += count
        own[frames[-1]] += count
        for frame in set(frames):
            if package_of(frame).startswith("crucible_"):
                ours[frame] += count

    def shares(counter: Counter[str]) -> list[list[Any]]:
        return [[name, count / total] for name, count in counter.most_common(top)]

    return {
        "samples": total,
        "by_package": shares(packages),
        "self": shares(own),
        "ours": shares(ours),
    }


@contextlib.contextmanager
def recording(ctx: Any, phase: str, roots: Mapping[str, int]) -> Iterator[None]:
    """Sample the processes PROFILED_PHASES names for `phase` while the body runs (when the run
    asked for profiles); their summaries go to ctx.profiles[phase], the raw stacks to files."""
    names = PROFILED_PHASES.get(phase, ()) if ctx.settings.profile else ()
    spies = {
        name: _start(ctx.profile_dir, phase, name, roots[name]) for name in names if name in roots
    }
    try:
        yield
    finally:
        summaries = {}
        for name, (process, output) in spies.items():
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
            with contextlib.suppress(OSError):
                summaries[name] = summarize_stacks(parse_collapsed(output.read_text()))
        if spies:
            ctx.profiles[phase] = summaries


def _start(folder: Path, phase: str, name: str, pid: int) -> tuple[subprocess.Popen, Path]:
    output = folder / f"{phase}-{name}.txt"
    argv = [
        str(Path(sys.executable).parent / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(SAMPLE_RATE),
        "--format",
        "raw",
        "--output",
        str(output),
        "--nonblocking",
    ]
    if name in WITH_SUBPROCESSES:
        argv.append("--subprocesses")
    log = (folder / f"{phase}-{name}.log").open("wb")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT), output
