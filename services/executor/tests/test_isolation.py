"""The sandbox holds: no network, no host files, bounded processes, memory and time, no leftovers."""

from __future__ import annotations

import json
import resource
import socket
import time
import uuid
from pathlib import Path

import httpx

from crucible_executor.config import Settings
from crucible_executor.limits import RunLimits

REPO = Path(__file__).resolve().parents[3]


def test_network_is_unreachable_even_on_the_hosts_loopback(run):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        code = f"""
import socket
for address in [("127.0.0.1", {port}), ("1.1.1.1", 53)]:
    try:
        socket.create_connection(address, timeout=2).close()
        print("connected", address)
    except OSError as exc:
        print("refused", type(exc).__name__)
"""
        result = run(code)
        assert result.status == "completed", result.error
        assert "connected" not in result.output
        assert result.output.count("refused") == 2
        try:
            listener.accept()
            raise AssertionError("the sandbox reached a socket of the host")
        except BlockingIOError:
            pass


def test_host_files_outside_the_scratch_dir_cannot_be_written(run):
    nonce = uuid.uuid4().hex
    host_tmp = Path(f"/tmp/crucible-escape-{nonce}")
    in_repo = REPO / f"escape-{nonce}"
    code = f"""
for path in ["{host_tmp}", "{in_repo}", "/usr/escape-{nonce}", "/etc/escape-{nonce}",
             "/escape-{nonce}", "/dev/escape-{nonce}", "/sandbox/ok"]:
    try:
        with open(path, "w") as handle:
            handle.write("x")
        print("wrote", path)
    except OSError as exc:
        print("denied", path, type(exc).__name__)
"""
    result = run(code)
    assert result.status == "completed", result.error
    # /tmp and /sandbox are the sandbox's own tmpfs: writable inside, invisible outside.
    assert f"wrote {host_tmp}" in result.output
    assert "wrote /sandbox/ok" in result.output
    for denied in (in_repo, *(f"{d}/escape-{nonce}" for d in ("/usr", "/etc", "", "/dev"))):
        assert f"denied {denied}" in result.output
    for path in (host_tmp, in_repo, Path(f"/usr/escape-{nonce}"), Path(f"/etc/escape-{nonce}")):
        assert not path.exists()


def test_the_program_cannot_read_root_the_repo_or_secrets(run):
    code = f"""
import os
for path in ["/root", "{REPO}", "/work", "/home", "/etc/shadow", "{REPO / "pyproject.toml"}"]:
    try:
        print("read", path, os.listdir(path) if os.path.isdir(path) else open(path).read(10))
    except OSError as exc:
        print("hidden", path, type(exc).__name__)
print("root", sorted(os.listdir("/")))
print("env", sorted(os.environ))
"""
    result = run(code)
    assert result.status == "completed", result.error
    assert "read " not in result.output
    assert result.output.count("hidden") == 6
    root = next(line for line in result.output.splitlines() if line.startswith("root"))
    for absent in ("root", "work", "home", "opt"):
        assert f"'{absent}'" not in root
    env_line = next(line for line in result.output.splitlines() if line.startswith("env"))
    assert set(eval(env_line[4:])) <= {"PATH", "HOME", "LANG", "TMPDIR", "PWD"}


def test_limits_inside_the_sandbox_are_the_configured_ones(run, runner_for):
    runner = runner_for()
    code = """
import json, os, resource
names = {"cpu": "RLIMIT_CPU", "as": "RLIMIT_AS", "nproc": "RLIMIT_NPROC",
         "fsize": "RLIMIT_FSIZE", "nofile": "RLIMIT_NOFILE", "core": "RLIMIT_CORE"}
print(json.dumps({k: resource.getrlimit(getattr(resource, v)) for k, v in names.items()}))
print(os.getuid())
"""
    result = run(code, runner=runner, timeout=7)
    limits_line, uid_line = result.output.splitlines()
    expected = RunLimits.for_run(runner.settings, timeout=7).rlimits()
    # With a cgroup per run the memory bound is the cgroup's: no per-process address-space cap.
    expected["as"] = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    assert {k: tuple(v) for k, v in json.loads(limits_line).items()} == expected
    assert expected["cpu"] == (8, 9)
    # As root, slot 0 runs as the first uid of the range, never as root.
    assert int(uid_line) == runner.settings.sandbox_uid_base


def test_memory_mb_may_lower_the_limit_but_never_raise_it(run):
    # 100 MiB fits the default limit (256) and a raised one, not a lowered one.
    code = "block = b'x' * (100 * 2**20)\nprint('kept')"
    assert (run(code, memory_mb=64).status, run(code, memory_mb=64).reason) == (
        "failed",
        "memory_limit",
    )
    assert run(code, memory_mb=4096).output == "kept\n"
    too_much = run("block = b'x' * (300 * 2**20)", memory_mb=4096)
    assert (too_much.status, too_much.reason) == ("failed", "memory_limit")


