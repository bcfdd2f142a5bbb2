"""How a program is isolated: the command line of each sandbox mode, and the uid it runs under.

Two modes, both wrapped in prlimit(1) (setrlimit in the child before anything else is exec'd):

- bwrap: new user, network, PID, IPC, UTS and cgroup namespaces; a read-only root holding
  read-only binds of /usr and a few /etc files, a private /proc and a read-only minimal /dev;
  size-limited tmpfs at /sandbox (the working directory, where the code is copied in from a
  memfd), /tmp and /dev/shm; environment cleared; no further user namespaces.
- unshare: the fallback where bwrap cannot run. New network, PID, IPC, UTS and mount namespaces
  (private /proc); the program runs in a host temp dir and sees the host's file system as its
  uid allows. Weaker: it relies on the uid for files.

Either way the program is exec'd through a one-line shell trampoline that first writes
STARTED_MARKER to stdout: a run whose stdout does not begin with it never got past the sandbox.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from crucible_executor.config import SandboxMode, Settings
from crucible_executor.languages import Language
from crucible_executor.limits import RunLimits

STARTED_MARKER = b"\x1ecrucible-sandbox-started\x1e"
SCRATCH = "/sandbox"
# Inside the bwrap sandbox /tmp is a private, size-limited tmpfs, not the host's.
SANDBOX_TMP = "/tmp"  # noqa: S108
SANDBOX_SHM = "/dev/shm"  # noqa: S108
_EXEC_TRAMPOLINE = 'printf "%s" "$1" && shift && exec "$@"'
# Under unshare nothing else is PID 1 of the new namespace: the shell stays, as its init, so that
# the program is not PID 1 (which the kernel shields from its own default-action signals); the
# shell exits with the program's code, 128 + N for a death by signal N.
_CHILD_TRAMPOLINE = 'printf "%s" "$1" && shift && "$@"'
_LANG = "C.UTF-8"


@dataclass(frozen=True)
class Identity:
    """The uid/gid a program runs as; `dedicated` when no other process uses it (root only)."""

    uid: int
    gid: int
    dedicated: bool


def identity_for(slot: int, uids: list[int] | None) -> Identity:
    """As root, slot N runs as the N-th claimed uid (gid alike); else as the executor's own user."""
    if uids:
        return Identity(uid=uids[slot], gid=uids[slot], dedicated=True)
    return Identity(uid=os.getuid(), gid=os.getgid(), dedicated=False)


