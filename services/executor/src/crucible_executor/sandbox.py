"""How a program is isolated: the command line of each sandbox mode, and the uid it runs under.

Two modes, both wrapped in prlimit(1) (setrlimit in the child before anything else is exec'd):

- bwrap: new user, network, PID, IPC, UTS and cgroup namespaces; a read-only root holding
  read-only binds of /usr and a few /etc files, a synthetic /etc/passwd and /etc/group naming
  only the sandbox user, a private /proc and a read-only minimal /dev; the run's own tmpfs
  (scratch.py) at /sandbox (the working directory, holding the code), /tmp and /dev/shm;
  environment cleared; no further user namespaces; the seccomp filter of seccomp.py.
- unshare: the fallback, only when asked for by name. New network, PID, IPC, UTS and mount
  namespaces (private /proc); the program runs in its scratch tmpfs (or a host temp dir) and
  sees the host's file system as its uid allows. Weaker: it relies on the uid for files, and has
  no seccomp filter.

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

from crucible_contracts.limits import MIB
from crucible_executor.config import SandboxMode, Settings
from crucible_executor.languages import Language
from crucible_executor.limits import RunLimits
from crucible_executor.scratch import RunScratch

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


def identity_for(uid: int | None) -> Identity:
    """As root, a sandbox runs as the uid lent to it (gid alike; uids.Seats); else (`None`) as
    the executor's own user."""
    if uid is not None:
        return Identity(uid=uid, gid=uid, dedicated=True)
    return Identity(uid=os.getuid(), gid=os.getgid(), dedicated=False)


def data_fd(data: bytes) -> int:
    """A pipe's read end holding `data` (bwrap reads such fds to EOF: --seccomp, --ro-bind-data).

    Only for small data (a filter, a passwd file): it must fit the pipe's 64 KiB buffer.
    """
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        os.write(write_end, data)
    finally:
        os.close(write_end)
    return read_end


def accounts(identity: Identity) -> tuple[bytes, bytes]:
    """The sandbox's /etc/passwd and /etc/group: its own user and nobody, not the host's list."""
    passwd = (
        f"sandbox:x:{identity.uid}:{identity.gid}:sandbox:{SCRATCH}:/usr/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    group = f"sandbox:x:{identity.gid}:\nnogroup:x:65534:\n"
    return passwd.encode(), group.encode()


@dataclass(frozen=True)
class Launch:
    """What Popen needs: argv, env, cwd, inherited fds, and the uid/gid to drop to before exec."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    pass_fds: tuple[int, ...]
    user: int | None
    group: int | None


def prlimit_prefix(
    settings: Settings, limits: RunLimits, *, extra_nproc: int, cgroup: bool
) -> list[str]:
    options = [
        f"--{name}={soft}:{hard}"
        for name, (soft, hard) in limits.rlimits(extra_nproc=extra_nproc, cgroup=cgroup).items()
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


@dataclass(frozen=True)
class Files:
    """How the sandbox gets its writable space, the program's file and its account files: the
    bwrap arguments that place them, and the fds those arguments name."""

    args: tuple[str, ...]
    pass_fds: tuple[int, ...] = ()


def mounted_files(run: RunScratch) -> Files:
    """Binds of the run's own tmpfs (bounded in bytes and inodes, see scratch.py)."""
    return Files(
        args=(
            *("--bind", str(run.home), SCRATCH),
            *("--bind", str(run.tmp), SANDBOX_TMP),
            *("--bind", str(run.shm), SANDBOX_SHM),
            *("--ro-bind", str(run.etc / "passwd"), "/etc/passwd"),
            *("--ro-bind", str(run.etc / "group"), "/etc/group"),
        )
    )


def bwrap_made_files(
    limits: RunLimits, language: Language, *, code_fd: int, passwd_fd: int, group_fd: int
) -> Files:
    """Where the executor cannot mount: bwrap's own tmpfs, bounded in bytes only, with the code
    copied in from `code_fd` and the account files from `passwd_fd` and `group_fd`."""
    return Files(
        args=(
            *("--size", str(limits.tmp_mb * MIB), "--tmpfs", SANDBOX_SHM),
            *("--size", str(limits.scratch_mb * MIB), "--tmpfs", SCRATCH),
            *("--size", str(limits.tmp_mb * MIB), "--tmpfs", SANDBOX_TMP),
            *("--file", str(code_fd), f"{SCRATCH}/{language.file}"),
            *("--ro-bind-data", str(passwd_fd), "/etc/passwd"),
            *("--ro-bind-data", str(group_fd), "/etc/group"),
        ),
        pass_fds=(code_fd, passwd_fd, group_fd),
    )


def bwrap_launch(
    settings: Settings,
    *,
    limits: RunLimits,
    language: Language,
    identity: Identity,
    files: Files,
    seccomp_fd: int,
    cgroup: bool,
    extra_nproc: int = 0,
) -> Launch:
    """bwrap run with `files` in place and the filter read from `seccomp_fd`."""
    argv = [
        *prlimit_prefix(settings, limits, extra_nproc=extra_nproc, cgroup=cgroup),
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
        *files.args,
        "--seccomp",
        str(seccomp_fd),
        # The root bwrap built and its /dev become read-only; /sandbox, /tmp and /dev/shm stay
        # writable, each on a tmpfs of bounded size.
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
        pass_fds=(*files.pass_fds, seccomp_fd),
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
    cgroup: bool,
    extra_nproc: int = 0,
) -> Launch:
    """unshare run in `workdir` (a host temp dir holding the code). As root, unshare runs as root
    and setpriv drops to the sandbox's uid; otherwise a user namespace makes the other ones."""
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
        *prlimit_prefix(settings, limits, extra_nproc=extra_nproc, cgroup=cgroup),
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
