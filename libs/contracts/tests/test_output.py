"""A program's output on the wire: text always, the exact bytes in base64 when they are not UTF-8."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from crucible_contracts.models import EvalRequest, EvaluationCreate, ExecuteResult, RunUpdate
from crucible_contracts.output import encode_stream, exact_bytes


@pytest.mark.parametrize(
    ("data", "text", "base64"),
    [
        (b"", "", None),
        (b"hi\n", "hi\n", None),
        (b"a\x00b", "a\x00b", None),
        ("é€😀".encode(), "é€😀", None),
        (b"\xff\xfe\x00ok", "\ufffd\ufffd\x00ok", "//4Ab2s="),
        # A character cut in the middle (as a cap may cut it) is not UTF-8 either.
        ("é".encode()[:1], "\ufffd", "ww=="),
    ],
)
def test_a_stream_is_text_plus_base64_only_when_it_is_not_utf8(data, text, base64):
    assert encode_stream(data) == (text, base64)


@given(st.binary(max_size=64))
def test_the_exact_bytes_come_back_from_what_the_wire_carries(data):
    result = ExecuteResult.model_validate_json(
        ExecuteResult(
            eval_id="e" * 32,
            status="completed",
            **dict(zip(("output", "output_base64"), encode_stream(data), strict=True)),
        ).model_dump_json()
    )
    assert exact_bytes(result.output, result.output_base64) == data


def test_base64_that_is_not_standard_base64_is_refused():
    with pytest.raises(ValidationError, match="output_base64"):
        RunUpdate(output_base64="not base64!")
    with pytest.raises(ValidationError, match="error_base64"):
        RunUpdate(error_base64="-_8=")  # the URL-safe alphabet


def test_a_routing_key_with_nul_is_refused_where_it_enters():
    with pytest.raises(ValidationError, match="routing_key"):
        EvalRequest(code="", routing_key="user\x00")
    create = {"eval_id": "e" * 32, "backend": "legacy", "routing_key": "\x00"}
    with pytest.raises(ValidationError, match="routing_key"):
        EvaluationCreate.model_validate({**create, "code": "", "language": "python", "timeout": 1})
