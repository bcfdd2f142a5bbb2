"""Fixtures of the executor's tests: real executor processes, and a Runner driven directly."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crucible_contracts.models import ExecuteRequest, ExecuteResult
from crucible_executor.cgroups import create_tree, discover
from crucible_executor.config import SandboxMode, Settings
from crucible_executor.runner import Runner
from crucible_executor.sandbox import pids_of_uid
from crucible_executor.scratch import Scratch
from crucible_runtime.pytest_plugin import ProcessStarter

APP = "crucible_executor.main:create_app"
# Each executor a test starts gets its own uid range, clear of the ranges `make run` uses.
_UID_BASES = itertools.count(400_000 + random.randrange(0, 50_000) * 16, 16)
# The URL of each executor `start_executor` started, by its pid and by its uid base: the
# leftover checks ask it which sandboxes are waiting for a program (/health's warm section).
_URLS: dict[int, str] = {}


@pytest.fixture(scope="session")
def uid_base() -> Callable[[], int]:
    """A fresh range of 16 sandbox uids, for one executor or Runner."""
    return lambda: next(_UID_BASES)


def executor_env(base: int, **extra: Any) -> dict[str, str]:
    env = {
        "EXECUTOR_ID": "executor-test",
        "SANDBOX_UID_BASE": str(base),
        "INTERNAL_API_KEY": "",
        "SANDBOX_MODE": "auto",
    }
    env.update({key.upper(): str(value) for key, value in extra.items()})
    return env


@pytest.fixture(scope="session")
def start_executor() -> Callable[..., Any]:
    """start_executor(processes, **env) → a running executor process (env names in any case)."""

    def start(starter: ProcessStarter, **env: Any) -> Any:
        base = int(env.pop("sandbox_uid_base", next(_UID_BASES)))
        managed = starter.service(APP, name="executor", env=executor_env(base, **env))
        managed.extra["uid_base"] = base
        _URLS[managed.proc.pid] = _URLS[base] = managed.url
        return managed

    return start


@pytest.fixture(scope="session")
def executor(session_processes: ProcessStarter, start_executor: Callable[..., Any]) -> Any:
    """One bwrap executor with 4 slots, shared by the tests that only need it to run programs."""
    return start_executor(session_processes, executor_slots=4, sandbox_mode="bwrap")


@pytest.fixture
def execute() -> Callable[..., httpx.Response]:
    """execute(url, code, **fields) → the HTTP answer of POST /execute (a fresh eval_id)."""

    def call(url: str, code: str, *, headers: dict | None = None, **fields: Any) -> httpx.Response:
        body = {"eval_id": fields.pop("eval_id", uuid.uuid4().hex), "code": code, **fields}
        return httpx.post(f"{url}/execute", json=body, headers=headers, timeout=60)

    return call


@pytest.fixture
def runner_for(uid_base: Callable[[], int]) -> Iterator[Callable[..., Runner]]:
    """runner_for(mode="bwrap", cgroups=True, scratch=True, **settings) → a Runner driven in
    this process, as the executor makes it: each run in a cgroup and on a tmpfs of its own,
    below a tree and a directory of this Runner's (removed after the test)."""
    runners: list[Runner] = []

    def make(
        mode: str = "bwrap", *, cgroups: bool = True, scratch: bool = True, **options: Any
    ) -> Runner:
        options.setdefault("sandbox_uid_base", uid_base())
        settings = Settings(executor_id="runner-test", **options)
        name = f"crucible-executor-test-{uuid.uuid4().hex[:12]}"
        runner = Runner(
            settings,
            mode=SandboxMode(mode),
            cgroups=create_tree(name=name, cpu_weight=settings.run_cpu_weight) if cgroups else None,
            scratch=Scratch.create(
                settings.scratch_root,
                size_mb=settings.scratch_mb,
                inodes=settings.scratch_inodes,
                name=name,
            )
            if scratch
            else None,
        )
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.close()


@pytest.fixture
def run_cgroups() -> Callable[[Runner], list[Path]]:
    """run_cgroups(runner) → the run cgroups still present below the runner's tree."""

    def present(runner: Runner) -> list[Path]:
        assert runner.cgroups is not None
        return [
            child
            for parent in runner.cgroups.parents.values()
            for child in parent.iterdir()
            if child.is_dir()
        ]

    return present


