"""How the end of a program becomes a status: the rules, in one pure function.

Exit codes: a program that exited gives its code (0-255); one killed by signal N gives 128 + N,
the shell's convention and what bwrap reports for its child. A program the executor ended itself
(wall-clock timeout, /kill) or that never started gets exit_code None.

In order:
1. ended by POST /kill                          → failed "killed"
2. wall clock reached `timeout`                 → timeout "time_limit"
3. never got past the sandbox (no start marker) → error "sandbox_failed"
4. exit code 0                                  → completed
5. SIGXCPU (RLIMIT_CPU soft limit), or SIGKILL after using at least the hard CPU limit
                                                → timeout "cpu_time_limit"
6. non-zero and the tail of stderr names an allocation failure (the language's `memory_errors`,
   e.g. Python's MemoryError under RLIMIT_AS) → failed "memory_limit"
7. SIGSEGV/SIGBUS/SIGABRT/SIGKILL with a peak resident size of at least half the memory limit
   (a runtime that crashed instead of raising)  → failed "memory_limit"
8. anything else non-zero                       → failed, reason None
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

from crucible_contracts.status import Status
from crucible_executor.limits import RunLimits

_CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGKILL})


@dataclass(frozen=True)
class Ended:
    """What is known about a program once it has ended."""

    started: bool
    exit_code: int | None
    killed: bool = False
    timed_out: bool = False
    cpu_seconds: float = 0.0
    peak_rss_kib: int = 0
    stderr_tail: str = ""


@dataclass(frozen=True)
class Outcome:
    status: Status
    exit_code: int | None
    reason: str | None = None


def exit_code_of(wait_status: int) -> int:
    """A wait status as one exit code: its exit code, or 128 + the signal that killed it."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def _signal_of(exit_code: int) -> int | None:
    return exit_code - 128 if 128 < exit_code < 128 + 65 else None


def classify(ended: Ended, *, limits: RunLimits, memory_errors: tuple[str, ...]) -> Outcome:
    if ended.killed:
        return Outcome(Status.FAILED, None, "killed")
    if ended.timed_out:
        return Outcome(Status.TIMEOUT, None, "time_limit")
    if not ended.started or ended.exit_code is None:
        return Outcome(Status.ERROR, None, "sandbox_failed")
    code = ended.exit_code
    if code == 0:
        return Outcome(Status.COMPLETED, 0)
    sig = _signal_of(code)
    if sig == signal.SIGXCPU or (
        sig == signal.SIGKILL and ended.cpu_seconds >= limits.cpu_seconds + 1
    ):
        return Outcome(Status.TIMEOUT, code, "cpu_time_limit")
    if any(marker in ended.stderr_tail for marker in memory_errors):
        return Outcome(Status.FAILED, code, "memory_limit")
    if sig in _CRASH_SIGNALS and ended.peak_rss_kib * 1024 >= limits.memory_mb * 1024 * 1024 // 2:
        return Outcome(Status.FAILED, code, "memory_limit")
    return Outcome(Status.FAILED, code)
