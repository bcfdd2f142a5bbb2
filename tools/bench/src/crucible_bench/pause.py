"""Pausing whole process trees (SIGSTOP, later SIGCONT): the consumers during the accept-only phase."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from crucible_bench.machine import PROC, process_table

STOPPED_STATES = frozenset("Tt")


def tree_pids(table: Mapping[int, tuple[int, int]], root: int) -> list[int]:
    """`root` and its descendants in `table` (pid -> (ppid, ticks)), parents before children."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    ordered, queue = [], [root] if root in table else []
    while queue:
        pid = queue.pop(0)
        ordered.append(pid)
        queue.extend(sorted(children.get(pid, ())))
    return ordered


def process_state(pid: int, proc: Path = PROC) -> str | None:
    """The one-letter state of `pid` (R, S, T, Z, ...), None once it has gone."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2]


@contextlib.contextmanager
def paused(roots: Iterable[int], *, timeout: float = 5.0) -> Iterator[list[int]]:
    """Every process of the trees under `roots` stopped (SIGSTOP) while the body runs, and
    continued (SIGCONT) on exit, also on an exception or Ctrl-C. Yields the pids stopped.

    Parents are stopped before their children, so that none forks a child unseen; the trees are
    read again until no new process turns up. RuntimeError if a process does not show as
    stopped within `timeout`.
    """
    roots = list(roots)
    stopped: list[int] = []
    try:
        while True:
            table = process_table()
            new = [pid for root in roots for pid in tree_pids(table, root) if pid not in stopped]
            if not new:
                break
            for pid in new:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)
        deadline = time.monotonic() + timeout
        while running := [
            pid for pid in stopped if process_state(pid) not in (*STOPPED_STATES, None)
        ]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes {running} did not stop within {timeout}s")
            time.sleep(0.01)
        yield list(stopped)
    finally:
        # Children first: a parent continued first could see its children as stopped.
        for pid in reversed(stopped):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
