"""A slot's next sandbox is prepared while its current program runs, under a uid and in a cgroup
of its own; a failed preparation leaves the slot cold (and counted), and an executor killed in
the middle of one leaves nothing behind once it has started again."""

from __future__ import annotations

import itertools
import threading
import uuid
from pathlib import Path

import httpx
import pytest

from crucible_executor.cgroups import CgroupMode, discover
from crucible_executor.sandbox import pids_of_uid, tasks_of_uid
from crucible_runtime.pytest_plugin import wait_for

SHOW_UID_AND_WAIT = "import os, time\nprint(os.getuid(), flush=True)\ntime.sleep(60)\n"
SHOW_UID = "import os\nprint(os.getuid())\n"


class Background:
    """A POST /execute running in a thread, for tests that act while a program runs."""

    def __init__(self, url: str, code: str, **fields) -> None:
        self.response: httpx.Response | BaseException | None = None
        self.eval_id = uuid.uuid4().hex
        body = {"eval_id": self.eval_id, "code": code, **fields}

        def send() -> None:
            try:
                self.response = httpx.post(f"{url}/execute", json=body, timeout=120)
            except httpx.HTTPError as exc:  # the executor was killed
                self.response = exc

        self._thread = threading.Thread(target=send, daemon=True)
        self._thread.start()

    def result(self, timeout: float = 60) -> httpx.Response:
        self._thread.join(timeout)
        assert isinstance(self.response, httpx.Response), self.response
        return self.response


def health(url: str) -> dict:
    return httpx.get(f"{url}/health", timeout=10).json()


def waiting_one(url: str) -> dict | None:
    """The one waiting sandbox of a one-slot executor, once there is one."""
    waiting = health(url)["warm"]["waiting"]
    return waiting[0] if waiting else None


