"""Hostile programs against the real sandbox: the kernel bounds each run's memory, processes, CPU
and system calls, the program cannot choose its own outcome, and nothing of a run outlives it."""

from __future__ import annotations

import errno

import httpx
import pytest

from crucible_executor.config import Settings
from crucible_executor.seccomp import syscall_number

MIB = 2**20

# Eight children of 64 MiB each: every one fits RLIMIT_AS, together twice the run's memory.
MANY_PROCESSES_ALLOCATING = """
import os, signal, sys, time
children = []
for _ in range(8):
    pid = os.fork()
    if pid == 0:
        block = b"x" * (64 * 2**20)
        time.sleep(5)
        os._exit(0)
    children.append(pid)
statuses = [os.waitpid(pid, 0)[1] for pid in children]
killed = sum(os.WIFSIGNALED(s) and os.WTERMSIG(s) == signal.SIGKILL for s in statuses)
print("killed", killed)
sys.exit(1 if killed else 0)
"""

# memfd data is never mapped: RLIMIT_AS cannot see it. RLIMIT_FSIZE caps one file at 16 MiB,
# so the program spreads 480 MiB over 32 of them.
MEMFD = """
import os
chunk = b"x" * 2**20
for n in range(32):
    fd = os.memfd_create(f"hoard-{n}")
    for _ in range(15):
        os.write(fd, chunk)
print("kept 480 MiB")
"""

