"""Contract models are strict: nothing is coerced, yet enums and datetimes keep their JSON spelling."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from crucible_contracts.errors import MAX_ECHO, TRUNCATED, InvalidInput, echo
from crucible_contracts.models import (
    DeadLetter,
    EvalRequest,
    EvalTask,
    EvaluationCreate,
    RunUpdate,
    RunView,
)
from crucible_contracts.names import Backend, Role
from crucible_contracts.status import Status

EVAL_ID = "0" * 32
PROGRAM = {"code": "print(1)", "language": "python", "timeout": 5}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"code": "x", "timeout": "30"}, "timeout"),
        ({"code": "x", "priority": "yes"}, "priority"),
        ({"code": "x", "priority": 1}, "priority"),
        ({"code": 1}, "code"),
        ({"code": "x", "stdin": 5}, "stdin"),
    ],
)
def test_the_public_request_coerces_nothing(body: dict, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        EvalRequest.model_validate(body)
    assert caught.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize(
    ("update", "field"),
    [
        ({"exit_code": "0"}, "exit_code"),
        ({"exit_code": 1.5}, "exit_code"),
        ({"exit_code": 2**31}, "exit_code"),
        ({"attempts": -1}, "attempts"),
        ({"runtime_ms": float("inf")}, "runtime_ms"),
        ({"output_truncated": "false"}, "output_truncated"),
        ({"executor_id": "e" * 129}, "executor_id"),
        ({"reason": "\ud800"}, "reason"),
    ],
)
def test_a_run_update_refuses_coerced_or_unbounded_values(update: dict, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RunUpdate.model_validate(update)
    assert caught.value.errors()[0]["loc"][0] == field


@pytest.mark.parametrize(
    ("program", "field"),
    [
        ({**PROGRAM, "memory_mb": 2**63}, "memory_mb"),
        ({**PROGRAM, "memory_mb": "256"}, "memory_mb"),
        ({**PROGRAM, "timeout": 10**9}, "timeout"),
        ({**PROGRAM, "language": "l" * 33}, "language"),
    ],
)
def test_a_stored_program_is_bounded(program: dict, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        EvaluationCreate.model_validate(
            {"eval_id": EVAL_ID, "backend": "legacy", "program": program}
        )
    assert caught.value.errors()[0]["loc"] == ("program", field)


def test_enums_and_datetimes_keep_their_json_spelling_from_python_and_json() -> None:
    raw = {
        "role": "shadow",
        "backend": "celery",
        "status": "running",
        "created_at": "2026-01-02T03:04:05+02:00",
    }
    for view in (RunView.model_validate(raw), RunView.model_validate_json(json.dumps(raw))):
        assert (view.role, view.backend, view.status) == (
            Role.SHADOW,
            Backend.CELERY,
            Status.RUNNING,
        )
        assert view.created_at == datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)


def test_a_queued_task_of_celery_kwargs_still_decodes() -> None:
    kwargs = {"eval_id": EVAL_ID, "role": "primary", "backend": "celery", **PROGRAM}
    assert EvalTask.model_validate(kwargs).program.timeout == 5.0


@pytest.mark.parametrize("at", [1_700_000_000, "yesterday", "0001-01-01T00:00:00+14:00"])
def test_a_datetime_is_an_iso_string_utc_can_hold(at: object) -> None:
    with pytest.raises(ValidationError):
        DeadLetter.model_validate({"task_name": "t", "reason": "r", "failed_at": at})


def test_an_error_body_repeats_at_most_a_bounded_slice_of_the_input() -> None:
    error = InvalidInput("language", f"{echo('x' * 1_000_000)!r} is not supported", got="y" * 10**6)
    body = json.dumps(error.body())
    assert len(body) < 2 * MAX_ECHO + 500
    assert TRUNCATED in error.body()["error"]["message"]
    assert error.body()["error"]["details"]["got"].endswith(TRUNCATED)
