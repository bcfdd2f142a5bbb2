"""Programs started per run, read from the executors' own logs: what "executed twice" counts.

Results in storage cannot show a program that ran twice (the second result is refused, or
overwrites the first with the same output), and the executors' metrics start again from zero
when one restarts. Each executor logs one line per program it starts (never for a call that
joined a run or collected its result), and its log file outlives its restarts. A start with no
"ended" line before the executor started again was lost with it: running that program once more
is what the contract allows ("a program runs again only when the executor that ran it lost it").
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

RunKey = tuple[str, str]  # (eval_id, role)

_STARTED = re.compile(r"^eval (?P<eval_id>[0-9a-f]{32}) (?P<role>\w+) started in slot \d+$")
_ENDED = re.compile(r"^eval (?P<eval_id>[0-9a-f]{32}) (?P<role>\w+) ended ")
# The first line an executor logs at each start (crucible_executor.probe.select_runner).
_BOOTED = re.compile(r"^sandbox mode \w+ \(probe passed\)")


@dataclass(frozen=True)
class Starts:
    """How often one run's program was started on one or more executors, and how many of those
    starts were lost with their executor (no end logged before it started again)."""

    started: int = 0
    lost: int = 0

    @property
    def executed(self) -> int:
        """Starts that were not lost: more than one is a program executed twice."""
        return self.started - self.lost

    def __add__(self, other: Starts) -> Starts:
        return Starts(self.started + other.started, self.lost + other.lost)


def _messages(log_text: str) -> Iterable[str]:
    """The `message` of each JSON log line; other lines (a traceback to stderr) are skipped."""
    for line in log_text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("message"), str):
            yield entry["message"]


def starts_in_log(log_text: str) -> dict[RunKey, Starts]:
    """Starts per (eval_id, role) in one executor's log, across every restart it went through."""
    started: Counter[RunKey] = Counter()
    lost: Counter[RunKey] = Counter()
    open_runs: Counter[RunKey] = Counter()
    for message in _messages(log_text):
        if _BOOTED.match(message):
            lost.update(open_runs)
            open_runs.clear()
        elif match := _STARTED.match(message):
            key = (match["eval_id"], match["role"])
            started[key] += 1
            open_runs[key] += 1
        elif (match := _ENDED.match(message)) and open_runs[(match["eval_id"], match["role"])]:
            open_runs[(match["eval_id"], match["role"])] -= 1
    return {key: Starts(started[key], lost[key]) for key in started}


def merge(per_executor: Iterable[Mapping[RunKey, Starts]]) -> dict[RunKey, Starts]:
    """The starts of every executor added up per run."""
    total: dict[RunKey, Starts] = {}
    for starts in per_executor:
        for key, count in starts.items():
            total[key] = total.get(key, Starts()) + count
    return total


def executed_twice(starts: Mapping[RunKey, Starts], eval_ids: Iterable[str]) -> list[RunKey]:
    """The runs of `eval_ids` whose program was executed more than once (lost starts aside)."""
    wanted = set(eval_ids)
    return sorted(key for key, count in starts.items() if key[0] in wanted and count.executed > 1)
