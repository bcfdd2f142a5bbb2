"""The executor's HTTP contract: results, capacity, idempotent joins, kills, validation, auth."""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest

from crucible_runtime.pytest_plugin import wait_for


class Background:
    """A POST /execute running in a thread, for tests that act while a program runs."""

    def __init__(self, execute, url: str, code: str, **fields) -> None:
        self.response: httpx.Response | None = None
        self._thread = threading.Thread(
            target=lambda: setattr(self, "response", execute(url, code, **fields))
        )
        self._thread.start()

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self, timeout: float = 60) -> httpx.Response:
        self._thread.join(timeout)
        assert self.response is not None, "the background /execute never answered"
        return self.response


def busy(url: str) -> int:
    return httpx.get(f"{url}/capacity").json()["busy"]


@pytest.fixture
def one_slot_executor(processes, start_executor):
    return start_executor(processes, executor_slots=1)


def test_health_names_the_active_sandbox_and_capacity_counts_slots(executor):
    health = httpx.get(f"{executor.url}/health").json()
    assert health["status"] == "ok"
    assert health["executor_id"] == "executor-test"
    assert health["sandbox"] == "bwrap"
    assert "python" in health["languages"]
    capacity = httpx.get(f"{executor.url}/capacity").json()
    assert capacity == {"slots": 4, "busy": 0, "free": 4, "cgroup": health["cgroup"]}


@pytest.mark.parametrize(
    ("code", "status", "exit_code", "output", "error"),
    [
        ("print('hello')", "completed", 0, "hello\n", ""),
        (
            "import sys\nprint('bad input', file=sys.stderr)\nsys.exit(3)",
            "failed",
            3,
            "",
            "bad input\n",
        ),
        ("raise ValueError('boom')", "failed", 1, "", "ValueError: boom"),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", "failed", 139, "", ""),
        ("print('héllo ✓')", "completed", 0, "héllo ✓\n", ""),
    ],
)
def test_exit_code_output_and_stderr_of_a_program(
    executor, execute, code, status, exit_code, output, error
):
    result = execute(executor.url, code).json()
    assert result["status"] == status
    assert result["exit_code"] == exit_code
    assert result["executor_id"] == "executor-test"
    if output is not None:
        assert result["output"] == output
    assert error in result["error"]
    assert result["reason"] is None


def test_invalid_utf8_output_is_replaced_not_refused(executor, execute):
    code = "import sys\nsys.stdout.buffer.write(b'ok \\xff\\xfe end')"
    result = execute(executor.url, code).json()
    assert result["output"] == "ok \ufffd\ufffd end"


def test_stdin_reaches_the_program(executor, execute):
    stdin = "line one\n" + "x" * 200_000 + "\nlast\n"
    code = "import sys\ndata = sys.stdin.read()\nprint(len(data), data.splitlines()[0], data.split()[-1])"
    result = execute(executor.url, code, stdin=stdin).json()
    assert result["output"] == f"{len(stdin)} line one last\n"


def test_a_program_that_ignores_stdin_still_ends(executor, execute):
    result = execute(executor.url, "print('done')", stdin="y" * 1_000_000).json()
    assert result["status"] == "completed"
    assert result["output"] == "done\n"


