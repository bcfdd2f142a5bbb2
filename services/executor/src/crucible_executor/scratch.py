"""The writable space of one run: a tmpfs of its own, bounded in bytes and in inodes.

    <SCRATCH_ROOT>/executor-<pid>/run-<n>      tmpfs, size=SCRATCH_MB, nr_inodes=SCRATCH_INODES
        home/   the working directory (/sandbox), holding the program's file
        tmp/    /tmp
        shm/    /dev/shm
        etc/    passwd and group naming only the sandbox user (bound read-only)

The executor mounts it (it needs CAP_SYS_ADMIN in its mount namespace: root on a host, or a
container granted that) before the run and detaches it after, so nothing a program wrote
survives it. The directories a program writes to are its uid's alone (0700), and the parent
directories root's and not listable (0711): bwrap, running as the sandbox's uid, can bind them, but
no program can list or enter another run's files, even under the unshare fallback where the
host's file system is visible. Where the
executor cannot mount, `Scratch.create` says so and bwrap's own size-bounded tmpfs is used
instead (inodes then bounded only by the run's memory cgroup).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MNT_DETACH = 0x2
_libc = ctypes.CDLL(None, use_errno=True)
_PREFIX = "executor-"


def _mount_tmpfs(target: Path, options: str) -> None:
    flags = _MS_NOSUID | _MS_NODEV
    if _libc.mount(b"crucible-scratch", bytes(target), b"tmpfs", flags, options.encode()) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"mount tmpfs on {target}: {os.strerror(code)}")


def _detach(target: Path) -> None:
    if _libc.umount2(bytes(target), _MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):  # not (or no longer) a mount point
            raise OSError(code, f"umount {target}: {os.strerror(code)}")


@dataclass(frozen=True)
class RunScratch:
    """The mounted tmpfs of one run and the host paths bwrap binds into the sandbox."""

    mount: Path

    @property
    def home(self) -> Path:
        return self.mount / "home"

    @property
    def tmp(self) -> Path:
        return self.mount / "tmp"

    @property
    def shm(self) -> Path:
        return self.mount / "shm"

    @property
    def etc(self) -> Path:
        return self.mount / "etc"


class Scratch:
    """Mounts and removes run scratch spaces below `<root>/executor-<pid>`."""

    def __init__(self, base: Path, *, size_mb: int, inodes: int) -> None:
        self.base = base
        self.size_mb = size_mb
        self.inodes = inodes
        self._names = itertools.count()

    @classmethod
    def create(cls, root: str, *, size_mb: int, inodes: int, name: str | None = None) -> Scratch:
        """The executor's scratch directory, after a trial mount; OSError when it cannot mount."""
        base = Path(root) / (name or f"{_PREFIX}{os.getpid()}")
        Path(root).mkdir(mode=0o755, parents=True, exist_ok=True)
        _sweep_stale(Path(root))
        base.mkdir(mode=0o711, exist_ok=True)
        os.chmod(base, 0o711)  # noqa: S103 -- traversable for bwrap as the sandbox uid, not listable
        scratch = cls(base, size_mb=size_mb, inodes=inodes)
        try:
            scratch.release(scratch._mount())
        except OSError:
            with contextlib.suppress(OSError):
                base.rmdir()
            raise
        return scratch

    def prepare(
        self, *, uid: int, gid: int, file_name: str, code: bytes, passwd: bytes, group: bytes
    ) -> RunScratch:
        """A fresh tmpfs holding the program's file and the account files, owned by `uid`."""
        run = self._mount()
        try:
            for directory in (run.home, run.tmp, run.shm):
                directory.mkdir(mode=0o700)
                os.chown(directory, uid, gid)
            # /dev/shm is shared memory for the program's own processes only.
            os.chmod(run.shm, 0o1700)
            run.etc.mkdir(mode=0o755)
            (run.etc / "passwd").write_bytes(passwd)
            (run.etc / "group").write_bytes(group)
            program = run.home / file_name
            program.write_bytes(code)
            os.chown(program, uid, gid)
        except OSError:
            self.release(run)
            raise
        return run

    def release(self, run: RunScratch) -> None:
        """Detach the run's tmpfs (its pages go with the last user) and remove the mount point."""
        _detach(run.mount)
        with contextlib.suppress(FileNotFoundError):
            run.mount.rmdir()

    def close(self) -> None:
        _remove_base(self.base)

    def _mount(self) -> RunScratch:
        run = RunScratch(self.base / f"run-{next(self._names)}")
        run.mount.mkdir(mode=0o711)
        options = f"size={self.size_mb}m,nr_inodes={self.inodes},mode=0711"
        try:
            _mount_tmpfs(run.mount, options)
        except OSError:
            run.mount.rmdir()
            raise
        return run


def _remove_base(base: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        for entry in base.iterdir():
            with contextlib.suppress(OSError):
                _detach(entry)
                entry.rmdir()
        base.rmdir()


def _sweep_stale(root: Path) -> None:
    """Detach scratch spaces left by executors that died (their pid no longer runs)."""
    for entry in root.iterdir():
        pid = entry.name.removeprefix(_PREFIX)
        if entry.name.startswith(_PREFIX) and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            log.info("removing the scratch spaces of an executor that is gone: %s", entry)
            with contextlib.suppress(OSError):
                _remove_base(entry)
