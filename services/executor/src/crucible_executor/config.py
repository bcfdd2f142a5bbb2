"""The executor's settings: every limit a sandboxed program runs under is declared here, once."""

from __future__ import annotations

import os
import tempfile
from enum import StrEnum
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from crucible_contracts.limits import MIB, Limits
from crucible_contracts.settings import ServiceSettings

_DEFAULTS = Limits()

# Kernel interfaces a program has no business with: debugging and reading other processes,
# io_uring and eBPF (large attack surfaces), userfaultfd, keyrings, namespaces and mounts,
# kernel modules, kexec, swap, reboot, accounting and the clock.
SECCOMP_DENY = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    "perf_event_open",
    "bpf",
    "keyctl",
    "add_key",
    "request_key",
    "personality",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "open_by_handle_at",
    "name_to_handle_at",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "quotactl",
    "syslog",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "iopl",
    "ioperm",
)


class SandboxMode(StrEnum):
    """How programs are isolated. `auto` is bwrap when its probe passes; outside production it
    falls back to unshare (and says so on /health), in production it refuses to start."""

    AUTO = "auto"
    BWRAP = "bwrap"
    UNSHARE = "unshare"


class Settings(ServiceSettings):
    """Environment-driven (`EXECUTOR_SLOTS`, `MEMORY_MB`, `SANDBOX_MODE`, ...; case-insensitive)."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    executor_id: str = "executor-1"
    executor_slots: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=1000)
    retry_after_seconds: float = 1
    # How long POST /kill (and a retry of a killed run) waits for the killed program to be reaped
    # and its slot freed; a SIGKILLed sandbox normally goes in milliseconds.
    kill_reap_timeout_seconds: float = Field(default=5, ge=0)

    # Results of ended runs kept so that a retry collects instead of running again (finished.py).
    result_retention_seconds: float = Field(default=600, ge=0)
    result_retention_mb: int = Field(default=256, ge=1)

    # What a request may ask for.
    max_code_bytes: int = _DEFAULTS.max_code_bytes
    max_stdin_bytes: int = _DEFAULTS.max_stdin_bytes
    min_timeout: float = _DEFAULTS.min_timeout
    max_timeout: float = _DEFAULTS.max_timeout
    # The run's memory cgroup limit (RLIMIT_AS where no cgroup can be had); a request's
    # memory_mb may lower it, never raise it.
    memory_mb: int = _DEFAULTS.memory_mb
    min_memory_mb: int = 32

    # What a program gets.
    max_output_bytes: int = _DEFAULTS.max_output_bytes
    nproc: int = 64
    fsize_bytes: int = 16 * MIB
    nofile: int = 64
    # The run's writable space: one tmpfs of scratch_mb holding /sandbox, /tmp and /dev/shm,
    # with at most scratch_inodes files (scratch.py). Where the executor cannot mount, bwrap's
    # own tmpfs: scratch_mb at /sandbox and tmp_mb at each of /tmp and /dev/shm.
    scratch_mb: int = 64
    scratch_inodes: int = Field(default=4096, ge=64)
    scratch_root: str = "/run/crucible-executor"
    tmp_mb: int = 16
    # RLIMIT_CPU soft limit is ceil(timeout) + cpu_grace_seconds; the hard limit one second more.
    cpu_grace_seconds: int = 1
    # CPU bandwidth of one run (its cgroup's quota), in cores: one run cannot take every core.
    cpus_per_run: float = Field(default=1.0, gt=0)
    # CPU weight of the runs against the platform's own processes, on cgroup v2's cpu.weight scale
    # (default 100; v1 cpu.shares = weight x 10.24): under overload the services stay responsive.
    # Written to the executor's parent cgroup (all runs together) and to each run's cgroup.
    run_cpu_weight: int = Field(default=25, ge=1, le=10000)
    # `auto`: a cgroup per run (v2, else v1); `none`: no cgroups (development only: /health says
    # degraded, and ENVIRONMENT=production refuses to start).
    cgroup_mode: Literal["auto", "none"] = "auto"
    # System calls a program may not make: each fails with seccomp_errno (see seccomp.py).
    seccomp_deny: list[str] = Field(default_factory=lambda: list(SECCOMP_DENY))
    seccomp_errno: str = "EPERM"

    # Warm sandboxes (warm.py): each slot keeps one Python sandbox started and waiting for its
    # program, so a request skips the sandbox's start-up; used once, then replaced off the request
    # path. One that waited warm_max_idle_seconds is replaced by a fresh one; one whose preparation
    # takes longer than warm_prepare_timeout_seconds is abandoned (the slot runs cold meanwhile,
    # and tries again after warm_retry_seconds).
    warm_sandboxes: bool = True
    warm_max_idle_seconds: float = Field(default=600, gt=0)
    warm_prepare_timeout_seconds: float = Field(default=10, gt=0)
    warm_retry_seconds: float = Field(default=5, ge=0)

    # How it is isolated.
    sandbox_mode: SandboxMode = SandboxMode.AUTO
    # As root, each slot runs as a uid/gid of its own (RLIMIT_NPROC then counts one program),
    # claimed from sandbox_uid_base upwards (see uids.py); give executors disjoint ranges.
    sandbox_uid_base: int = Field(default=60000, ge=1000)
    uid_lock_dir: str = Field(default_factory=tempfile.gettempdir)
    bwrap_path: str = "/usr/bin/bwrap"
    unshare_path: str = "/usr/bin/unshare"
    prlimit_path: str = "/usr/bin/prlimit"
    setpriv_path: str = "/usr/bin/setpriv"
    shell_path: str = "/bin/sh"
    # Read-only binds into the bwrap sandbox (missing ones are skipped, symlinks such as /lib ->
    # usr/lib are recreated as symlinks); /etc is not bound whole, only what interpreters read
    # (its passwd and group are synthetic, see sandbox.accounts).
    sandbox_ro_binds: list[str] = Field(
        default_factory=lambda: [
            "/usr",
            "/bin",
            "/lib",
            "/lib64",
            "/etc/ld.so.cache",
            "/etc/ld.so.conf",
            "/etc/ld.so.conf.d",
            "/etc/alternatives",
            "/etc/localtime",
            "/etc/nsswitch.conf",
        ]
    )
    sandbox_path: str = "/usr/local/bin:/usr/bin:/bin"
