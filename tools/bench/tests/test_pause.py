"""Pausing a real process tree (SIGSTOP) and continuing it (SIGCONT), as the accept-only phase
does with the consumers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

from crucible_bench.machine import process_table
from crucible_bench.pause import paused, process_state, tree_pids
from crucible_runtime.pytest_plugin import wait_for


@pytest.fixture
def tree() -> Iterator[subprocess.Popen]:
    """A shell with two sleeping children, like a supervisor and its worker processes."""
    shell = subprocess.Popen(["/bin/sh", "-c", "sleep 60 & sleep 60 & wait"])
    wait_for(lambda: len(tree_pids(process_table(), shell.pid)) == 3)
    pids = tree_pids(process_table(), shell.pid)
    yield shell
    for pid in reversed(pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shell.wait(5)


def test_tree_pids_lists_parents_before_children():
    table = {1: (0, 0), 10: (1, 0), 11: (10, 0), 12: (10, 0), 20: (1, 0), 99: (0, 0)}
    assert tree_pids(table, 10) == [10, 11, 12]
    assert tree_pids(table, 1) == [1, 10, 20, 11, 12]
    assert tree_pids(table, 42) == []


def test_the_whole_tree_is_stopped_inside_and_running_after(tree):
    pids = tree_pids(process_table(), tree.pid)
    with paused([tree.pid]) as stopped:
        assert sorted(stopped) == sorted(pids)
        assert {process_state(pid) for pid in pids} == {"T"}
    wait_for(lambda: all(process_state(pid) in ("S", "R") for pid in pids))


def test_the_tree_is_continued_when_the_body_fails(tree):
    pids = tree_pids(process_table(), tree.pid)
    with pytest.raises(KeyboardInterrupt), paused([tree.pid]):
        raise KeyboardInterrupt
    wait_for(lambda: all(process_state(pid) in ("S", "R") for pid in pids))


def test_a_root_that_has_gone_is_ignored():
    gone = subprocess.Popen(["/bin/true"])
    gone.wait(5)
    with paused([gone.pid]) as stopped:
        assert stopped == []
