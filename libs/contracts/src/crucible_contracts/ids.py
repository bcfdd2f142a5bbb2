"""eval_id generation: time-ordered (so indexes stay local) and unguessable."""

from __future__ import annotations

import re
import secrets
import time

EVAL_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


def new_eval_id() -> str:
    """A 32-hex-digit id: 48 bits of milliseconds since the epoch, then 80 random bits."""
    return f"{int(time.time() * 1000) & 0xFFFFFFFFFFFF:012x}{secrets.token_hex(10)}"


def is_eval_id(value: str) -> bool:
    return bool(EVAL_ID_PATTERN.match(value))
