"""Claims the sandbox uids of one executor: one per slot, never shared with another executor.

Several executors on one host (tests, `make run`) must not share a uid: RLIMIT_NPROC counts per
uid, and the sweep after each run kills every process of the slot's uid. Each uid is claimed by
an exclusive flock on `<lock_dir>/crucible-sandbox-uid-<uid>.lock`, held while the claim lives;
the search starts at SANDBOX_UID_BASE and skips uids that are locked or belong to an account.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd

from crucible_contracts.errors import Unavailable
from crucible_executor.sandbox import kill_uid

_SEARCH_SPAN = 100_000


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
