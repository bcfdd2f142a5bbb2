"""`make run` keeps the suite alive: a process that dies is restarted (with back-off, and said),
and Ctrl-C still stops every process."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from crucible_runtime.pytest_plugin import free_port, wait_for

REPO = Path(__file__).resolve().parents[1]
SUPERVISE = REPO / "scripts" / "supervise.sh"
PORTS = (
    "GATEWAY_PORT",
    "QUEUE_SERVICE_PORT",
    "STORAGE_PORT",
    "EXECUTOR_1_PORT",
    "EXECUTOR_2_PORT",
    "EXECUTOR_3_PORT",
    "FLOWER_PORT",
    "BROKER_REDIS_PORT",
    "STATE_REDIS_PORT",
)


def test_supervise_restarts_a_dying_command_with_back_off_and_stops_on_sigterm(tmp_path):
    runs = tmp_path / "runs"
    command = f"echo run >> {runs}; exit 3"
    loop = subprocess.Popen(
        [str(SUPERVISE), "demo", "sh", "-c", command], stderr=subprocess.PIPE, text=True
    )
    wait_for(lambda: runs.exists() and runs.read_text().count("run") >= 2, timeout=10)
    loop.send_signal(signal.SIGTERM)
    assert loop.wait(timeout=5) == 0
    said = loop.stderr.read()
    assert "supervise: demo exited with status 3; restarting it in 1s" in said
    assert "restarting it in 2s" in said or runs.read_text().count("run") == 2


def _pids_under(root: int) -> set[int]:
    """Every live descendant of `root`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _storage_pid(run_dir_parent: int) -> int | None:
    for pid in _pids_under(run_dir_parent):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        # The service itself, not the supervise.sh loop that carries the same words in its args.
        if b"crucible_storage.main" in cmdline and b"supervise.sh" not in cmdline:
            return pid
    return None


@pytest.mark.e2e
def test_make_run_restarts_a_killed_service_and_ctrl_c_stops_everything(tmp_path):
    env = {**os.environ, "RUN_DIR": str(tmp_path / "run"), "CELERY_CONCURRENCY": "1"}
    env.update({name: str(free_port()) for name in PORTS})
    log = open(tmp_path / "make-run.log", "w")  # noqa: SIM115 -- read back below
    suite = subprocess.Popen(
        ["bash", "scripts/run.sh"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    storage = f"http://127.0.0.1:{env['STORAGE_PORT']}/health"
    try:
        wait_for(lambda: httpx.get(storage, timeout=2).status_code == 200, timeout=90)
        first = _storage_pid(suite.pid)
        assert first is not None
        os.kill(first, signal.SIGKILL)

        def restarted() -> bool:
            again = _storage_pid(suite.pid)
            return again not in (None, first) and httpx.get(storage, timeout=2).status_code == 200

        wait_for(restarted, timeout=60, what="storage to be restarted and answer again")
        assert suite.poll() is None  # the rest of the suite lived on
        assert "supervise: storage exited with status" in (tmp_path / "make-run.log").read_text()
    finally:
        descendants = _pids_under(suite.pid)
        suite.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            suite.wait(timeout=60)
        finally:
            if suite.poll() is None:
                os.killpg(suite.pid, signal.SIGKILL)
            log.close()
    deadline = time.monotonic() + 20
    while (left := [p for p in descendants if Path(f"/proc/{p}").exists()]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    zombies_or_alive = [p for p in left if "Z" not in Path(f"/proc/{p}/stat").read_text()[:200]]
    assert zombies_or_alive == [], "processes left after Ctrl-C"
