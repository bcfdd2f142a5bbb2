"""The fault table covers issue 12's faults; finding a process's children from /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from crucible_chaos.faults import FAULTS, children_of
from crucible_runtime.pytest_plugin import wait_for


def test_every_fault_of_issue_12_is_in_the_table_with_both_halves():
    assert set(FAULTS) == {
        "celery-main",
        "celery-child",
        "queue-worker",
        "queue-service",
        "executor-legacy",
        "executor-celery",
        "storage",
        "broker-redis",
        "state-redis",
    }
    assert all(callable(f.inject) and callable(f.recover) and f.what for f in FAULTS.values())


def test_children_of_finds_a_child_process_and_not_a_grandchild():
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, time; subprocess.Popen(['sleep', '30']); time.sleep(30)",
        ]
    )
    try:
        grandchildren = wait_for(lambda: children_of(child.pid), timeout=10, what="the grandchild")
        assert child.pid in children_of(os.getpid())
        assert not set(grandchildren) & set(children_of(os.getpid()))
    finally:
        for pid in children_of(child.pid):
            os.kill(pid, signal.SIGKILL)
        child.kill()
        child.wait()
