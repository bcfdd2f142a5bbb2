"""Logging setup: one line per record, with the service name, so interleaved logs stay readable."""

from __future__ import annotations

import logging
import sys


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One INFO line per internal HTTP call (a queue-worker polls several times a second) drowns
    # the services' own logs; httpx's warnings and errors still come through.
    if logging.getLevelName(level.upper()) != logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)
