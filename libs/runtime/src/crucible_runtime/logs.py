"""Logging setup: one JSON object per line, with the service name, so no input can forge a record."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

# Line breaks to str.splitlines() (and to some log viewers) that json.dumps leaves unescaped
# when it writes UTF-8; control characters below U+0020 it escapes itself.
_LINE_BREAKS = str.maketrans({char: f"\\u{ord(char):04x}" for char in "\u0085\u2028\u2029"})


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON: time (ISO 8601, UTC), level, service, logger, message,
    and `exception` (the traceback text) when there is one.

    Newlines, quotes and control characters in the message or the traceback are escaped by the
    JSON encoder, so a record is always exactly one line and a message cannot pass for another
    record. Non-ASCII text stays as it is (UTF-8), readable and greppable.
    """

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: a message argument json cannot encode is still logged, never an error.
        return json.dumps(entry, ensure_ascii=False, default=str).translate(_LINE_BREAKS)


def setup_logging(service: str, level: str = "INFO") -> None:
    """Send every record of this process to stderr through JsonFormatter, at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's loggers write through handlers of their own, in a format of their own: theirs go
    # through this one too (at the level uvicorn gave them), so the whole stream is JSON lines.
    for name in ("uvicorn", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # One INFO line per internal HTTP call (a queue-worker polls several times a second) drowns
    # the services' own logs; httpx's warnings and errors still come through.
    if logging.getLevelName(level.upper()) != logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)