def metric(url: str, name: str) -> float:
    total = 0.0
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith((name + "{", name + " ")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def cgroups_of(pid: int) -> set[str]:
    with open(f"/proc/{pid}/cgroup") as handle:
        return {Path(line.rstrip("\n").split(":", 2)[2]).name for line in handle}


def executor_trees(pid: int) -> list[Path]:
    _, own = discover()
    return [directory / f"crucible-executor-{pid}" for directory in own.values()]


def test_the_next_sandbox_is_prepared_while_the_program_runs(processes, start_executor):
    executor = start_executor(processes, executor_slots=1)
    url = executor.url
    current = wait_for(lambda: waiting_one(url), what="the first sandbox")

    running = Background(url, SHOW_UID_AND_WAIT, timeout=60)
    # While the program runs in the sandbox that was waiting, the slot's next one waits too.
    following = wait_for(
        lambda: health(url)["busy"] == 1 and waiting_one(url) != current and waiting_one(url),
        what="the next sandbox, prepared during the run",
    )
    assert following["slot"] == current["slot"] == 0
    assert following["uid"] != current["uid"]
    assert following["cgroup"] != current["cgroup"]
    program = [pid for pid in pids_of_uid(current["uid"]) if current["cgroup"] in cgroups_of(pid)]
    assert program, "the program runs under the uid and in the cgroup it was handed"
    assert not any(following["cgroup"] in cgroups_of(pid) for pid in program)

    assert httpx.post(f"{url}/kill/{running.eval_id}").json() == {"killed": True, "reaped": True}
    result = running.result().json()
    assert (result["status"], result["reason"]) == ("failed", "killed")
    assert result["output"] == f"{current['uid']}\n"
    # The next program gets the sandbox prepared meanwhile: no cold start.
    answer = httpx.post(f"{url}/execute", json={"eval_id": uuid.uuid4().hex, "code": SHOW_UID})
    assert answer.json()["output"] == f"{following['uid']}\n"
    assert metric(url, "crucible_executor_cold_runs_total") == 0


def test_consecutive_programs_of_a_slot_get_different_uids_and_cgroups(processes, start_executor):
    executor = start_executor(processes, executor_slots=1)
    url = executor.url
    seen = []
    for _ in range(4):
        sandbox = wait_for(lambda: waiting_one(url), what="the slot's next sandbox")
        answer = httpx.post(f"{url}/execute", json={"eval_id": uuid.uuid4().hex, "code": SHOW_UID})
        assert answer.json()["output"] == f"{sandbox['uid']}\n"
        seen.append(sandbox)
    for before, after in itertools.pairwise(seen):
        assert before["uid"] != after["uid"]
    assert len({sandbox["cgroup"] for sandbox in seen}) == len(seen)
    assert metric(url, "crucible_executor_warm_handovers_total") == 4


def test_consecutive_cold_programs_of_a_slot_get_different_uids(processes, start_executor):
    executor = start_executor(processes, executor_slots=1, warm_sandboxes="false")
    uids = [
        httpx.post(
            f"{executor.url}/execute", json={"eval_id": uuid.uuid4().hex, "code": SHOW_UID}
        ).json()["output"]
        for _ in range(3)
    ]
    assert uids[0] != uids[1] != uids[2]


def test_a_failed_preparation_leaves_the_slot_cold_and_is_counted(
    processes, start_executor, executor_run_cgroups, live_pids_in_uid_range
):
    # No sandbox is ready within a millisecond: every preparation fails (and is torn down).
    executor = start_executor(
        processes, executor_slots=1, warm_prepare_timeout_seconds=0.001, warm_retry_seconds=1
    )
    url = executor.url
    failed = 'crucible_executor_warm_discarded_total{executor_id="executor-test",reason="failed"}'
    wait_for(lambda: metric(url, failed) >= 1, what="a failed preparation")
    answer = httpx.post(f"{url}/execute", json={"eval_id": uuid.uuid4().hex, "code": "print(2)"})
    assert (answer.json()["status"], answer.json()["output"]) == ("completed", "2\n")
    assert metric(url, "crucible_executor_cold_runs_total") == 1
    assert metric(url, "crucible_executor_warm_handovers_total") == 0
    assert health(url)["warm"]["ready"] == 0
    assert executor_run_cgroups(executor.proc.pid) == []
    assert live_pids_in_uid_range(executor.extra["uid_base"]) == []


def freeze(tree: dict[str, Path], mode: CgroupMode) -> None:
    """Freeze an executor's cgroup tree: its sandboxes, and any made below it from then on."""
    if mode is CgroupMode.V2:
        (tree["unified"] / "cgroup.freeze").write_text("1")
    else:
        (tree["freezer"] / "freezer.state").write_text("FROZEN")


def test_an_executor_killed_mid_preparation_leaves_nothing_after_its_restart(
    processes, start_executor, live_pids_in_uid_range
):
    mode, own = discover()
    if mode is CgroupMode.V1 and "freezer" not in own:
        pytest.skip("this host mounts no cgroup v1 freezer hierarchy, which the test stops with")
    executor = start_executor(processes, executor_slots=1)
    url, pid, base = executor.url, executor.proc.pid, executor.extra["uid_base"]
    wait_for(lambda: waiting_one(url), what="the first sandbox")
    # Frozen, the next sandbox's process stops on joining its cgroup, before it is exec'd: the
    # preparation started by the run below cannot finish.
    freeze({key: directory / f"crucible-executor-{pid}" for key, directory in own.items()}, mode)
    Background(url, "print('never runs')", timeout=60)
    wait_for(
        lambda: health(url)["warm"]["preparing"] == 1 and health(url)["busy"] == 1,
        what="a preparation under way",
    )
    trees = executor_trees(pid)
    left = [child for tree in trees for child in tree.iterdir() if child.is_dir()]
    assert len({child.name for child in left}) == 2, left  # the run's and the one preparing
    scratch = Path(executor.extra.get("scratch_root", "/run/crucible-executor")) / f"executor-{pid}"
    assert scratch.exists()

    executor.kill()  # SIGKILL: no shutdown runs
    processes.restart(executor)

    assert executor.proc.pid != pid
    assert not any(tree.exists() for tree in trees)
    assert not scratch.exists()
    assert f"executor-{pid}/" not in Path("/proc/self/mountinfo").read_text()
    assert live_pids_in_uid_range(base) == []
    answer = httpx.post(f"{url}/execute", json={"eval_id": uuid.uuid4().hex, "code": SHOW_UID})
    assert answer.json()["status"] == "completed"


def test_programs_in_a_row_are_not_refused_processes_by_their_predecessors_leftovers(
    processes, start_executor
):
    """bwrap leaves each sandbox's init to its new parent to reap; until then that zombie
    counts against its uid's RLIMIT_NPROC. The executor reaps it before lending the uid again,
    so with room for only a few processes per uid, every program in a row still starts."""
    executor = start_executor(processes, executor_slots=1, nproc=4)
    url = executor.url
    for n in range(30):
        answer = httpx.post(
            f"{url}/execute", json={"eval_id": uuid.uuid4().hex, "code": f"print({n})"}
        )
        assert (answer.json()["status"], answer.json()["output"]) == ("completed", f"{n}\n")
    failed = 'crucible_executor_warm_discarded_total{executor_id="executor-test",reason="failed"}'
    assert metric(url, failed) == 0


# Forks until the process limit refuses, holds every child, says how many it got, then waits.
HOLD_EVERY_PROCESS = """
import os, time
r, w = os.pipe()
held = 0
while True:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        os.read(r, 1)
        os._exit(0)
    held += 1
print(held, flush=True)
time.sleep(60)
"""


def pids_current(executor_pid: int, cgroup: str) -> int:
    mode, own = discover()
    hierarchy = own["unified"] if mode is CgroupMode.V2 else own["pids"]
    path = hierarchy / f"crucible-executor-{executor_pid}" / cgroup / "pids.current"
    return int(path.read_text())


def test_a_program_at_its_process_limit_shares_none_with_the_next_sandbox(
    processes, start_executor
):
    nproc = 12
    executor = start_executor(processes, executor_slots=1, nproc=nproc)
    url = executor.url
    current = wait_for(lambda: waiting_one(url), what="the first sandbox")
    running = Background(url, HOLD_EVERY_PROCESS, timeout=60)
    wait_for(
        lambda: tasks_of_uid(current["uid"]) == nproc,
        what="the program holding every process its uid may have",
    )
    following = wait_for(
        lambda: waiting_one(url) != current and waiting_one(url), what="the next sandbox"
    )
    assert following["uid"] != current["uid"]
    # The program holds its whole limit (its cgroup's and its uid's) beside the prepared sandbox.
    assert pids_current(executor.proc.pid, current["cgroup"]) == nproc
    assert tasks_of_uid(current["uid"]) == nproc
    assert httpx.post(f"{url}/kill/{running.eval_id}").json() == {"killed": True, "reaped": True}
    assert running.result().json()["reason"] == "killed"
    answer = httpx.post(f"{url}/execute", json={"eval_id": uuid.uuid4().hex, "code": SHOW_UID})
    assert answer.json()["output"] == f"{following['uid']}\n"
