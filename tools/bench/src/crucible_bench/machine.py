"""What the bench ran on, and where the CPU went during a phase: /proc, read directly.

Per Procfile process the CPU of its whole tree is counted (a process, its live descendants, and
the descendants it has reaped: the sandboxed programs end up in their executor's `cutime`), so
that a phase's CPU can be split between the driver, the gateway, storage, the consumers and the
programs themselves.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parse_stat(text: str) -> tuple[int, int]:
    """(ppid, CPU ticks) from a /proc/<pid>/stat line; ticks = utime + stime + cutime + cstime.

    The command name (field 2) may hold spaces and parentheses, so fields are counted after
    the last ')'.
    """
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is the state (field 3); utime..cstime are fields 14..17.
    ppid = int(fields[1])
    ticks = sum(int(value) for value in fields[11:15])
    return ppid, ticks


def process_table(proc: Path = PROC) -> dict[int, tuple[int, int]]:
    """pid -> (ppid, CPU ticks) of every process readable now."""
    table: dict[int, tuple[int, int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            table[int(entry.name)] = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # it exited while we looked
    return table


def tree_ticks(table: Mapping[int, tuple[int, int]], roots: Mapping[str, int]) -> dict[str, int]:
    """Per named root pid, the CPU ticks of it and its descendants in `table`.

    A descendant that is itself a named root is counted under its own name only (honcho is the
    ancestor of every Procfile process, but its own cost is the log relay).
    """
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    root_pids = set(roots.values())
    totals: dict[str, int] = {}
    for name, root in roots.items():
        total, stack = 0, [root]
        while stack:
            pid = stack.pop()
            if pid in table:
                total += table[pid][1]
                stack.extend(child for child in children.get(pid, ()) if child not in root_pids)
        totals[name] = total
    return totals


def system_ticks(proc: Path = PROC) -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot, from /proc/stat."""
    values = [int(value) for value in (proc / "stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def driver_cpu_seconds() -> float:
    """CPU (user + system) this driver process has used so far, all its threads together."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class CpuSnapshot:
    at: float
    driver: float
    system: tuple[int, int]
    processes: dict[str, int]


def snapshot(roots: Mapping[str, int]) -> CpuSnapshot:
    return CpuSnapshot(
        at=time.monotonic(),
        driver=driver_cpu_seconds(),
        system=system_ticks(),
        processes=tree_ticks(process_table(), roots),
    )


def cpu_between(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, Any]:
    """The CPU a phase used: the driver's, each suite process's, and the machine's busy share."""
    wall = after.at - before.at
    busy = after.system[0] - before.system[0]
    total = after.system[1] - before.system[1]
    processes = {
        name: max(0, after.processes[name] - before.processes.get(name, 0)) / CLOCK_TICKS
        for name in after.processes
    }
    driver = after.driver - before.driver
    # What neither the suite nor the driver used: other people's work on a shared machine.
    others = busy / CLOCK_TICKS - sum(processes.values()) - driver
    return {
        "wall_s": wall,
        "driver_cpu_s": driver,
        "machine_busy_share": busy / total if total else None,
        "others_cores": max(0.0, others) / wall if wall > 0 else None,
        "processes_cpu_s": dict(sorted(processes.items(), key=lambda item: -item[1])),
    }


def _cpu_model(proc: Path) -> str:
    for line in (proc / "cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_mib(proc: Path) -> int | None:
    for line in (proc / "meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return None


def describe(proc: Path = PROC) -> dict[str, Any]:
    """Date, cores, CPU model, memory, kernel, Python and load average of this machine."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(proc),
        "memory_mib": _mem_total_mib(proc),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }
