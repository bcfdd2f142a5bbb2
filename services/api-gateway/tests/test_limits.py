"""Input limits: each bad input is refused with 422 naming its field, directly and over real HTTP."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from crucible_contracts.errors import InvalidInput
from crucible_contracts.limits import Limits
from crucible_contracts.models import BatchRequest, EvalRequest
from crucible_gateway.config import Settings
from crucible_gateway.evaluations.validation import validate_batch, validate_eval
from crucible_runtime.pytest_plugin import wait_for

LANGUAGES = ("python", "javascript")
LIMITS = Limits()

# (case id, request body, field the error must name, words the message must contain)
BAD_INPUTS = [
    ("empty-code", {"code": ""}, "code", "empty"),
    ("blank-code", {"code": "  \n\t"}, "code", "empty"),
    ("code-too-large", {"code": "x" * (64 * 1024 + 1)}, "code", "65536"),
    ("code-too-large-in-bytes", {"code": "é" * (32 * 1024 + 1)}, "code", "64 KiB"),
    ("unknown-language", {"code": "1", "language": "cobol"}, "language", "python"),
    ("timeout-too-small", {"code": "1", "timeout": 0.5}, "timeout", "between 1 and 300"),
    ("timeout-too-large", {"code": "1", "timeout": 301}, "timeout", "between 1 and 300"),
    ("timeout-negative", {"code": "1", "timeout": -5}, "timeout", "between 1 and 300"),
    ("stdin-too-large", {"code": "1", "stdin": "x" * (1024 * 1024 + 1)}, "stdin", "1 MiB"),
    ("unpaired-surrogate", {"code": "\ud800"}, "code", "surrogate"),
]
# Type errors are FastAPI's (pydantic's) over HTTP, converted to the same body.
BAD_TYPES = [
    ("code-missing", {"language": "python"}, "code"),
    ("code-not-a-string", {"code": 42}, "code"),
    ("timeout-not-a-number", {"code": "1", "timeout": "soon"}, "timeout"),
    ("priority-not-a-bool", {"code": "1", "priority": "maybe"}, "priority"),
    ("unknown-field", {"code": "1", "memory": 10}, "memory"),
    ("routing-key-too-long", {"code": "1", "routing_key": "k" * 201}, "routing_key"),
]


@pytest.mark.parametrize(
    ("body", "field", "words"), [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_validate_eval_names_the_field_and_the_limit(body, field, words):
    with pytest.raises(InvalidInput) as caught:
        validate_eval(EvalRequest(**body), limits=LIMITS, languages=LANGUAGES)
    assert caught.value.field == field
    assert caught.value.message.startswith(f"{field}:")
    assert words in caught.value.message


@pytest.mark.parametrize("timeout", [1, 30, 300])
def test_validate_eval_accepts_the_bounds_and_fills_the_default_timeout(timeout):
    assert (
        validate_eval(
            EvalRequest(code="print(1)", timeout=timeout), limits=LIMITS, languages=LANGUAGES
        ).timeout
        == timeout
    )
    assert validate_eval(EvalRequest(code="1"), limits=LIMITS, languages=LANGUAGES).timeout == 30


def test_code_of_exactly_the_limit_is_accepted():
    request = EvalRequest(code="x" * LIMITS.max_code_bytes, stdin="y" * LIMITS.max_stdin_bytes)
    assert validate_eval(request, limits=LIMITS, languages=LANGUAGES).code == request.code


def test_a_batch_names_the_index_of_its_first_bad_item():
    batch = BatchRequest(
        evaluations=[EvalRequest(code="1"), EvalRequest(code="1", language="ruby")]
    )
    with pytest.raises(InvalidInput, match=r"^evaluations\.1\.language:"):
        validate_batch(batch, limits=LIMITS, languages=LANGUAGES)


@pytest.mark.parametrize("count", [0, 101])
def test_a_batch_must_hold_between_one_and_the_limit_of_items(count):
    batch = BatchRequest(evaluations=[EvalRequest(code="1")] * count)
    with pytest.raises(InvalidInput, match=r"^evaluations:"):
        validate_batch(batch, limits=LIMITS, languages=LANGUAGES)


@pytest.mark.parametrize(
    "values",
    [
        {"celery_percentage": 1.5},
        {"celery_percentage": -0.1},
        {"migration_mode": "both"},
        {"default_timeout": 500},
        {"environment": "production", "internal_api_key": "x" * 20, "operator_token": "admin"},
    ],
    ids=["percentage-above-one", "percentage-negative", "unknown-mode", "default-timeout", "token"],
)
def test_settings_refuse_unsafe_or_out_of_range_values(values):
    with pytest.raises(ValidationError):
        Settings(**values)


def test_a_gateway_with_a_percentage_above_one_refuses_to_start(processes):
    import sys

    argv = [sys.executable, "-m", "uvicorn", "--factory", "crucible_gateway.main:create_app"]
    argv += ["--port", "0"]
    gateway = processes.process("bad-gateway", argv, env={"CELERY_PERCENTAGE": "1.5"})
    wait_for(lambda: not gateway.alive(), timeout=20, what="the gateway to refuse to start")
    assert gateway.proc.returncode != 0
    assert "celery_percentage" in gateway.logs()


# --- over real HTTP ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "words"), [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_gets_422_naming_its_field(api, body, field, words):
    # json.dumps escapes to ASCII, so that an unpaired surrogate can be sent as "\\ud800".
    content = json.dumps(body)
    response = api.post("/api/eval", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["details"]["field"] == field
    assert error["message"].startswith(f"{field}:")
    assert words in error["message"]


@pytest.mark.parametrize(
    ("body", "field"), [c[1:] for c in BAD_TYPES], ids=[c[0] for c in BAD_TYPES]
)
def test_ill_typed_input_gets_the_same_422_body_naming_its_field(api, body, field):
    response = api.post("/api/eval", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["details"]["field"] == field


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        ("code=print(1)", "application/json"),
        ("code=print(1)", "text/plain"),
        ("", "application/json"),
    ],
    ids=["broken-json", "not-json", "empty"],
)
def test_a_body_that_is_not_a_json_object_gets_422(api, content, content_type):
    response = api.post("/api/eval", content=content, headers={"Content-Type": content_type})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"
