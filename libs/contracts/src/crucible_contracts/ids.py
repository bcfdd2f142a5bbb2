"""eval_id generation and validation: time-ordered (so indexes stay local) and unguessable."""

from __future__ import annotations

import re
import secrets
import time
from typing import Annotated

from pydantic import StringConstraints

# Anchored for both engines that apply it: pydantic's (Rust, where `$` is the end of the text) and
# Python's `re`, where `$` also matches before a final newline, hence `fullmatch` below.
EVAL_ID_REGEX = r"^[0-9a-f]{32}$"
EVAL_ID_PATTERN = re.compile(EVAL_ID_REGEX)

# The one type of an eval_id wherever one enters a service: wire-model fields and `{eval_id}` path
# parameters. A value that does not match is refused with 422 naming the field and this pattern,
# so a hostile id never becomes a file or cgroup path, a URL, a log line or a kill that misses.
EvalId = Annotated[str, StringConstraints(pattern=EVAL_ID_REGEX)]


def new_eval_id() -> str:
    """A 32-hex-digit id: 48 bits of milliseconds since the epoch, then 80 random bits."""
    return f"{int(time.time() * 1000) & 0xFFFFFFFFFFFF:012x}{secrets.token_hex(10)}"


def is_eval_id(value: object) -> bool:
    """True for exactly 32 lowercase hex digits, and for nothing else (not even with a newline)."""
    return isinstance(value, str) and EVAL_ID_PATTERN.fullmatch(value) is not None