def test_processes_per_program_are_bounded(run, runner_for):
    code = """
import os, time
children = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        children += 1
except OSError as exc:
    print(children, exc.errno)
"""
    started = time.monotonic()
    result = run(code, runner=runner_for(), timeout=20)
    children, errno = map(int, result.output.split())
    assert errno == 11  # EAGAIN: RLIMIT_NPROC
    assert children < Settings().nproc
    # The sleeping children died with the sandbox instead of being waited for.
    assert time.monotonic() - started < 10


def test_fork_bomb_is_contained_and_the_executor_stays_healthy(
    executor, execute, live_pids_in_uid_range
):
    bomb = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    result = execute(executor.url, bomb, timeout=3).json()
    assert result["status"] == "timeout"
    assert httpx.get(f"{executor.url}/health").json()["status"] == "ok"
    after = execute(executor.url, "print('still here')").json()
    assert after["status"] == "completed"
    assert after["output"] == "still here\n"
    assert live_pids_in_uid_range(executor.extra["uid_base"]) == []


def test_memory_bomb_ends_failed_with_memory_limit(executor, execute):
    for bomb in ["x = b'x' * 2**30", "a = []\nwhile True:\n    a.append(b'x' * 10**7)\n"]:
        result = execute(executor.url, bomb).json()
        assert result["status"] == "failed", result
        assert result["reason"] == "memory_limit"
        assert result["exit_code"] == 128 + 9  # the kernel's OOM killer: SIGKILL


def test_endless_loop_times_out_close_to_its_limit(executor, execute):
    started = time.monotonic()
    result = execute(executor.url, "while True:\n    pass\n", timeout=2).json()
    elapsed = time.monotonic() - started
    assert result["status"] == "timeout"
    assert result["reason"] == "time_limit"
    assert result["exit_code"] is None
    assert result["runtime_ms"] >= 2000
    assert elapsed < 2 + 5  # a correctness bound with a generous margin, not a benchmark


def test_a_cpu_limit_the_program_lowered_itself_is_its_own_failure(run):
    # The kernel sends SIGXCPU after one second, but that limit was the program's choice, not
    # the run's: only RLIMIT_CPU as the executor set it (or its wall clock) makes a timeout.
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_CPU, (1, resource.getrlimit(resource.RLIMIT_CPU)[1]))\n"
        "while True:\n    pass\n"
    )
    result = run(code, timeout=10)
    assert (result.status, result.reason) == ("failed", None)
    assert result.exit_code == 128 + 24  # SIGXCPU


def test_fifty_megabytes_of_output_come_back_cut_at_the_cap(executor, execute):
    code = (
        "import sys\nchunk = 'x' * 1_000_000\n"
        "for _ in range(50):\n    sys.stdout.write(chunk)\n"
        "for _ in range(3):\n    sys.stderr.write(chunk)\n"
        "print('\\nend', file=sys.stderr)\n"
    )
    started = time.monotonic()
    result = execute(executor.url, code).json()
    assert time.monotonic() - started < 15
    assert result["status"] == "completed"
    assert len(result["output"]) == Settings().max_output_bytes == 2**20
    assert result["output_truncated"] is True
    assert len(result["error"]) == 2**20
    assert result["error_truncated"] is True


def test_a_background_child_does_not_outlive_the_run(executor, execute, host_processes_with):
    nonce = f"{time.time_ns() % 10**9}"
    argument = f"60.{nonce}"
    code = (
        "import subprocess\n"
        f"subprocess.Popen(['sleep', '{argument}'], start_new_session=True)\n"
        "print('spawned')\n"
    )
    result = execute(executor.url, code).json()
    assert result["status"] == "completed"
    assert result["output"] == "spawned\n"
    assert host_processes_with(f"sleep {argument}") == []


def test_executors_sharing_a_uid_base_still_get_disjoint_uids(processes, start_executor, execute):
    base = 900_000 + (time.time_ns() // 1000) % 50_000 * 16
    first = start_executor(processes, executor_slots=1, sandbox_uid_base=base)
    second = start_executor(processes, executor_slots=1, sandbox_uid_base=base)
    uids = [
        int(execute(e.url, "import os; print(os.getuid())").json()["output"])
        for e in (first, second)
    ]
    # Each claims two uids (a slot's running sandbox and its next one) under the lock files.
    assert uids[0] != uids[1]
    assert all(base <= uid < base + 4 for uid in uids), uids
