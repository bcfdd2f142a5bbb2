"""The unshare fallback: chosen where bwrap cannot run, and still without network and bounded in time."""

from __future__ import annotations

import socket
import sys
import time

import httpx
import pytest

from crucible_contracts.pytest_plugin import free_port, wait_for


@pytest.fixture(scope="module")
def unshare_executor(session_processes, start_executor):
    return start_executor(session_processes, executor_slots=2, sandbox_mode="unshare")


def test_health_says_the_unshare_sandbox_is_active(unshare_executor):
    assert httpx.get(f"{unshare_executor.url}/health").json()["sandbox"] == "unshare"


def test_auto_mode_falls_back_to_unshare_when_bwrap_is_missing(processes, start_executor):
    fallback = start_executor(processes, executor_slots=1, bwrap_path="/nonexistent/bwrap")
    assert httpx.get(f"{fallback.url}/health").json()["sandbox"] == "unshare"


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
    assert int(result["output"]) == unshare_executor.extra["uid_base"]
    memory = execute(unshare_executor.url, "x = bytearray(2**30)").json()
    assert (memory["status"], memory["reason"]) == ("failed", "memory_limit")


@pytest.mark.parametrize("mode", ["bwrap", "auto"])
def test_an_executor_that_cannot_sandbox_refuses_to_start(processes, uid_base, mode):
    argv = [sys.executable, "-m", "uvicorn", "crucible_executor.main:create_app", "--factory"]
    env = {
        "SANDBOX_MODE": mode,
        "BWRAP_PATH": "/nonexistent/bwrap",
        "UNSHARE_PATH": "/nonexistent/unshare",
        "SANDBOX_UID_BASE": str(uid_base()),
        "INTERNAL_API_KEY": "",
    }
    argv += ["--port", str(free_port())]
    refused = processes.process("executor-without-sandbox", argv, env=env)
    wait_for(lambda: not refused.alive(), timeout=30, what="the executor to give up")
    assert refused.proc.returncode != 0
    assert "no sandbox mode works on this host" in refused.logs()
