"""The program nested in the internal models: one Program, flat input still taken, nested output."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import (
    EvalRequest,
    EvalTask,
    EvaluationCreate,
    EvaluationView,
    ExecuteRequest,
    Program,
    StuckRun,
)
from crucible_contracts.names import Backend, Role

PROGRAM = {"code": "print(1)", "language": "python", "timeout": 5.0, "stdin": "in", "memory_mb": 64}
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def _others(model: type) -> dict[str, object]:
    """The fields beside the program that each carrying model needs."""
    fields: dict[str, object] = {"eval_id": new_eval_id(), "backend": "celery"}
    if model is StuckRun:
        fields |= {"role": "shadow", "status": "queued", "created_at": NOW, "queued_at": NOW}
    return fields


CARRIERS = [EvalTask, EvaluationCreate, StuckRun]


@pytest.mark.parametrize("model", CARRIERS)
def test_the_flat_shape_of_queued_messages_and_older_callers_is_lifted_into_program(model):
    others = _others(model)

    flat = model.model_validate({**others, **PROGRAM})
    nested = model.model_validate({**others, "program": PROGRAM})

    assert flat == nested
    assert flat.program == Program(**PROGRAM)


@pytest.mark.parametrize("model", CARRIERS)
def test_output_is_nested(model):
    dumped = model.model_validate({**_others(model), **PROGRAM}).model_dump(mode="json")

    assert dumped["program"] == PROGRAM
    assert not set(PROGRAM) & set(dumped)


@pytest.mark.parametrize("model", [EvalTask, EvaluationCreate])
@pytest.mark.parametrize(
    ("extra", "refused"),
    [
        ({"program": PROGRAM, "code": "print(2)"}, "code"),  # both shapes at once
        ({"program": PROGRAM, "stdin": None}, "stdin"),
        ({**PROGRAM, "memory": 10}, "memory"),  # flat, with an unknown field
        ({"program": {**PROGRAM, "memory": 10}}, "program.memory"),
    ],
)
def test_mixed_shapes_and_unknown_fields_are_refused(model, extra, refused):
    with pytest.raises(ValidationError) as error:
        model.model_validate({**_others(model), **extra})

    assert [".".join(map(str, p["loc"])) for p in error.value.errors()] == [refused]
    assert error.value.errors()[0]["type"] == "extra_forbidden"


def test_a_flat_task_missing_a_program_field_names_it_under_program():
    flat = {key: value for key, value in PROGRAM.items() if key != "language"}

    with pytest.raises(ValidationError) as error:
        EvalTask.model_validate({**_others(EvalTask), **flat})

    assert [p["loc"] for p in error.value.errors()] == [("program", "language")]


def test_the_executor_request_is_flat_and_built_from_the_program_in_one_call():
    eval_id = new_eval_id()
    request = ExecuteRequest.of(eval_id=eval_id, role=Role.SHADOW, program=Program(**PROGRAM))

    assert request.model_dump(mode="json") == {"eval_id": eval_id, "role": "shadow", **PROGRAM}


def test_the_public_models_stay_flat_and_give_their_program():
    request = EvalRequest(code="print(1)", timeout=5, stdin="in", priority=True)
    view = EvaluationView(
        eval_id=new_eval_id(), status="queued", backend=Backend.LEGACY, created_at=NOW, **PROGRAM
    )

    assert Program.of(request) == Program(code="print(1)", language="python", timeout=5, stdin="in")
    assert Program.of(view) == Program(**PROGRAM)
    assert "program" not in EvalRequest.model_fields
    assert "program" not in EvaluationView.model_fields
