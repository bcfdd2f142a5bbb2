"""The limits one program runs under, derived from Settings and the request: data tests read back."""

from __future__ import annotations

import math
from dataclasses import dataclass

from crucible_contracts.limits import MIB
from crucible_executor.cgroups import CgroupLimits
from crucible_executor.config import Settings


@dataclass(frozen=True)
class RunLimits:
    """Everything that bounds one run. `rlimits()` is applied in the child before the exec."""

    timeout: float
    memory_mb: int
    cpu_seconds: int
    nproc: int
    fsize_bytes: int
    nofile: int
    max_output_bytes: int
    scratch_mb: int
    tmp_mb: int
    cpus: float
    cpu_weight: int = 100

    @classmethod
    def for_run(
        cls, settings: Settings, *, timeout: float, memory_mb: int | None = None
    ) -> RunLimits:
        """Limits of a run that asked for `timeout` and `memory_mb` (which may only lower the max)."""
        memory = settings.memory_mb if memory_mb is None else min(memory_mb, settings.memory_mb)
        return cls(
            timeout=timeout,
            memory_mb=memory,
            cpu_seconds=math.ceil(timeout) + settings.cpu_grace_seconds,
            nproc=settings.nproc,
            fsize_bytes=settings.fsize_bytes,
            nofile=settings.nofile,
            max_output_bytes=settings.max_output_bytes,
            scratch_mb=settings.scratch_mb,
            tmp_mb=settings.tmp_mb,
            cpus=settings.cpus_per_run,
            cpu_weight=settings.run_cpu_weight,
        )

    def cgroup(self) -> CgroupLimits:
        """What the run's cgroup bounds: all its memory (no swap), its processes, its CPU share."""
        return CgroupLimits(
            memory_bytes=self.memory_mb * MIB,
            pids=self.nproc,
            cpus=self.cpus,
            cpu_weight=self.cpu_weight,
        )

    def rlimits(self, *, extra_nproc: int = 0, cgroup: bool = True) -> dict[str, tuple[int, int]]:
        """(soft, hard) per prlimit(1) resource name.

        RLIMIT_CPU's hard limit is one second above the soft one: SIGXCPU first, SIGKILL for a
        program that ignores it. `extra_nproc` raises RLIMIT_NPROC by the processes the same uid
        already has, when programs cannot run under a uid of their own. RLIMIT_AS bounds memory
        only where the run has no cgroup (`cgroup=False`): per process, it would otherwise turn
        the kernel's OOM verdict into an allocation error the program can print or fake.
        """
        memory = self.memory_mb * MIB
        nproc = self.nproc + extra_nproc
        limits = {
            "cpu": (self.cpu_seconds, self.cpu_seconds + 1),
            "nproc": (nproc, nproc),
            "fsize": (self.fsize_bytes, self.fsize_bytes),
            "nofile": (self.nofile, self.nofile),
            "core": (0, 0),
        }
        if not cgroup:
            limits["as"] = (memory, memory)
        return limits
