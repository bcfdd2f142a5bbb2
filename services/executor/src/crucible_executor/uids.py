"""Claims the sandbox uids of one executor (two per slot), never shared with another executor,
and lends each to one sandbox at a time (`Seats`).

Several executors on one host (tests, `make run`) must not share a uid: RLIMIT_NPROC counts per
uid, and the sweep after each run kills every process of the sandbox's uid. Each uid is claimed
by an exclusive flock on `<lock_dir>/crucible-sandbox-uid-<uid>.lock`, held while the claim
lives; the search starts at SANDBOX_UID_BASE and skips uids that are locked or belong to an
account.

Two uids per slot, because a slot holds two sandboxes at once: the one running its program and
the one prepared for its next (warm.py). A uid goes back to the pool only once its sandbox is
gone (cgroup removed, no process of it left), and the pool lends the uid returned longest ago
first, so two programs in a row never run under one uid.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pwd
import threading
from collections import deque

from crucible_contracts.errors import Unavailable
from crucible_executor.config import Settings
from crucible_executor.sandbox import kill_uid

_SEARCH_SPAN = 100_000
# A slot's running sandbox and the one prepared for its next program.
SEATS_PER_SLOT = 2


def claim_uids(settings: Settings) -> UidClaim:
    """The uids of an executor with `settings.executor_slots` slots: SEATS_PER_SLOT per slot."""
    return UidClaim(
        base=settings.sandbox_uid_base,
        count=settings.executor_slots * SEATS_PER_SLOT,
        lock_dir=settings.uid_lock_dir,
    )


class UidClaim:
    """`count` uids from `base` upwards, held until close() (or until the process ends)."""

    def __init__(self, *, base: int, count: int, lock_dir: str) -> None:
        self.uids: list[int] = []
        self._locks: list[int] = []
        for uid in range(base, base + _SEARCH_SPAN):
            if len(self.uids) == count:
                break
            if _is_account(uid):
                continue
            fd = os.open(
                os.path.join(lock_dir, f"crucible-sandbox-uid-{uid}.lock"),
                os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                0o600,
            )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            # Unlocked: whatever still runs under it is left over from an executor that died.
            kill_uid(uid)
            self.uids.append(uid)
            self._locks.append(fd)
        if len(self.uids) < count:
            self.close()
            raise Unavailable(f"could not claim {count} free sandbox uids from {base}")

    def close(self) -> None:
        for fd in self._locks:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._locks.clear()

    def __del__(self) -> None:
        self.close()


def _is_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


class Seats:
    """Uids lent to one sandbox at a time, the one given back longest ago first.

    `take` waits (on the caller's event loop) while every uid is lent: that happens only while
    a finished sandbox is still being torn down. `give_back` may be called from any thread.
    """

    def __init__(self, uids: list[int]) -> None:
        self.uids = list(uids)
        self._free = deque(uids)
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def free(self) -> int:
        return len(self._free)

    async def take(self) -> int:
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._free:
                    return self._free.popleft()
                waiter = loop.create_future()
                self._waiters.append((loop, waiter))
            await waiter

    def give_back(self, uid: int) -> None:
        with self._lock:
            self._free.append(uid)
            waiters, self._waiters = self._waiters, []
        for loop, waiter in waiters:  # each tries again; a cancelled one has left
            with contextlib.suppress(RuntimeError):  # its loop has closed
                loop.call_soon_threadsafe(_wake, waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
