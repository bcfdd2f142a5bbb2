"""The seccomp filter every sandboxed program runs under, compiled once with libseccomp.

A deny list (Settings.seccomp_deny, data that the tests read back): each listed system call
fails with an ordinary error (EPERM by default) instead of killing the program, everything else
is allowed. Only the executor's native architecture is admitted; a call through another ABI
(i386 `int 0x80`, x32) kills the program, so the list cannot be walked around by a second
system call table. bwrap installs the filter (`--seccomp FD`) just before it execs the program.
"""

from __future__ import annotations

import errno
import tempfile

import pyseccomp


class SeccompUnavailable(RuntimeError):
    """libseccomp could not build the filter (missing library, unknown system call)."""


def compile_filter(deny: list[str], *, errno_name: str = "EPERM") -> bytes:
    """The BPF program (as bwrap reads it) that answers each call in `deny` with `errno_name`."""
    code = getattr(errno, errno_name, None)
    if not isinstance(code, int):
        raise SeccompUnavailable(f"unknown errno {errno_name!r}")
    try:
        seccomp_filter = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
        for name in deny:
            seccomp_filter.add_rule(pyseccomp.ERRNO(code), name)
        with tempfile.TemporaryFile() as handle:
            seccomp_filter.export_bpf(handle)
            handle.seek(0)
            return handle.read()
    except (OSError, RuntimeError, ValueError) as exc:
        raise SeccompUnavailable(f"libseccomp could not build the filter: {exc}") from exc


def syscall_number(name: str) -> int:
    """The native number of system call `name` (negative for one this architecture lacks)."""
    return pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