def test_javascript_runs_with_node(executor, execute):
    result = execute(executor.url, "console.log(6 * 7)", language="javascript").json()
    assert result["status"] == "completed", result
    assert result["output"] == "42\n"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"language": "cobol"}, "language"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": 301}, "timeout"),
        ({"code": "#" * (64 * 1024 + 1)}, "code"),
        ({"memory_mb": 1}, "memory_mb"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_invalid_requests_get_422_naming_the_field(executor, execute, fields, field):
    response = execute(executor.url, fields.pop("code", "print(1)"), **fields)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert field in error["message"]


def test_beyond_capacity_the_answer_is_429_with_retry_after_at_once(one_slot_executor, execute):
    url = one_slot_executor.url
    occupant_id = uuid.uuid4().hex
    occupant = Background(execute, url, "import time\ntime.sleep(30)", eval_id=occupant_id)
    wait_for(lambda: busy(url) == 1, timeout=10, what="the slot to be taken")
    refused = execute(url, "print(1)")
    # Answered while the occupant still runs: refused at once, not queued behind it.
    assert not occupant.done()
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["code"] == "busy"
    assert httpx.post(f"{url}/kill/{occupant_id}").json() == {"killed": True, "reaped": True}
    assert occupant.result().json()["reason"] == "killed"
    assert execute(url, "print(1)").status_code == 200


def test_duplicate_execute_joins_the_running_program(one_slot_executor, execute):
    url = one_slot_executor.url
    code = "import os, time\ntime.sleep(1)\nprint(os.urandom(8).hex())"
    eval_id = uuid.uuid4().hex
    first = Background(execute, url, code, eval_id=eval_id)
    wait_for(lambda: busy(url) == 1, timeout=10, what="the first run to start")
    second = execute(url, code, eval_id=eval_id)  # one slot: it would be 429 if not joined
    assert second.status_code == 200
    assert second.json() == first.result().json()
    assert second.json()["status"] == "completed"
    # The shadow role of the same eval is a different run.
    other_role = Background(execute, url, code, eval_id=eval_id, role="shadow")
    assert other_role.result().json()["output"] != second.json()["output"]


def test_kill_ends_a_running_program(one_slot_executor, execute):
    url = one_slot_executor.url
    eval_id = uuid.uuid4().hex
    running = Background(execute, url, "while True:\n    pass\n", eval_id=eval_id, timeout=60)
    wait_for(lambda: busy(url) == 1, timeout=10, what="the program to start")
    assert httpx.post(f"{url}/kill/{eval_id}").json() == {"killed": True, "reaped": True}
    result = running.result().json()
    assert result["runtime_ms"] < 60_000  # stopped by the kill, not by its own time limit
    assert result["status"] == "failed"
    assert result["reason"] == "killed"
    assert result["exit_code"] is None
    assert busy(url) == 0
    assert httpx.post(f"{url}/kill/{eval_id}").json() == {"killed": False, "reaped": True}


def test_kill_answers_once_the_slot_is_free_so_a_retry_runs_afresh(one_slot_executor, execute):
    url = one_slot_executor.url
    eval_id = uuid.uuid4().hex
    doomed = Background(execute, url, "while True:\n    pass\n", eval_id=eval_id, timeout=60)
    wait_for(lambda: busy(url) == 1, timeout=10, what="the program to start")

    assert httpx.post(f"{url}/kill/{eval_id}", timeout=30).json() == {
        "killed": True,
        "reaped": True,
    }
    assert busy(url) == 0
    retry = execute(url, "print('second run')", eval_id=eval_id)

    assert doomed.result().json()["reason"] == "killed"
    assert retry.status_code == 200
    assert (retry.json()["status"], retry.json()["output"]) == ("completed", "second run\n")


def test_metrics_count_runs_by_status(executor, execute):
    execute(executor.url, "import sys; sys.exit(2)")
    text = httpx.get(f"{executor.url}/metrics").text
    assert (
        'crucible_executor_runs_total{executor_id="executor-test",reason="",status="failed"}'
        in text
    )
    assert "crucible_executor_busy_slots" in text
    assert "crucible_executor_run_seconds_bucket" in text


def test_the_internal_key_is_required_when_set(processes, start_executor, execute):
    key = "k" * 24
    secured = start_executor(processes, executor_slots=1, internal_api_key=key)
    assert execute(secured.url, "print(1)").status_code == 401
    assert execute(secured.url, "print(1)", headers={"X-Internal-Key": "wrong"}).status_code == 401
    assert httpx.post(f"{secured.url}/kill/{uuid.uuid4().hex}").status_code == 401
    allowed = execute(secured.url, "print(1)", headers={"X-Internal-Key": key})
    assert allowed.status_code == 200
    assert httpx.get(f"{secured.url}/health").status_code == 200


def test_execute_after_the_run_ended_collects_the_result_without_running_again(
    one_slot_executor, execute
):
    url = one_slot_executor.url
    code = "import os\nprint(os.urandom(8).hex())"
    eval_id = uuid.uuid4().hex
    first = execute(url, code, eval_id=eval_id).json()
    runs_before = _metric(url, "crucible_executor_runs_total")

    again = execute(url, code, eval_id=eval_id).json()

    # The same random output: the program did not run a second time.
    assert again == first
    assert _metric(url, "crucible_executor_runs_total") == runs_before
    assert _metric(url, "crucible_executor_collected_total") >= 1
    # A kill forgets the kept result: the next call runs the program afresh.
    httpx.post(f"{url}/kill/{eval_id}")
    fresh = execute(url, code, eval_id=eval_id).json()
    assert fresh["status"] == "completed" and fresh["output"] != first["output"]


def _metric(url: str, name: str) -> float:
    """Sum of every sample of a counter on /metrics."""
    text = httpx.get(f"{url}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def test_each_program_started_logs_one_line_and_a_join_or_collect_none(one_slot_executor, execute):
    url = one_slot_executor.url
    eval_id = uuid.uuid4().hex
    code = "import time\ntime.sleep(0.5)\nprint('once')"
    first = Background(execute, url, code, eval_id=eval_id)
    wait_for(lambda: busy(url) == 1, timeout=10, what="the run to start")
    joined = execute(url, code, eval_id=eval_id)
    collected = execute(url, code, eval_id=eval_id)
    shadow = execute(url, code, eval_id=eval_id, role="shadow")

    assert {r.json()["output"] for r in (first.result(), joined, collected, shadow)} == {"once\n"}
    started = [
        line
        for line in one_slot_executor.logs(tail=100_000).splitlines()
        if " started in slot " in line
    ]
    assert [eval_id in line for line in started] == [True, True]
    assert sum(f"eval {eval_id} primary started in slot 0" in line for line in started) == 1
    assert sum(f"eval {eval_id} shadow started in slot 0" in line for line in started) == 1
