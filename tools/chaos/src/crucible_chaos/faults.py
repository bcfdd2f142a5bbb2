"""The faults, as a table of small functions: how each one breaks a part of the suite, and how
that part comes back after a short pause (as a supervisor would bring it back).

`suite` is the root conftest's `Suite`: every process of it is a `ManagedProcess` that can be
killed on its own and restarted by `suite.starter.restart` (same argv, same log file, same port).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

Suite = Any  # conftest.Suite: tests cannot import the root conftest (STYLE.md)
Action = Callable[[Suite], None]
# An injection may say what exactly it hit (which child, which task), for the details.
Inject = Callable[[Suite], str | None]


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    inject: Inject
    recover: Action


def _kill(part: str) -> Inject:
    """kill -9 of the part's whole process group (a crash, not a shutdown)."""
    return lambda suite: getattr(suite, part).kill()


def _kill_executor(index: int) -> Inject:
    return lambda suite: suite.executors[index].kill()


def _stop(part: str) -> Inject:
    """SIGTERM: a Redis restart as an operator or an orchestrator does it."""
    return lambda suite: getattr(suite, part).stop()


def _restart(part: str) -> Action:
    return lambda suite: suite.starter.restart(getattr(suite, part))


def _restart_executor(index: int) -> Action:
    return lambda suite: suite.starter.restart(suite.executors[index])


def children_of(pid: int) -> list[int]:
    """The pids whose parent is `pid` (from /proc; a process that goes meanwhile is skipped)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name (field 2) may hold spaces and parentheses: split after its ")".
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def busy_children(broker_url: str) -> dict[int, str]:
    """Prefork child pid -> the task id it runs right now, by Celery's own account."""
    from celery import Celery

    app = Celery(broker=broker_url)
    try:
        active = app.control.inspect(timeout=1.0).active() or {}
    finally:
        app.close()
    return {
        task["worker_pid"]: task["id"]
        for tasks in active.values()
        for task in tasks
        if task.get("worker_pid")
    }


def kill_celery_main(suite: Suite) -> str:
    """kill -9 of the worker's main process only: its prefork children are left as they are."""
    process = suite.celery_worker.proc
    os.kill(process.pid, signal.SIGKILL)
    process.wait(5)
    return f"killed the main process {process.pid}"


def running_in_storage(storage_url: str, task_id: str) -> bool:
    """Whether the run of Celery task `task_id` ("<eval_id>:<role>") is `running` in storage."""
    eval_id, role = task_id.split(":")
    view = httpx.get(f"{storage_url}/evaluations/{eval_id}", timeout=2).json()
    return any(run["role"] == role and run["status"] == "running" for run in view["runs"])


def kill_prefork_child(suite: Suite, *, within: float = 10) -> str:
    """kill -9 of one prefork child mid-run: one Celery names busy with a task whose run storage
    has `running` (its program is on an executor, its result not yet recorded); failing that
    within `within` seconds, a busy one, else any (the note says which it was)."""
    main = suite.celery_worker.proc.pid
    deadline = time.monotonic() + within
    while True:
        children = children_of(main)
        busy = {
            pid: task
            for pid, task in busy_children(suite.env["CELERY_BROKER_URL"]).items()
            if pid in children
        }
        mid_run = [pid for pid, task in busy.items() if running_in_storage(suite.storage.url, task)]
        if mid_run or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if not children:
        raise RuntimeError(f"the Celery worker {main} has no prefork child to kill")
    suite.celery_worker.extra["prefork_children"] = len(children)
    victim = min(mid_run or busy or children)
    os.kill(victim, signal.SIGKILL)
    if mid_run:
        return f"killed prefork child {victim} mid-run of {busy[victim]}"
    if busy:
        return f"killed prefork child {victim}, which Celery named busy with {busy[victim]}"
    return f"killed prefork child {victim}, idle (Celery named no child busy)"


def pool_replaces_child(suite: Suite, *, timeout: float = 30) -> None:
    """Nothing to restart: the pool starts a new child itself. Waits until it has."""
    main, deadline = suite.celery_worker.proc.pid, time.monotonic() + timeout
    want = suite.celery_worker.extra["prefork_children"]
    while len(children_of(main)) < want:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Celery pool did not replace its child within {timeout}s")
        time.sleep(0.2)


FAULTS: dict[str, Fault] = {
    fault.name: fault
    for fault in (
        Fault(
            "celery-main",
            "kill -9 of the Celery worker's main process (its children left alone)",
            kill_celery_main,
            _restart("celery_worker"),
        ),
        Fault(
            "celery-child",
            "kill -9 of one prefork child of the Celery worker, mid-run",
            kill_prefork_child,
            pool_replaces_child,
        ),
        Fault(
            "queue-worker",
            "kill -9 of the queue-worker",
            _kill("queue_worker"),
            _restart("queue_worker"),
        ),
        Fault(
            "queue-service",
            "kill -9 of the queue-service (its deque is in memory)",
            _kill("queue_service"),
            _restart("queue_service"),
        ),
        Fault(
            "executor-legacy",
            "kill -9 of executor-1, the legacy path's one executor",
            _kill_executor(0),
            _restart_executor(0),
        ),
        Fault(
            "executor-celery",
            "kill -9 of executor-2, one of the Celery path's two",
            _kill_executor(1),
            _restart_executor(1),
        ),
        Fault("storage", "kill -9 of storage", _kill("storage"), _restart("storage")),
        Fault(
            "broker-redis",
            "restart of the broker Redis (SIGTERM, append-only file kept)",
            _stop("broker"),
            _restart("broker"),
        ),
        Fault(
            "state-redis",
            "restart of the state Redis (SIGTERM, append-only file kept)",
            _stop("state_redis"),
            _restart("state_redis"),
        ),
    )
}
