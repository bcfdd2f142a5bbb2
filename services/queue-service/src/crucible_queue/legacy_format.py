"""The legacy wire format: the dict the queue-service keeps in its deque, and its EvalTask mapping.

This is the only module that knows the shape of a legacy record. Everything else goes through the
functions below and speaks `crucible_contracts.models.EvalTask`.

A record looks like the legacy system's JSON blobs did::

    {
        "id": "<eval_id>:<role>",
        "payload": {"eval_id", "kind", "backend", "source", "lang", "time_limit",
                    "input", "mem_mb", "priority"},
        "enqueued_at": 1700000000.25,   # epoch seconds
        "attempts": 0,                  # deliveries to a worker that did not finish it
        "version": 1,
    }
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import StringConstraints, ValidationError

from crucible_contracts.errors import InvalidInput
from crucible_contracts.ids import EVAL_ID_REGEX
from crucible_contracts.models import EvalTask
from crucible_contracts.names import Role, task_id_for

VERSION = 1

# The queue's id of a run, `<eval_id>:<role>` (see task_id_of): what `/tasks/{task_id}` accepts.
TASK_ID_REGEX = f"{EVAL_ID_REGEX.removesuffix('$')}:({'|'.join(role.value for role in Role)})$"
TaskId = Annotated[str, StringConstraints(pattern=TASK_ID_REGEX)]

# EvalTask field -> legacy payload key; the legacy system had its own vocabulary, and a flat
# payload: the program's fields sit beside the others.
_TASK_KEYS = {
    "eval_id": "eval_id",
    "role": "kind",
    "backend": "backend",
    "priority": "priority",
}
# Program field -> legacy payload key.
_PROGRAM_KEYS = {
    "code": "source",
    "language": "lang",
    "timeout": "time_limit",
    "stdin": "input",
    "memory_mb": "mem_mb",
}

LegacyRecord = dict[str, Any]


def task_id_of(task: EvalTask) -> str:
    """The queue's id of a run: one id per (eval_id, role), so enqueueing twice is detectable."""
    return task_id_for(task.eval_id, task.role)


def encode(task: EvalTask, *, now: float) -> LegacyRecord:
    """A fresh legacy record for `task`, enqueued at epoch time `now`, never delivered yet."""
    values = task.model_dump(mode="json")
    program = values["program"]
    return {
        "id": task_id_of(task),
        "payload": {
            **{legacy: values[field] for field, legacy in _TASK_KEYS.items()},
            **{legacy: program[field] for field, legacy in _PROGRAM_KEYS.items()},
        },
        "enqueued_at": now,
        "attempts": 0,
        "version": VERSION,
    }


def decode(record: LegacyRecord) -> EvalTask:
    """The EvalTask a legacy record carries; InvalidInput when the record is not one."""
    try:
        payload = record["payload"]
        values = {field: payload[legacy] for field, legacy in _TASK_KEYS.items()}
        values["program"] = {field: payload[legacy] for field, legacy in _PROGRAM_KEYS.items()}
    except (KeyError, TypeError) as exc:
        raise InvalidInput("record", f"not a legacy queue record: missing {exc}") from exc
    try:
        return EvalTask.model_validate(values)
    except ValidationError as exc:
        # The problems' places and messages only: the record's values may be anything.
        problems = "; ".join(
            f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}" for problem in exc.errors()
        )
        raise InvalidInput("record", f"not a valid legacy queue record: {problems}") from exc


def record_id(record: LegacyRecord) -> str:
    return record["id"]


def attempts(record: LegacyRecord) -> int:
    return record["attempts"]


def enqueued_at(record: LegacyRecord) -> float:
    return record["enqueued_at"]


def add_attempts(record: LegacyRecord, delta: int) -> int:
    """Change the delivery count by `delta` (never below 0); returns the new count."""
    record["attempts"] = max(0, record["attempts"] + delta)
    return record["attempts"]
