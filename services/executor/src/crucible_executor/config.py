"""The executor's settings: every limit a sandboxed program runs under is declared here, once."""

from __future__ import annotations

import os
import tempfile
from enum import StrEnum

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from crucible_contracts.limits import MIB, Limits
from crucible_contracts.settings import ServiceSettings

_DEFAULTS = Limits()


class SandboxMode(StrEnum):
    """How programs are isolated. `auto` picks bwrap when its probe passes, else unshare."""

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

    # What a request may ask for.
    max_code_bytes: int = _DEFAULTS.max_code_bytes
    max_stdin_bytes: int = _DEFAULTS.max_stdin_bytes
    min_timeout: float = _DEFAULTS.min_timeout
    max_timeout: float = _DEFAULTS.max_timeout
    # RLIMIT_AS of a program; a request's memory_mb may lower it, never raise it.
    memory_mb: int = _DEFAULTS.memory_mb
    min_memory_mb: int = 32

    # What a program gets.
    max_output_bytes: int = _DEFAULTS.max_output_bytes
    nproc: int = 64
    fsize_bytes: int = 16 * MIB
    nofile: int = 64
    scratch_mb: int = 64
    tmp_mb: int = 16
    # RLIMIT_CPU soft limit is ceil(timeout) + cpu_grace_seconds; the hard limit one second more.
    cpu_grace_seconds: int = 1

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
    # usr/lib are recreated as symlinks); /etc is not bound whole, only what interpreters read.
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
            "/etc/passwd",
            "/etc/group",
            "/etc/nsswitch.conf",
        ]
    )
    sandbox_path: str = "/usr/local/bin:/usr/bin:/bin"