# System V shared memory of the run's IPC namespace, touched page by page through ctypes.
SYSV_SHM = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
size = 512 * 2**20
shmid = libc.shmget(0, ctypes.c_size_t(size), 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
assert shmid >= 0, ctypes.get_errno()
address = libc.shmat(shmid, None, 0)
ctypes.memset(address, 1, size)
print("touched 512 MiB of shm")
"""

INODES = """
n = 0
try:
    while True:
        open(f"/sandbox/empty-{n}", "w").close()
        n += 1
except OSError as exc:
    print("stopped", n, exc.errno)
"""

# Files of 4 MiB each (below RLIMIT_FSIZE), so only the mount's size can stop the program.
TMPFS_DATA = """
written = 0
try:
    for n in range(1000):
        with open(f"/tmp/fill-{n}", "wb") as handle:
            for _ in range(4):
                handle.write(b"x" * 2**20)
                handle.flush()
                written += 2**20
except OSError as exc:
    print(written, exc.errno)
"""

THREAD_BOMB = """
import threading, time
started = 0
try:
    while True:
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        started += 1
except RuntimeError:
    print(started)
"""

FORK_BOMB = (
    "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
)


@pytest.fixture(scope="module")
def hostile_target(session_processes, start_executor):
    """An executor with 2 slots for hostile programs (its own, so other tests keep theirs)."""
    return start_executor(session_processes, executor_slots=2, sandbox_mode="bwrap")


@pytest.fixture
def contained(hostile_target, executor_run_cgroups, live_pids_in_uid_range):
    """contained() asserts what must hold after any run: the executor healthy, every run cgroup
    removed, no process left under the executor's sandbox uids."""

    def check() -> None:
        health = httpx.get(f"{hostile_target.url}/health").json()
        assert health["status"] == "ok", health
        assert health["busy"] == 0
        assert executor_run_cgroups(hostile_target.proc.pid) == []
        assert live_pids_in_uid_range(hostile_target.extra["uid_base"]) == []

    return check


@pytest.mark.parametrize(
    ("code", "what"),
    [
        (MANY_PROCESSES_ALLOCATING, "many processes each allocating"),
        (MEMFD, "memfd data never mapped"),
        (SYSV_SHM, "System V shared memory"),
    ],
    ids=["processes", "memfd", "sysv-shm"],
)
def test_a_runs_total_memory_is_bounded_by_its_cgroup(
    hostile_target, execute, contained, code, what
):
    result = execute(hostile_target.url, code, timeout=30).json()
    assert (result["status"], result["reason"]) == ("failed", "memory_limit"), (what, result)
    contained()


def test_the_runs_tmpfs_is_bounded_in_bytes(hostile_target, execute, contained):
    result = execute(hostile_target.url, TMPFS_DATA).json()
    assert result["status"] == "completed", result
    written, error = map(int, result["output"].split())
    assert error == errno.ENOSPC
    assert written <= Settings().scratch_mb * MIB
    contained()


def test_the_runs_tmpfs_is_bounded_in_inodes(hostile_target, execute, contained):
    result = execute(hostile_target.url, INODES).json()
    assert result["status"] == "completed", result
    _, created, error = result["output"].split()
    assert int(error) == errno.ENOSPC
    assert int(created) < Settings().scratch_inodes
    contained()


def test_where_bwrap_makes_the_tmpfs_inodes_are_bounded_by_the_runs_memory(
    run, runner_for, run_cgroups
):
    runner = runner_for(scratch=False)
    result = run(INODES, runner=runner, timeout=60)
    assert (result.status, result.reason) == ("failed", "memory_limit")
    assert run_cgroups(runner) == []


@pytest.mark.parametrize(("code", "bound"), [(FORK_BOMB, None), (THREAD_BOMB, "threads")])
def test_fork_and_thread_bombs_hit_the_process_bound(
    hostile_target, execute, contained, code, bound
):
    result = execute(hostile_target.url, code, timeout=3).json()
    if bound is None:
        assert result["status"] == "timeout", result
    else:
        assert result["status"] == "completed", result
        assert int(result["output"]) < Settings().nproc
    contained()


@pytest.mark.parametrize(
    "code",
    [
        "import sys\nprint('MemoryError', file=sys.stderr)\nsys.exit(1)",
        "import sys\nprint('Killed: out of memory (oom_kill)', file=sys.stderr)\nsys.exit(137)",
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
        "import os, signal\nos.kill(os.getpid(), signal.SIGXCPU)",
        "import sys\nprint('time_limit', file=sys.stderr)\nsys.exit(152)",
    ],
    ids=["memory-error-text", "oom-text", "self-sigkill", "self-sigxcpu", "exit-152"],
)
def test_a_program_cannot_choose_its_own_outcome(hostile_target, execute, contained, code):
    result = execute(hostile_target.url, code).json()
    assert result["status"] == "failed", result
    assert result["reason"] is None
    contained()


def test_a_run_gets_one_cores_share_of_cpu(hostile_target, execute, contained):
    code = """
import os, resource, time
started = time.monotonic()
for _ in range(2):
    if os.fork() == 0:
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            pass
        os._exit(0)
os.wait(); os.wait()
wall = time.monotonic() - started
cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
print((cpu.ru_utime + cpu.ru_stime) / wall)
"""
    result = execute(hostile_target.url, code, timeout=20).json()
    assert result["status"] == "completed", result
    # Two busy processes on two cores would use about 2 cores; the quota holds them to one.
    assert float(result["output"]) <= Settings().cpus_per_run * 1.25
    contained()


def test_etc_names_only_the_sandbox_user(hostile_target, execute):
    code = "import os, pwd\nprint(open('/etc/passwd').read())\nprint(pwd.getpwuid(os.getuid()).pw_name)"
    result = execute(hostile_target.url, code).json()
    assert result["status"] == "completed", result
    names = [line.split(":")[0] for line in result["output"].splitlines() if ":" in line]
    assert names == ["sandbox", "nobody"]
    assert result["output"].splitlines()[-1] == "sandbox"


# --- seccomp -------------------------------------------------------------------------------------

CALL = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
for number in map(int, sys.argv[1:] or {numbers}):
    ctypes.set_errno(0)
    answer = libc.syscall(number, 0, 0, 0, 0, 0, 0)
    print(number, answer, ctypes.get_errno())
"""


def _call_each(numbers: list[int]) -> str:
    return CALL.format(numbers=numbers)


@pytest.fixture(scope="module")
def distinctive_errno_runner(request):
    """A Runner whose filter answers ENOTRECOVERABLE: only the filter can have said that."""
    runner_for = request.getfixturevalue("runner_for")
    return runner_for(seccomp_errno="ENOTRECOVERABLE")


@pytest.mark.parametrize("name", Settings().seccomp_deny)
def test_each_denied_system_call_is_stopped_by_the_filter(run, runner_for, run_cgroups, name):
    number = syscall_number(name)
    assert number >= 0, f"{name} is not a system call of this architecture"
    runner = runner_for(seccomp_errno="ENOTRECOVERABLE")
    result = run(_call_each([number]), runner=runner)
    assert result.status == "completed", result.error
    assert result.output.split() == [str(number), "-1", str(errno.ENOTRECOVERABLE)]
    assert run_cgroups(runner) == []


def test_denied_system_calls_fail_with_eperm_and_do_not_kill(run):
    numbers = [syscall_number(name) for name in Settings().seccomp_deny]
    result = run(_call_each(numbers) + "print('still running')\n")
    assert result.status == "completed", result.error
    lines = result.output.splitlines()
    assert lines[-1] == "still running"
    assert [line.split()[1:] for line in lines[:-1]] == [["-1", str(errno.EPERM)]] * len(numbers)


def test_the_filter_is_installed_in_the_program(run):
    result = run("print(open('/proc/self/status').read())")
    fields = dict(line.split(":\t") for line in result.output.splitlines() if ":\t" in line)
    assert fields["Seccomp"] == "2"  # SECCOMP_MODE_FILTER
    assert fields["NoNewPrivs"] == "1"


def test_javascript_below_its_least_memory_is_refused_with_a_clear_422(hostile_target, execute):
    refused = execute(hostile_target.url, "console.log(1)", language="javascript", memory_mb=32)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert "memory_mb" in error["message"] and "64" in error["message"]


def test_javascript_at_its_least_memory_starts_and_a_heap_bomb_is_a_memory_limit(
    hostile_target, execute, contained
):
    small = execute(hostile_target.url, "console.log(6 * 7)", language="javascript", memory_mb=64)
    assert (small.json()["status"], small.json()["output"]) == ("completed", "42\n")
    bomb = "const a = [];\nwhile (true) a.push(new Array(1e6).fill(1));\n"
    result = execute(hostile_target.url, bomb, language="javascript", memory_mb=64).json()
    assert (result["status"], result["reason"]) == ("failed", "memory_limit"), result
    contained()
