"""The error tree survives a round trip over HTTP: a service raises it, the client raises it again."""

import httpx
import pytest

from crucible_contracts.errors import (
    Busy,
    Conflict,
    CrucibleError,
    IllegalTransition,
    InvalidInput,
    NotFound,
    Unavailable,
)
from crucible_runtime.clients import raise_for_error


@pytest.mark.parametrize(
    "error",
    [
        InvalidInput("timeout", "must be at most 300 seconds"),
        NotFound("no evaluation abc"),
        IllegalTransition("completed cannot become running", current="completed"),
        Busy("all slots busy", retry_after=3),
        Unavailable("storage unreachable"),
    ],
)
def test_error_body_raises_the_same_error_class_again(error):
    headers = {"Retry-After": "3"} if isinstance(error, Busy) else {}
    response = httpx.Response(error.status_code, json=error.body(), headers=headers)
    with pytest.raises(type(error)) as raised:
        raise_for_error(response)
    assert raised.value.message == error.message
    assert raised.value.details == error.details


def test_illegal_transition_is_a_conflict():
    response = httpx.Response(409, json=IllegalTransition("x").body())
    with pytest.raises(Conflict):
        raise_for_error(response)


def test_busy_without_an_error_body_still_means_busy():
    with pytest.raises(Busy) as raised:
        raise_for_error(httpx.Response(429, text="slow down", headers={"Retry-After": "2"}))
    assert raised.value.retry_after == 2


def test_unknown_error_body_is_a_plain_crucible_error():
    with pytest.raises(CrucibleError) as raised:
        raise_for_error(httpx.Response(500, text="<html>boom</html>"))
    assert type(raised.value) is CrucibleError
    assert "boom" in raised.value.message


def test_success_raises_nothing():
    assert raise_for_error(httpx.Response(200, json={})) is None
