"""The legacy record format: EvalTask → record → EvalTask is the identity, and bad records are refused."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crucible_contracts.errors import InvalidInput
from crucible_contracts.ids import EVAL_ID_PATTERN
from crucible_contracts.models import EvalTask, Program
from crucible_contracts.names import Backend, Role
from crucible_queue import legacy_format as fmt

programs = st.builds(
    Program,
    code=st.text(max_size=200),
    language=st.sampled_from(["python", "javascript"]),
    timeout=st.floats(min_value=1, max_value=300),
    stdin=st.none() | st.text(max_size=50),
    memory_mb=st.none() | st.integers(min_value=1, max_value=4096),
)
tasks = st.builds(
    EvalTask,
    eval_id=st.from_regex(EVAL_ID_PATTERN, fullmatch=True),
    role=st.sampled_from(Role),
    backend=st.sampled_from(Backend),
    program=programs,
    priority=st.booleans(),
)
# A record as the queue-service wrote it before the program was nested in EvalTask: the legacy
# payload is flat, and stays so.
LEGACY_RECORD = {
    "id": f"{'a' * 32}:shadow",
    "payload": {
        "eval_id": "a" * 32,
        "kind": "shadow",
        "backend": "celery",
        "source": "print(1)",
        "lang": "python",
        "time_limit": 12.0,
        "input": "in",
        "mem_mb": 64,
        "priority": False,
    },
    "enqueued_at": 1_700_000_000.25,
    "attempts": 1,
    "version": 1,
}


@given(tasks)
def test_a_task_survives_the_round_trip_through_a_json_legacy_record(task):
    record = fmt.encode(task, now=1_700_000_000.5)
    stored = json.loads(json.dumps(record))

    assert fmt.decode(stored) == task
    assert fmt.record_id(stored) == f"{task.eval_id}:{task.role}"


def test_a_new_record_is_undelivered_and_stamped(make_task):
    task = make_task()
    record = fmt.encode(task, now=12.5)

    assert fmt.attempts(record) == 0
    assert fmt.enqueued_at(record) == 12.5
    assert record["payload"]["source"] == task.program.code
    assert fmt.add_attempts(record, 1) == 1
    assert fmt.add_attempts(record, -5) == 0


def test_a_record_keeps_the_flat_legacy_payload_both_ways():
    task = fmt.decode(LEGACY_RECORD)

    assert task == EvalTask(
        eval_id="a" * 32,
        role=Role.SHADOW,
        backend=Backend.CELERY,
        program=Program(code="print(1)", language="python", timeout=12, stdin="in", memory_mb=64),
    )
    assert fmt.encode(task, now=LEGACY_RECORD["enqueued_at"]) == {**LEGACY_RECORD, "attempts": 0}


@pytest.mark.parametrize(
    "record",
    [{}, {"payload": None}, {"payload": {"eval_id": "x"}}, {"id": "x", "attempts": 0}],
)
def test_a_record_without_the_legacy_payload_is_refused(record):
    with pytest.raises(InvalidInput):
        fmt.decode(record)


@pytest.mark.parametrize(
    "eval_id", ["../../etc/passwd", "abc\nFAKE 2026 INFO forged", "A" * 32, "a" * 33, "x" * 2**20]
)
def test_a_record_with_a_malformed_eval_id_is_refused_without_echoing_it(make_task, eval_id):
    record = fmt.encode(make_task(), now=1.0)
    record["payload"]["eval_id"] = eval_id

    with pytest.raises(InvalidInput) as refused:
        fmt.decode(record)

    assert refused.value.field == "record"
    assert "eval_id" in refused.value.message
    assert "^[0-9a-f]{32}$" in refused.value.message
    assert eval_id not in refused.value.message


def test_a_task_id_is_an_eval_id_and_a_role():
    task_id = re.compile(fmt.TASK_ID_REGEX)

    assert task_id.fullmatch(f"{'a' * 32}:primary")
    assert task_id.fullmatch(f"{'a' * 32}:shadow")
    assert not task_id.fullmatch(f"{'a' * 32}:third")
    assert not task_id.fullmatch("../x:primary")
