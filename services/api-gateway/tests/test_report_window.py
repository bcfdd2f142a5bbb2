"""Unit tests of the report's window parameter."""

from __future__ import annotations

import pytest

from crucible_contracts.errors import InvalidInput
from crucible_gateway.migration.report import parse_window


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("300", 300), ("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 604800), (" 2.5h ", 9000)],
)
def test_a_window_is_seconds_or_a_number_with_a_unit(text, seconds):
    assert parse_window(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1w", "-5m", "1h30m", "soon"])
def test_a_window_that_is_not_a_duration_names_the_field(text):
    with pytest.raises(InvalidInput) as caught:
        parse_window(text)
    assert caught.value.details["field"] == "window"


@pytest.mark.parametrize("text", ["0", "0.5s", "31d"])
def test_a_window_outside_one_second_to_thirty_days_is_refused(text):
    with pytest.raises(InvalidInput, match="between"):
        parse_window(text)
