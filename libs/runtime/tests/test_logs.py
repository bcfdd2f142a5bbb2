"""Structured logs: every record is one line of JSON, whatever its message holds."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from crucible_runtime.logs import JsonFormatter

FORGED = 'abc\nFAKE 2026-01-01 00:00:00 INFO storage x: "forged"\r\n{"level": "INFO"}'


def record(message: str, *args: object, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("crucible_test", logging.WARNING, __file__, 1, message, args, exc_info)


@pytest.mark.parametrize(
    "message",
    [
        FORGED,
        'quotes " and \\ backslashes',
        "control \x00\x07\x1b[31m\x7f characters",
        "line breaks to splitlines: \x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029",
        "unicode é ü 日本",
    ],
    ids=["forged-record", "quotes", "control", "unicode-line-breaks", "unicode"],
)
def test_a_message_stays_one_line_of_json_with_the_message_intact(message: str) -> None:
    line = JsonFormatter("storage").format(record(message))

    assert len(line.splitlines()) == 1
    assert json.loads(line)["message"] == message


def test_a_record_carries_time_level_service_logger_and_the_formatted_message() -> None:
    before = datetime.now(UTC)

    entry = json.loads(JsonFormatter("queue-worker").format(record("eval %s ends %s", "e1", 3)))

    assert set(entry) == {"time", "level", "service", "logger", "message"}
    assert (entry["level"], entry["service"], entry["logger"]) == (
        "WARNING",
        "queue-worker",
        "crucible_test",
    )
    assert entry["message"] == "eval e1 ends 3"
    at = datetime.fromisoformat(entry["time"])
    assert at.utcoffset().total_seconds() == 0
    assert abs((at - before).total_seconds()) < 60


def test_an_exception_is_one_field_of_the_same_line() -> None:
    try:
        raise ValueError(FORGED)
    except ValueError:
        exc_info = sys.exc_info()

    line = JsonFormatter("executor").format(record("run failed", exc_info=exc_info))

    assert len(line.splitlines()) == 1
    entry = json.loads(line)
    assert entry["message"] == "run failed"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith(f"ValueError: {FORGED}")


def test_setup_logging_makes_a_process_write_one_json_object_per_line() -> None:
    program = (
        "import logging\n"
        "from crucible_runtime.logs import setup_logging\n"
        "setup_logging('storage', 'INFO')\n"
        f"logging.getLogger('crucible_storage.x').info({FORGED!r})\n"
        "logging.getLogger('uvicorn.error').warning('from uvicorn')\n"
        "logging.getLogger('crucible_storage.x').debug('below the level')\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=30, check=True
    )

    lines = done.stderr.splitlines()
    assert [json.loads(line)["message"] for line in lines] == [FORGED, "from uvicorn"]
    assert [json.loads(line)["service"] for line in lines] == ["storage", "storage"]
