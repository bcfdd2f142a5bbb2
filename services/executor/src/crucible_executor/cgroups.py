"""A cgroup per run: total memory (no swap), processes and a CPU share, bounded by the kernel.

The executor makes one parent cgroup under the cgroup it finds itself in (`/proc/self/cgroup`),
never anywhere it does not own, and one child per run below it:

    <own cgroup>/crucible-executor-<pid>/run-<n>

Two kernel interfaces, one API (`CgroupTree.run()` → `RunCgroup`):

- cgroup v2 (the unified hierarchy; the production default): memory.max, memory.swap.max = 0,
  memory.oom.group, pids.max, cpu.max, cpu.weight; outcomes from memory.events (oom_kill) and cpu.stat;
  teardown by cgroup.kill.
- cgroup v1 (the memory, pids, cpu, cpuacct and freezer hierarchies mounted side by side):
  memory.limit_in_bytes and memory.memsw.limit_in_bytes, pids.max, cpu.cfs_quota_us, cpu.shares;
  outcomes from memory.oom_control (oom_kill) and cpuacct.usage; teardown freezes the group,
  SIGKILLs every task and thaws it.

Runs (and the executor's parent cgroup, which holds them all) get a lower CPU weight than the
default, so that under overload the platform's own processes still get the CPU they need.

Every sandbox's cgroup is `run-<n>` from its creation to its removal, on both versions: a warm
sandbox (warm.py) is made in the cgroup its program will run in. It is never renamed (cgroup v2
cannot rename a cgroup) nor moved to another (v2 leaves the memory already charged where it was,
and a move waits for an RCU grace period on the request path). Which `run-<n>` are waiting for a
program is the executor's to say (/health's warm section). The memory charge covers anonymous
memory, tmpfs and shared memory pages (memfd, SysV shm) and kernel memory such as the inodes and
dentries of the sandbox's files.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
_PARENT_PREFIX = "crucible-executor-"
_V1_REQUIRED = ("memory", "pids")
_V1_OPTIONAL = ("cpu", "cpuacct", "freezer")
_V2_CONTROLLERS = ("memory", "pids", "cpu")
_CPU_PERIOD_US = 100_000
# cgroup v2's default cpu.weight; v1's cpu.shares default (1024) is the same share.
DEFAULT_CPU_WEIGHT = 100
_V1_SHARES_PER_WEIGHT = 1024 / DEFAULT_CPU_WEIGHT


class CgroupMode(StrEnum):
    V2 = "v2"
    V1 = "v1"
    NONE = "none"


class CgroupUnavailable(RuntimeError):
    """This host (or this process's permissions) cannot give each run a cgroup."""


@dataclass(frozen=True)
class CgroupLimits:
    """What one run's cgroup bounds."""

    memory_bytes: int
    pids: int
    cpus: float
    # Relative to DEFAULT_CPU_WEIGHT (cgroup v2's cpu.weight scale; v1 cpu.shares = weight x 10.24).
    cpu_weight: int = DEFAULT_CPU_WEIGHT


@dataclass(frozen=True)
class RunUsage:
    """What the kernel counted for one run, read before its cgroup is removed."""

    oom_kills: int
    cpu_seconds: float
    memory_peak_bytes: int | None


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _read(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text()
    return ""


def _keyed(text: str) -> dict[str, int]:
    """`key value` lines (memory.events, memory.oom_control, cpu.stat) as a dict."""
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            fields[key] = int(value)
    return fields


def _pids(directory: Path) -> list[int]:
    return [int(pid) for pid in _read(directory / "cgroup.procs").split()]


def _rmdir_when_empty(directory: Path, *, within: float) -> bool:
    """rmdir `directory` once the kernel lets go of it (EBUSY while a task is still exiting)."""
    deadline = time.monotonic() + within
    while True:
        try:
            directory.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                log.warning("cgroup %s not removed: %s", directory, exc)
                return False
        time.sleep(0.002)


@dataclass
class RunCgroup:
    """The cgroup(s) of one run: join it from the child, read its usage, kill and remove it."""

    mode: CgroupMode
    # One directory on v2; on v1 one per hierarchy, keyed by controller.
    dirs: dict[str, Path]
    _procs_fds: list[int] = field(default_factory=list)

    def open_for_join(self) -> list[int]:
        """fds of the cgroup.procs files; the child writes b"0" to each before it execs."""
        if not self._procs_fds:
            self._procs_fds = [
                os.open(directory / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
                for directory in self.dirs.values()
            ]
        return self._procs_fds

    def pids(self) -> list[int]:
        return _pids(next(iter(self.dirs.values())))

    @property
    def name(self) -> str:
        return next(iter(self.dirs.values())).name

    def limit_memory(self, memory_bytes: int) -> None:
        """Change the memory limit of a cgroup already in use (a warm sandbox at its hand-over)."""
        if self.mode is CgroupMode.V2:
            _write(self.dirs["unified"] / "memory.max", str(memory_bytes))
            return
        memory = self.dirs["memory"]
        # memsw must stay >= the memory limit: lower memory first, raise memsw first.
        current = int(_read(memory / "memory.limit_in_bytes").strip() or 0)
        order = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
        for name in order if memory_bytes <= current else reversed(order):
            with contextlib.suppress(FileNotFoundError):
                _write(memory / name, str(memory_bytes))

    def usage(self) -> RunUsage:
        if self.mode is CgroupMode.V2:
            directory = self.dirs["unified"]
            events = _keyed(_read(directory / "memory.events"))
            cpu = _keyed(_read(directory / "cpu.stat"))
            peak = _read(directory / "memory.peak").strip()
            return RunUsage(
                oom_kills=events.get("oom_kill", 0),
                cpu_seconds=cpu.get("usage_usec", 0) / 1e6,
                memory_peak_bytes=int(peak) if peak.isdigit() else None,
            )
        memory = self.dirs["memory"]
        oom = _keyed(_read(memory / "memory.oom_control"))
        peak = _read(memory / "memory.max_usage_in_bytes").strip()
        cpu_ns = (
            _read(self.dirs["cpuacct"] / "cpuacct.usage").strip() if "cpuacct" in self.dirs else ""
        )
        return RunUsage(
            oom_kills=oom.get("oom_kill", 0),
            cpu_seconds=int(cpu_ns) / 1e9 if cpu_ns.isdigit() else 0.0,
            memory_peak_bytes=int(peak) if peak.isdigit() else None,
        )

    def kill(self, *, within: float = 5.0) -> None:
        """SIGKILL every task of the run, atomically where the kernel allows it."""
        if self.mode is CgroupMode.V2:
            with contextlib.suppress(FileNotFoundError):
                _write(self.dirs["unified"] / "cgroup.kill", "1")
            return
        freezer = self.dirs.get("freezer")
        if freezer is not None:
            # Frozen, a fork bomb cannot fork between our reading the task list and the kill.
            _write(freezer / "freezer.state", "FROZEN")
            deadline = time.monotonic() + within
            while _read(freezer / "freezer.state").strip() != "FROZEN":
                if time.monotonic() > deadline:
                    break
                time.sleep(0.001)
        deadline = time.monotonic() + within
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if freezer is not None:
                _write(freezer / "freezer.state", "THAWED")
            time.sleep(0.001)
        if freezer is not None:
            _write(freezer / "freezer.state", "THAWED")

    def remove(self, *, within: float = 5.0) -> bool:
        """Kill what is left, then remove every directory; False when one would not go."""
        for fd in self._procs_fds:
            os.close(fd)
        self._procs_fds = []
        if self.pids():
            self.kill(within=within)
        return all(_rmdir_when_empty(d, within=within) for d in self.dirs.values())


@dataclass
class CgroupTree:
    """The executor's parent cgroup(s); `run()` makes the cgroup of one run below them.

    `favordynmods`: whether a cgroup hierarchy is mounted with that option. Without it, moving
    a process into a cgroup waits for an RCU grace period (the kernel's threadgroup rwsem), which
    adds about 10 ms to every run's start on an idle host; see docs/sandbox.md.
    """

    mode: CgroupMode
    parents: dict[str, Path]
    favordynmods: bool = False
    _names: itertools.count = field(default_factory=itertools.count)

    def run(self, limits: CgroupLimits) -> RunCgroup:
        """A new cgroup `run-<n>` under the parent(s), with `limits` written."""
        name = f"run-{next(self._names)}"
        dirs = {key: parent / name for key, parent in self.parents.items()}
        for directory in dirs.values():
            directory.mkdir()
        cgroup = RunCgroup(self.mode, dirs)
        try:
            if self.mode is CgroupMode.V2:
                _limit_v2(dirs["unified"], limits)
            else:
                _limit_v1(dirs, limits)
        except OSError:
            cgroup.remove()
            raise
        return cgroup

    def close(self) -> None:
        """Remove the parent cgroup(s), killing whatever a crashed run left in them."""
        for parent in self.parents.values():
            _remove_tree(parent, mode=self.mode)


def _limit_v2(directory: Path, limits: CgroupLimits) -> None:
    _write(directory / "memory.max", str(limits.memory_bytes))
    with contextlib.suppress(FileNotFoundError):  # no swap controller without swap accounting
        _write(directory / "memory.swap.max", "0")
    _write(directory / "memory.oom.group", "1")
    _write(directory / "pids.max", str(limits.pids))
    _write(directory / "cpu.max", f"{round(limits.cpus * _CPU_PERIOD_US)} {_CPU_PERIOD_US}")
    _write(directory / "cpu.weight", str(limits.cpu_weight))


def _limit_v1(dirs: dict[str, Path], limits: CgroupLimits) -> None:
    memory = dirs["memory"]
    _write(memory / "memory.limit_in_bytes", str(limits.memory_bytes))
    # memsw counts memory + swap: equal to the memory limit, the run gets no swap at all.
    with contextlib.suppress(FileNotFoundError):
        _write(memory / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
    _write(dirs["pids"] / "pids.max", str(limits.pids))
    if "cpu" in dirs:
        _write(dirs["cpu"] / "cpu.cfs_period_us", str(_CPU_PERIOD_US))
        _write(dirs["cpu"] / "cpu.cfs_quota_us", str(round(limits.cpus * _CPU_PERIOD_US)))
        _write(dirs["cpu"] / "cpu.shares", str(v1_shares(limits.cpu_weight)))


def v1_shares(cpu_weight: int) -> int:
    """cgroup v1 cpu.shares for a cgroup v2 cpu.weight (100 ↔ 1024; v1's least is 2)."""
    return max(2, round(cpu_weight * _V1_SHARES_PER_WEIGHT))


def set_cpu_weight(mode: CgroupMode, dirs: dict[str, Path], cpu_weight: int) -> None:
    """Write a CPU weight to a cgroup (v2 cpu.weight, v1 cpu.shares; nothing without v1 cpu)."""
    if mode is CgroupMode.V2:
        _write(dirs["unified"] / "cpu.weight", str(cpu_weight))
    elif "cpu" in dirs:
        _write(dirs["cpu"] / "cpu.shares", str(v1_shares(cpu_weight)))


def _remove_tree(parent: Path, *, mode: CgroupMode) -> None:
    if not parent.is_dir():
        return
    _thaw(parent, mode=mode)
    for child in [p for p in parent.iterdir() if p.is_dir()]:
        _remove_tree(child, mode=mode)
    if mode is CgroupMode.V2:
        with contextlib.suppress(OSError):
            _write(parent / "cgroup.kill", "1")
    else:
        for pid in _pids(parent):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _rmdir_when_empty(parent, within=5)


def _thaw(directory: Path, *, mode: CgroupMode) -> None:
    """Let a frozen cgroup's tasks run (and so die of a SIGKILL): an executor that died between
    freezing a run and thawing it (RunCgroup.kill on v1) leaves it frozen. A no-op elsewhere."""
    name, thawed = ("cgroup.freeze", "0") if mode is CgroupMode.V2 else ("freezer.state", "THAWED")
    if (directory / name).exists():
        with contextlib.suppress(OSError):
            _write(directory / name, thawed)


# --- discovery -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Mount:
    path: Path
    fstype: str
    options: frozenset[str]


def _cgroup_mounts(mountinfo: str) -> list[_Mount]:
    mounts = []
    for line in mountinfo.splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        options = frozenset(tail[2].split(",")) | frozenset(fields[5].split(","))
        mounts.append(_Mount(Path(fields[4]), tail[0], options))
    return mounts


def _own_paths(proc_cgroup: str) -> dict[str, str]:
    """controller (or "unified" for v2's `0::`) → this process's cgroup path in that hierarchy."""
    paths = {}
    for line in proc_cgroup.splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and controllers == "":
            paths["unified"] = path
        for controller in controllers.split(","):
            if controller:
                paths[controller] = path
    return paths


def _under(mount: Path, path: str) -> Path:
    return mount / path.lstrip("/")


def favors_dynamic_modifications(mountinfo: str | None = None) -> bool:
    """True when some cgroup hierarchy is mounted with favordynmods (it acts on all of them)."""
    mountinfo = mountinfo if mountinfo is not None else _read(Path("/proc/self/mountinfo"))
    return any("favordynmods" in mount.options for mount in _cgroup_mounts(mountinfo))


def discover(
    *, proc_cgroup: str | None = None, mountinfo: str | None = None
) -> tuple[CgroupMode, dict[str, Path]]:
    """Which interface gives this process memory and pids control, and its own cgroup in each.

    v2 when the unified hierarchy offers memory, pids and cpu to this cgroup's children (or to
    this cgroup, which the executor can then delegate); else v1 when the memory and pids
    hierarchies are mounted; else raises CgroupUnavailable with the reason.
    """
    proc_cgroup = proc_cgroup if proc_cgroup is not None else _read(Path("/proc/self/cgroup"))
    mountinfo = mountinfo if mountinfo is not None else _read(Path("/proc/self/mountinfo"))
    own = _own_paths(proc_cgroup)
    mounts = _cgroup_mounts(mountinfo)
    unified = next((m for m in mounts if m.fstype == "cgroup2"), None)
    if unified is not None and "unified" in own:
        directory = _under(unified.path, own["unified"])
        offered = set(_read(directory / "cgroup.controllers").split())
        if set(_V2_CONTROLLERS) <= offered:
            return CgroupMode.V2, {"unified": directory}
    found: dict[str, Path] = {}
    for controller in (*_V1_REQUIRED, *_V1_OPTIONAL):
        mount = next((m for m in mounts if m.fstype == "cgroup" and controller in m.options), None)
        if mount is not None and controller in own:
            found[controller] = _under(mount.path, own[controller])
    missing = [c for c in _V1_REQUIRED if c not in found]
    if not missing:
        return CgroupMode.V1, found
    raise CgroupUnavailable(
        "no cgroup v2 hierarchy offering memory, pids and cpu, and no cgroup v1 "
        f"{' and '.join(missing)} hierarchy mounted"
    )


def create_tree(*, name: str | None = None, cpu_weight: int | None = None) -> CgroupTree:
    """Make the executor's parent cgroup(s) below its own; CgroupUnavailable when it cannot.

    `cpu_weight` lowers the CPU weight of the parent, which holds every run: against the
    processes beside the executor (the platform's own), all runs together get that share."""
    mode, own = discover()
    name = name or f"{_PARENT_PREFIX}{os.getpid()}"
    parents: dict[str, Path] = {}
    try:
        # Thaw first in every hierarchy: a frozen task of v1's freezer survives its SIGKILL.
        stale = {key: _stale(directory) for key, directory in own.items()}
        for found in stale.values():
            for entry in found:
                _thaw_tree(entry, mode=mode)
        for key, directory in own.items():
            for entry in stale[key]:
                log.info("removing the cgroup %s of an executor that is gone", entry)
                _remove_tree(entry, mode=mode)
            parent = directory / name
            parent.mkdir(exist_ok=True)
            parents[key] = parent
        if mode is CgroupMode.V2:
            _delegate_v2(own["unified"], parents["unified"])
        if cpu_weight is not None:
            set_cpu_weight(mode, parents, cpu_weight)
    except OSError as exc:
        CgroupTree(mode, parents).close()
        raise CgroupUnavailable(f"cannot create the executor's cgroup under {own}: {exc}") from exc
    return CgroupTree(mode, parents, favordynmods=favors_dynamic_modifications())


def _delegate_v2(own: Path, parent: Path) -> None:
    """Enable the controllers for the executor's parent and for the runs below it.

    cgroup v2 lets a cgroup hand controllers to its children only while it has no processes of
    its own, so when this process's cgroup cannot enable them, the executor moves itself into a
    leaf (`crucible-executor-<pid>/supervisor`) first.
    """
    wanted = " ".join(f"+{c}" for c in _V2_CONTROLLERS)
    try:
        _write(own / "cgroup.subtree_control", wanted)
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
        leaf = own / f"{parent.name}-supervisor"
        leaf.mkdir(exist_ok=True)
        for pid in _pids(own):
            with contextlib.suppress(ProcessLookupError):
                _write(leaf / "cgroup.procs", str(pid))
        _write(own / "cgroup.subtree_control", wanted)
    _write(parent / "cgroup.subtree_control", wanted)


def _stale(directory: Path) -> list[Path]:
    """Parent cgroups left by executors that died (their pid no longer runs)."""
    found = []
    with contextlib.suppress(OSError):
        for entry in directory.iterdir():
            suffix = entry.name.removeprefix(_PARENT_PREFIX)
            stale = suffix.isdigit() and not Path(f"/proc/{suffix}").exists()
            if entry.name.startswith(_PARENT_PREFIX) and stale and entry.is_dir():
                found.append(entry)
    return found


def _thaw_tree(directory: Path, *, mode: CgroupMode) -> None:
    _thaw(directory, mode=mode)
    with contextlib.suppress(OSError):
        for child in directory.iterdir():
            if child.is_dir():
                _thaw_tree(child, mode=mode)
