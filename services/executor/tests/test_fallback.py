"""The unshare fallback: only when asked for by name, reported degraded, still without network and
bounded in time and memory; and an executor that cannot isolate as it should refuses to start."""

from __future__ import annotations

import socket
import sys
import time

import httpx
import pytest

from crucible_executor.cgroups import discover
from crucible_runtime.pytest_plugin import free_port, wait_for


@pytest.fixture(scope="module")
def unshare_executor(session_processes, start_executor):
    return start_executor(session_processes, executor_slots=2, sandbox_mode="unshare")


def test_health_says_the_unshare_sandbox_is_active_and_degraded(unshare_executor):
    health = httpx.get(f"{unshare_executor.url}/health").json()
    assert health["sandbox"] == "unshare"
    assert health["status"] == "degraded"
    assert "unshare fallback" in health["degraded"][0]
    assert health["seccomp"] is False


def test_health_and_capacity_name_the_cgroup_mode(executor):
    health = httpx.get(f"{executor.url}/health").json()
    capacity = httpx.get(f"{executor.url}/capacity").json()
    # This machine offers cgroup v1 hierarchies (its cgroup2 mount has no controllers).
    assert health["cgroup"] == capacity["cgroup"] == discover()[0]
    assert (health["status"], health["degraded"], health["seccomp"]) == ("ok", [], True)


def test_without_cgroups_a_local_executor_says_it_is_degraded(processes, start_executor):
    weak = start_executor(processes, executor_slots=1, cgroup_mode="none")
    health = httpx.get(f"{weak.url}/health").json()
    assert (health["status"], health["cgroup"]) == ("degraded", "none")
    assert "no cgroup" in health["degraded"][0]


def test_network_is_unreachable_in_the_fallback(unshare_executor, execute):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        code = (
            "import socket\n"
            f"for address in [('127.0.0.1', {port}), ('1.1.1.1', 53)]:\n"
            "    try:\n"
            "        socket.create_connection(address, timeout=2).close()\n"
            "        print('connected')\n"
            "    except OSError as exc:\n"
            "        print('unreachable', exc.errno)\n"
        )
        result = execute(unshare_executor.url, code).json()
        assert result["status"] == "completed", result
        assert result["output"].count("unreachable") == 2
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_endless_loop_times_out_in_the_fallback(unshare_executor, execute):
    started = time.monotonic()
    result = execute(unshare_executor.url, "while True:\n    pass\n", timeout=2).json()
    assert result["status"] == "timeout"
    assert result["reason"] == "time_limit"
    assert time.monotonic() - started < 2 + 5


def test_the_fallback_runs_as_the_slot_uid_with_the_same_outcomes(unshare_executor, execute):
    result = execute(unshare_executor.url, "import os, sys\nprint(os.getuid())\nsys.exit(4)").json()
    assert result["status"] == "failed"
    assert result["exit_code"] == 4
    # One of the uids the executor claimed (two per slot, two slots), never its own.
    base = unshare_executor.extra["uid_base"]
    assert base <= int(result["output"]) < base + 4
    memory = execute(unshare_executor.url, "x = b'x' * 2**30").json()
    assert (memory["status"], memory["reason"]) == ("failed", "memory_limit")


@pytest.mark.parametrize(
    ("env", "says"),
    [
        # auto never falls back to unshare on its own: that is asked for by name.
        ({"SANDBOX_MODE": "auto", "BWRAP_PATH": "/nonexistent/bwrap"}, "SANDBOX_MODE=unshare"),
        ({"SANDBOX_MODE": "bwrap", "BWRAP_PATH": "/nonexistent/bwrap"}, "no sandbox mode works"),
        ({"SANDBOX_MODE": "unshare", "UNSHARE_PATH": "/nonexistent/unshare"}, "no sandbox mode"),
        # In production a run without a cgroup of its own is refused, not run weaker.
        (
            {"ENVIRONMENT": "production", "CGROUP_MODE": "none", "INTERNAL_API_KEY": "k" * 32},
            "runs cannot get a cgroup of their own",
        ),
    ],
    ids=["auto-without-bwrap", "bwrap-missing", "unshare-missing", "production-without-cgroups"],
)
def test_an_executor_that_cannot_isolate_as_it_should_refuses_to_start(
    processes, uid_base, env, says
):
    argv = [sys.executable, "-m", "uvicorn", "crucible_executor.main:create_app", "--factory"]
    env = {"SANDBOX_UID_BASE": str(uid_base()), "INTERNAL_API_KEY": "", **env}
    argv += ["--port", str(free_port())]
    refused = processes.process("executor-without-sandbox", argv, env=env)
    wait_for(lambda: not refused.alive(), timeout=30, what="the executor to give up")
    assert refused.proc.returncode != 0
    assert says in refused.logs()
