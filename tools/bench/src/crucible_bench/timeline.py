"""One evaluation's timeline as the driver saw it, and its split into submit, queue wait, run and
visibility.

Client-side moments (`sent_at`, `accepted_at`, `seen_at`) are the driver's `time.time()`;
`created_at`, `started_at` and `completed_at` are storage's clock. Both are the wall clock of the
same machine, so the parts that mix them (visibility) are comparable; a benchmark across hosts
would need synchronised clocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from crucible_bench.stats import Summary, summarize

# The parts of one evaluation's latency, in the order they happen.
PARTS = ("submit", "queue_wait", "run", "visibility", "end_to_end")


def epoch(moment: str | None) -> float | None:
    """Seconds since the epoch of an ISO-8601 timestamp from the API; a naive one is UTC."""
    if not moment:
        return None
    parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@dataclass(frozen=True)
class Evaluation:
    """One evaluation submitted through the gateway and followed to its end (or not)."""

    eval_id: str | None  # None when the gateway refused the submission: it gave no id
    kind: str
    backend: str
    sent_at: float
    accepted_at: float
    status: str | None = None
    created_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    seen_at: float | None = None
    # How the driver learnt of the end: "event" (storage's status event, carrying the result),
    # "event + read" (an end event without it, then a read) or "poll" (fallback).
    noticed_by: str | None = None


def _ms(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start) * 1000


def split(evaluation: Evaluation) -> dict[str, float | None]:
    """The latency parts of one evaluation in milliseconds; None for a part it never reached.

    submit: the POST until its 202; queue wait: created -> running; run: running -> finished
    (storage's timestamps, so it includes the consumer's calls around the program); visibility:
    finished -> seen by the client; end to end: the POST until seen. Submit and queue wait
    overlap by the dispatch (storage stamps `created_at` before the gateway hands the task over).
    """
    return {
        "submit": _ms(evaluation.sent_at, evaluation.accepted_at),
        "queue_wait": _ms(evaluation.created_at, evaluation.started_at),
        "run": _ms(evaluation.started_at, evaluation.completed_at),
        "visibility": _ms(evaluation.completed_at, evaluation.seen_at),
        "end_to_end": _ms(evaluation.sent_at, evaluation.seen_at),
    }


def split_summaries(evaluations: Iterable[Evaluation]) -> dict[str, Summary]:
    """Per part, the distribution over `evaluations` (each part over the ones that reached it)."""
    splits = [split(evaluation) for evaluation in evaluations]
    return {part: summarize(one[part] for one in splits) for part in PARTS}


def span_seconds(evaluations: Sequence[Evaluation]) -> float:
    """Wall time from the first POST to the last evaluation seen ended (0 without any seen)."""
    seen = [evaluation.seen_at for evaluation in evaluations if evaluation.seen_at is not None]
    if not seen:
        return 0.0
    return max(seen) - min(evaluation.sent_at for evaluation in evaluations)


def count_by(evaluations: Iterable[Evaluation], field: str) -> dict[str, int]:
    """How many evaluations have each value of `field` (e.g. status, backend, noticed_by)."""
    counts: dict[str, int] = {}
    for evaluation in evaluations:
        key = str(getattr(evaluation, field))
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))
