"""Input limits of the public API: each violation is an InvalidInput naming the field and the limit."""

from __future__ import annotations

from collections.abc import Sequence

from crucible_contracts.errors import InvalidInput, echo
from crucible_contracts.limits import KIB, MIB, Limits
from crucible_contracts.models import BatchRequest, EvalRequest


def _size(n_bytes: int) -> str:
    if n_bytes % MIB == 0:
        return f"{n_bytes // MIB} MiB"
    if n_bytes % KIB == 0:
        return f"{n_bytes // KIB} KiB"
    return f"{n_bytes} bytes"


def _utf8_len(field: str, value: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:  # lone surrogates, e.g. "\\ud800" in the JSON
        raise InvalidInput(field, "is not valid Unicode text (unpaired surrogate)") from exc


def validate_eval(
    request: EvalRequest, *, limits: Limits, languages: Sequence[str], prefix: str = ""
) -> EvalRequest:
    """The request with its defaults filled in (timeout), or InvalidInput for the first violation.

    `prefix` locates the request inside a larger body (e.g. "evaluations.3.") in the field name.
    Sizes are counted in UTF-8 bytes, which is what crosses the wire and reaches the sandbox.
    """
    if not request.code.strip():
        raise InvalidInput(f"{prefix}code", "must not be empty")
    code_bytes = _utf8_len(f"{prefix}code", request.code)
    if code_bytes > limits.max_code_bytes:
        raise InvalidInput(
            f"{prefix}code",
            f"is {code_bytes} bytes; the limit is {limits.max_code_bytes} bytes "
            f"({_size(limits.max_code_bytes)})",
            limit=limits.max_code_bytes,
            actual=code_bytes,
        )
    if request.language not in languages:
        raise InvalidInput(
            f"{prefix}language",
            f"{echo(request.language)!r} is not supported; supported languages: {', '.join(languages)}",
            allowed=list(languages),
        )
    timeout = limits.default_timeout if request.timeout is None else request.timeout
    # Written so that NaN fails too: every comparison with NaN is False.
    if not limits.min_timeout <= timeout <= limits.max_timeout:
        raise InvalidInput(
            f"{prefix}timeout",
            f"must be between {limits.min_timeout:g} and {limits.max_timeout:g} seconds, "
            f"got {timeout:g}",
            minimum=limits.min_timeout,
            maximum=limits.max_timeout,
        )
    if request.stdin is not None:
        stdin_bytes = _utf8_len(f"{prefix}stdin", request.stdin)
        if stdin_bytes > limits.max_stdin_bytes:
            raise InvalidInput(
                f"{prefix}stdin",
                f"is {stdin_bytes} bytes; the limit is {limits.max_stdin_bytes} bytes "
                f"({_size(limits.max_stdin_bytes)})",
                limit=limits.max_stdin_bytes,
                actual=stdin_bytes,
            )
    if request.routing_key is not None:
        _utf8_len(f"{prefix}routing_key", request.routing_key)
    return request.model_copy(update={"timeout": timeout})


def validate_batch(
    batch: BatchRequest, *, limits: Limits, languages: Sequence[str]
) -> list[EvalRequest]:
    """Every item validated before any is created: one bad item refuses the whole batch."""
    count = len(batch.evaluations)
    if count == 0:
        raise InvalidInput("evaluations", "must contain at least one evaluation")
    if count > limits.max_batch:
        raise InvalidInput(
            "evaluations",
            f"has {count} items; the limit is {limits.max_batch} per batch",
            limit=limits.max_batch,
            actual=count,
        )
    return [
        validate_eval(item, limits=limits, languages=languages, prefix=f"evaluations.{index}.")
        for index, item in enumerate(batch.evaluations)
    ]
