"""Pure helpers of the contracts: eval ids, time limits, retry back-off."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from crucible_contracts.ids import EVAL_ID_REGEX, is_eval_id, new_eval_id
from crucible_contracts.limits import Limits, celery_time_limits
from crucible_contracts.models import EvalTask, EvaluationCreate, ExecuteRequest
from crucible_contracts.retry import RetryPolicy


def test_eval_ids_are_unique_well_formed_and_time_ordered():
    ids = [new_eval_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(is_eval_id(i) for i in ids)
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)


BAD_IDS = ["", "abc", "G" * 32, "A" * 32, "0" * 31, "0" * 33, "../etc/passwd", "0" * 32 + "\n"]


@pytest.mark.parametrize("bad", [*BAD_IDS, None, 7, b"0" * 32])
def test_malformed_eval_ids_are_refused(bad):
    assert not is_eval_id(bad)


@pytest.mark.parametrize("model", [EvalTask, ExecuteRequest, EvaluationCreate])
@pytest.mark.parametrize("bad", BAD_IDS)
def test_every_body_a_service_receives_refuses_a_malformed_eval_id(model, bad):
    fields = {"code": "print(1)", "language": "python", "timeout": 5, "backend": "legacy"}
    if model is ExecuteRequest:
        del fields["backend"]
    model.model_validate({**fields, "eval_id": new_eval_id()})

    with pytest.raises(ValidationError) as refused:
        model.model_validate({**fields, "eval_id": bad})

    (problem,) = refused.value.errors()
    assert problem["loc"] == ("eval_id",)
    assert EVAL_ID_REGEX in problem["msg"]


def test_design_limits_are_the_defaults():
    limits = Limits()
    assert limits.max_code_bytes == 64 * 1024
    assert (limits.min_timeout, limits.max_timeout, limits.default_timeout) == (1, 300, 30)
    assert limits.memory_mb == 256
    assert limits.max_output_bytes == 1024 * 1024
    assert limits.max_batch == 100


@given(st.floats(min_value=1, max_value=300))
def test_celery_time_limits_leave_room_around_the_program(timeout):
    soft, hard = celery_time_limits(timeout)
    assert timeout < soft < hard


def test_backoff_doubles_then_caps_without_jitter():
    policy = RetryPolicy(max_attempts=10, base_delay=0.5, max_delay=4, jitter=False)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]


@given(st.integers(min_value=1, max_value=50))
def test_jittered_backoff_stays_within_half_and_full_ceiling(failed):
    policy = RetryPolicy(base_delay=0.5, max_delay=15)
    ceiling = min(15, 0.5 * 2 ** (failed - 1))
    delay = policy.delay(failed, random.Random(failed))
    assert ceiling / 2 <= delay <= ceiling


def test_policy_is_exhausted_at_max_attempts():
    policy = RetryPolicy(max_attempts=3)
    assert not policy.exhausted(2)
    assert policy.exhausted(3)


def test_a_windowed_policy_is_exhausted_past_its_window_whatever_the_attempts():
    policy = RetryPolicy(max_attempts=100, window=60)
    assert not policy.exhausted(2, elapsed=60)
    assert policy.exhausted(2, elapsed=60.5)
    assert policy.exhausted(100, elapsed=0)
    assert not RetryPolicy(max_attempts=100).exhausted(2, elapsed=10**6)


def test_backoff_of_a_very_long_outage_stays_at_the_cap():
    policy = RetryPolicy(base_delay=0.5, max_delay=15, jitter=False)
    assert policy.delay(100_000) == 15
