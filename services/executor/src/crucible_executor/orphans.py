"""Sandbox inits that bwrap leaves behind: adopted by the executor and reaped at once.

bwrap's outer process exits as soon as the sandbox's init (PID 1 of the sandbox's PID namespace,
running under the sandbox's uid) reports the program's exit status, without waiting for that
init to exit: the init is orphaned, and as a zombie it still counts against its uid's
RLIMIT_NPROC until its new parent reaps it. Left to the host's PID 1 (which may take seconds on
a busy host: on the development machine zombies piled up, several per uid, and a preparation
failed with EAGAIN), and with programs following each other under one uid, they add up to the
limit. So the executor makes itself the subreaper of its descendants (`adopt_orphans`, at
start-up) and reaps them when a sandbox is torn down (`reap_orphans`), before its uid is lent
again. Only children in a PID namespace of their own are reaped here: the executor never starts
such a process itself (it starts bwrap, prlimit and unshare in its own namespace and waits for
them where it started them), so nothing another part of the process waits for is taken from it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import time
from pathlib import Path

_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


def adopt_orphans() -> None:
    """Make this process the parent of its descendants' orphans (PR_SET_CHILD_SUBREAPER)."""
    if _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(code)}")


def _children() -> list[int]:
    """This process's children (of every thread: an orphan goes to one of them)."""
    pids: list[int] = []
    with os.scandir("/proc/self/task") as tasks:
        for task in tasks:
            with contextlib.suppress(OSError):
                pids += [int(pid) for pid in Path(task.path, "children").read_text().split()]
    return pids


def _status(pid: int) -> dict[str, str]:
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return fields


def reap_orphans(*, uid: int | None = None, within: float = 0.0) -> int:
    """Reap the sandbox inits orphaned to this process that have exited; with `uid`, first wait
    (up to `within` seconds) for those of that uid still exiting. Returns how many were reaped.

    A child of ours in a PID namespace of its own (NSpid has two levels) is such an init; it is
    ours alone to reap, so between reading its state and reaping it nothing else can."""
    deadline = time.monotonic() + within
    reaped = 0
    for pid in _children():
        status = _status(pid)
        if len(status.get("NSpid", "").split()) < 2:
            continue
        if not status.get("State", "").startswith("Z"):
            if uid is None or int(status.get("Uid", "-1").split()[0]) != uid:
                continue
            _wait_exit(pid, within=deadline - time.monotonic())
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            reaped += done != 0
    return reaped


def _wait_exit(pid: int, *, within: float) -> None:
    """Until child `pid` has exited (its pidfd is readable), at most `within` seconds."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.poll(max(0, round(within * 1000)))
    finally:
        os.close(pidfd)