@dataclass(frozen=True)
class Launch:
    """What Popen needs: argv, env, cwd, inherited fds, and the uid/gid to drop to before exec."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    pass_fds: tuple[int, ...]
    user: int | None
    group: int | None


def prlimit_prefix(settings: Settings, limits: RunLimits, *, extra_nproc: int) -> list[str]:
    options = [
        f"--{name}={soft}:{hard}"
        for name, (soft, hard) in limits.rlimits(extra_nproc=extra_nproc).items()
    ]
    return [settings.prlimit_path, *options, "--"]


def trampoline(settings: Settings, command: list[str], *, as_init: bool = False) -> list[str]:
    """Write the start marker, then run `command` (exec'd, or as a child when the shell is init)."""
    script = _CHILD_TRAMPOLINE if as_init else _EXEC_TRAMPOLINE
    return [settings.shell_path, "-c", script, "sh", STARTED_MARKER.decode(), *command]


def _ro_binds(paths: list[str]) -> list[str]:
    args: list[str] = []
    for path in paths:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            args += ["--ro-bind", path, path]
    return args


def bwrap_launch(
    settings: Settings,
    *,
    limits: RunLimits,
    language: Language,
    identity: Identity,
    code_fd: int,
    extra_nproc: int = 0,
) -> Launch:
    """bwrap run: the code is copied from `code_fd` into the sandbox's private tmpfs."""
    argv = [
        *prlimit_prefix(settings, limits, extra_nproc=extra_nproc),
        settings.bwrap_path,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "sandbox",
        *_ro_binds(settings.sandbox_ro_binds),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(limits.tmp_mb * 1024 * 1024),
        "--tmpfs",
        SANDBOX_SHM,
        "--size",
        str(limits.scratch_mb * 1024 * 1024),
        "--tmpfs",
        SCRATCH,
        "--size",
        str(limits.tmp_mb * 1024 * 1024),
        "--tmpfs",
        SANDBOX_TMP,
        "--file",
        str(code_fd),
        f"{SCRATCH}/{language.file}",
        # The root bwrap built and its /dev become read-only; /sandbox, /tmp and /dev/shm stay
        # writable, each a tmpfs of bounded size.
        "--remount-ro",
        "/",
        "--remount-ro",
        "/dev",
        "--chdir",
        SCRATCH,
        "--clearenv",
        *_setenv(settings, home=SCRATCH),
        "--",
        *trampoline(settings, language.command(memory_mb=limits.memory_mb)),
    ]
    return Launch(
        argv=argv,
        env=_env(settings, home=SCRATCH, tmp=SANDBOX_TMP),
        cwd="/",
        pass_fds=(code_fd,),
        user=identity.uid if identity.dedicated else None,
        group=identity.gid if identity.dedicated else None,
    )


def unshare_launch(
    settings: Settings,
    *,
    limits: RunLimits,
    language: Language,
    identity: Identity,
    workdir: str,
    extra_nproc: int = 0,
) -> Launch:
    """unshare run in `workdir` (a host temp dir holding the code). As root, unshare runs as root
    and setpriv drops to the slot's uid; otherwise a user namespace makes the other ones."""
    namespaces = ["--net", "--pid", "--ipc", "--uts", "--mount-proc", "--fork", "--kill-child"]
    if identity.dedicated:
        drop = [
            settings.setpriv_path,
            f"--reuid={identity.uid}",
            f"--regid={identity.gid}",
            "--clear-groups",
            "--no-new-privs",
            "--",
        ]
        isolate = [settings.unshare_path, *namespaces, "--", *drop]
    else:
        isolate = [settings.unshare_path, "--user", *namespaces, "--"]
    argv = [
        *prlimit_prefix(settings, limits, extra_nproc=extra_nproc),
        *isolate,
        *trampoline(settings, language.command(memory_mb=limits.memory_mb), as_init=True),
    ]
    return Launch(
        argv=argv,
        env=_env(settings, home=workdir, tmp=workdir),
        cwd=workdir,
        pass_fds=(),
        user=None,
        group=None,
    )


def _env(settings: Settings, *, home: str, tmp: str) -> dict[str, str]:
    return {"PATH": settings.sandbox_path, "HOME": home, "LANG": _LANG, "TMPDIR": tmp}


def _setenv(settings: Settings, *, home: str) -> list[str]:
    args: list[str] = []
    for name, value in _env(settings, home=home, tmp=SANDBOX_TMP).items():
        args += ["--setenv", name, value]
    return args


def mode_is_installed(mode: SandboxMode, settings: Settings) -> bool:
    binary = settings.bwrap_path if mode is SandboxMode.BWRAP else settings.unshare_path
    needed = [binary, settings.prlimit_path, settings.shell_path]
    if mode is SandboxMode.UNSHARE and os.geteuid() == 0:
        needed.append(settings.setpriv_path)
    return all(os.access(path, os.X_OK) for path in needed)


# --- processes of a uid --------------------------------------------------------------------------


def _live_uid(pid_dir: Path) -> int | None:
    """Real uid of a process, None when it is gone or a zombie (a zombie holds nothing)."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in (pid_dir / "status").read_text().splitlines():
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    if "Uid" not in fields or fields.get("State", "").startswith(("Z", "X")):
        return None
    return int(fields["Uid"].split()[0])


def pids_of_uid(uid: int) -> list[int]:
    """Every live process (not thread, not zombie) whose real uid is `uid`, from /proc.

    Runs after every program, so it must be cheap on a busy host: the owner of /proc/<pid> (one
    stat) rules out nearly every process before its status file is read. Sandboxed programs run
    with no_new_privs, so their effective uid (the directory's owner) is their real uid.
    """
    pids = []
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                owner = entry.stat(follow_symlinks=False).st_uid
            except OSError:
                continue
            if owner == uid and _live_uid(Path(entry.path)) == uid:
                pids.append(int(entry.name))
    return pids


def tasks_of_uid(uid: int) -> int:
    """How many tasks (threads included, as RLIMIT_NPROC counts them) `uid` has now."""
    total = 0
    for pid in pids_of_uid(uid):
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{pid}/task"))
    return total


def kill_uid(uid: int, *, within: float = 5.0) -> int:
    """SIGKILL every process of `uid` until none is left alive (a fork bomb may still be forking).

    Only for a dedicated uid: nothing else may run under it. Returns how many signals were sent.
    """
    killed = 0
    deadline = time.monotonic() + within
    while (pids := pids_of_uid(uid)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.005)
    return killed