def waiting_sandboxes(url: str) -> tuple[set[str], set[int]]:
    """The cgroup names and uids of the warm sandboxes waiting for a program, from /health."""
    waiting = httpx.get(f"{url}/health", timeout=10).json()["warm"]["waiting"]
    return {sandbox["cgroup"] for sandbox in waiting}, {sandbox["uid"] for sandbox in waiting}


@pytest.fixture
def executor_run_cgroups() -> Callable[[int], list[Path]]:
    """executor_run_cgroups(pid) → run cgroups below the tree of the executor process `pid`
    (not those of the warm sandboxes waiting for the next programs)."""

    def present(pid: int) -> list[Path]:
        _, own = discover()
        name = f"crucible-executor-{pid}"
        parents = [directory / name for directory in own.values()]
        assert all(parent.is_dir() for parent in parents), parents
        cgroups, _ = waiting_sandboxes(_URLS[pid])
        return [
            child
            for parent in parents
            for child in parent.iterdir()
            if child.is_dir() and child.name not in cgroups
        ]

    return lambda pid: settled(lambda: present(pid))


async def run_in(
    runner: Runner, request: ExecuteRequest, *, warm: bool = True, execution: Any = None
) -> ExecuteResult:
    """Run `request` as an executor slot does: handed to a warm sandbox prepared for it (when
    `warm` and the runner has one for the language), else cold. A sandbox that cannot be
    prepared (a broken bwrap) leaves the run cold, where it fails as the test expects."""
    sandbox = None
    if warm and request.language in runner.warm_languages:
        with contextlib.suppress(OSError):
            sandbox = await runner.prepare(0, request.language)
    return await runner.run(request, warm=sandbox, execution=execution)


@pytest.fixture
def run(runner_for: Callable[..., Runner]) -> Callable[..., ExecuteResult]:
    """run(code, runner=None, warm=True, **request fields) → the ExecuteResult of a real
    sandboxed run; handed to a warm sandbox (python) unless warm=False."""

    def call(
        code: str, *, runner: Runner | None = None, warm: bool = True, **fields: Any
    ) -> ExecuteResult:
        runner = runner or runner_for()
        request = ExecuteRequest(eval_id=uuid.uuid4().hex, code=code, **fields)
        return asyncio.run(run_in(runner, request, warm=warm))

    return call


@pytest.fixture
def host_processes_with() -> Callable[[str], list[int]]:
    """host_processes_with(text) → pids of host processes whose command line contains `text`."""

    def find(text: str) -> list[int]:
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                    cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(int(entry.name))
        return found

    return find


def cgroup_names_of(pid: int) -> set[str]:
    """The names of the cgroups process `pid` is in (one per hierarchy; empty once it is gone)."""
    try:
        with open(f"/proc/{pid}/cgroup") as handle:
            return {Path(line.rstrip("\n").split(":", 2)[2]).name for line in handle}
    except OSError:
        return set()


# An executor answers a run before its sandbox is torn down (the teardown follows at once, off the
# request path): what a run leaves is looked at once teardowns had this long to finish.
SETTLE_SECONDS = 15.0


def settled(probe: Callable[[], list[Any]]) -> list[Any]:
    """What `probe` still finds once it finds nothing, or after SETTLE_SECONDS: leftovers of a
    teardown that never finishes stay in the answer, and the caller's `== []` fails on them."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while (left := probe()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.fixture
def live_pids_in_uid_range() -> Callable[[int, int], list[int]]:
    """live_pids_in_uid_range(base, count=16) → processes left under those sandbox uids, not
    counting the warm sandboxes waiting for the next programs (their uid and their cgroup)."""

    def present(base: int, count: int) -> list[int]:
        cgroups, uids = waiting_sandboxes(_URLS[base])
        return [
            pid
            for uid in range(base, base + count)
            for pid in pids_of_uid(uid)
            if uid not in uids or not cgroup_names_of(pid) & cgroups
        ]

    return lambda base, count=16: settled(lambda: present(base, count))


@pytest.fixture
def all_pids_in_uid_range() -> Callable[[int, int], list[int]]:
    """all_pids_in_uid_range(base, count=16) → every live process under those sandbox uids."""
    return lambda base, count=16: [
        pid for uid in range(base, base + count) for pid in pids_of_uid(uid)
    ]
