"""How the end of a program becomes a status: the rules, in one pure function.

Exit codes: a program that exited gives its code (0-255); one killed by signal N gives 128 + N,
the shell's convention and what bwrap reports for its child. A program the executor ended itself
(wall-clock timeout, /kill) or that never started gets exit_code None.

The kernel and the executor decide; nothing the program prints or sends itself does. In order:
1. ended by POST /kill                          → failed "killed"
2. wall clock reached `timeout`                 → timeout "time_limit"
3. never got past the sandbox (no start marker) → error "sandbox_failed"
4. exit code 0                                  → completed
5. non-zero, and the run's cgroup counted an OOM kill (memory.events / memory.oom_control)
                                                → failed "memory_limit"
6. died by SIGXCPU having used RLIMIT_CPU's soft limit of CPU time, or by SIGKILL having used
   its hard limit (a program that sends itself SIGXCPU early has not)
                                                → timeout "cpu_time_limit"
7. anything else non-zero                       → failed, reason None
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

from crucible_contracts.status import Status
from crucible_executor.limits import RunLimits


@dataclass(frozen=True)
class Ended:
    """What is known about a program once it has ended."""

    started: bool
    exit_code: int | None
    killed: bool = False
    timed_out: bool = False
    cpu_seconds: float = 0.0
    oom_kills: int = 0


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


def classify(ended: Ended, *, limits: RunLimits) -> Outcome:
    if ended.killed:
        return Outcome(Status.FAILED, None, "killed")
    if ended.timed_out:
        return Outcome(Status.TIMEOUT, None, "time_limit")
    if not ended.started or ended.exit_code is None:
        return Outcome(Status.ERROR, None, "sandbox_failed")
    code = ended.exit_code
    if code == 0:
        return Outcome(Status.COMPLETED, 0)
    if ended.oom_kills > 0:
        return Outcome(Status.FAILED, code, "memory_limit")
    sig = _signal_of(code)
    if (sig == signal.SIGXCPU and ended.cpu_seconds >= limits.cpu_seconds) or (
        sig == signal.SIGKILL and ended.cpu_seconds >= limits.cpu_seconds + 1
    ):
        return Outcome(Status.TIMEOUT, code, "cpu_time_limit")
    return Outcome(Status.FAILED, code)
