"""A program's output on the wire: readable text, plus its exact bytes when they are not UTF-8.

A program writes bytes, and JSON strings carry any Unicode text (NUL included, as `\\u0000`) but
not arbitrary bytes. So every model that carries a stream (`output`, `error`) carries it twice
at most: the text, always (the bytes decoded as UTF-8, each invalid sequence replaced by U+FFFD:
readable and what older clients read), and `<stream>_base64`, the exact bytes in standard base64,
only when they are not valid UTF-8 (null otherwise, since the text then holds them exactly).
`exact_bytes` recovers the bytes from either form.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from pydantic import AfterValidator


def _is_base64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not standard base64: {exc}") from exc
    return value


# Standard alphabet with padding, no line breaks: what `base64.b64encode` writes.
Base64 = Annotated[str, AfterValidator(_is_base64)]


def encode_stream(data: bytes) -> tuple[str, str | None]:
    """`data` as (text, base64): the text decoded with replacement, and the exact bytes in base64
    when they are not valid UTF-8 (else None)."""
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), base64.b64encode(data).decode("ascii")


def exact_bytes(text: str | None, base64_bytes: str | None) -> bytes:
    """The exact bytes of a stream carried as (text, base64); b"" when there is neither."""
    if base64_bytes is not None:
        return base64.b64decode(base64_bytes, validate=True)
    return (text or "").encode("utf-8")
