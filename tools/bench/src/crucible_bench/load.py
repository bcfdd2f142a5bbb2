"""Load generation: closed loops (a fixed number in flight) and an open loop at a fixed rate.

Closed loops measure capacity and latency together: each of `window` threads submits, follows its
evaluation to the end, and submits the next until the phase's time is up; the ones in flight then
finish, so every evaluation counted has completed. The open loop sends at fixed moments whatever
the answers do, which is what a submit-latency target at N requests/s means.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from crucible_bench.api import TERMINAL, Answer, Executors, Gateway, Program
from crucible_bench.follow import Completions
from crucible_bench.timeline import Evaluation, epoch

# After an evaluation's end event, how long before the driver stops trusting events and polls.
NOTICE_TIMEOUT = 5.0
POLL_INTERVAL = 0.2
# An evaluation of the bench's programs that has not ended after this long is a failure.
END_TIMEOUT = 300.0


@dataclass(frozen=True)
class Execution:
    """One POST /execute of the sandbox baseline."""

    sent_at: float
    done_at: float
    status: str


@dataclass(frozen=True)
class Submission:
    """One POST /api/eval of the fixed-rate phase: when it was due, sent and answered."""

    due_at: float
    sent_at: float
    done_at: float
    status_code: int
    eval_id: str | None
    backend: str | None
    shadow_backend: str | None


def _closed_loop(window: int, seconds: float, one: Callable[[], None]) -> float:
    """Run `one` back to back in `window` threads until `seconds` pass; returns the wall time.

    The first exception of any thread is raised once all have stopped (a phase that lost a
    thread would otherwise report a lower load than it claims).
    """
    started = time.monotonic()
    deadline = started + seconds
    failures: list[BaseException] = []

    def loop() -> None:
        try:
            while time.monotonic() < deadline and not failures:
                one()
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=loop, name=f"load-{n}") for n in range(window)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return time.monotonic() - started


def sandbox_baseline(
    executors: Executors, *, concurrency: int, seconds: float, program: Program
) -> tuple[list[Execution], float]:
    """`concurrency` clients calling POST /execute back to back: the sandbox's own capacity."""
    results: list[Execution] = []
    lock = threading.Lock()

    def one() -> None:
        answer = executors.execute(program)
        status = answer.body.get("status") if answer.status_code == 200 else None
        execution = Execution(
            answer.sent_at, answer.done_at, status or f"http_{answer.status_code}"
        )
        with lock:
            results.append(execution)
        if answer.status_code in (429, 503):
            time.sleep(0.05)  # at capacity: a client would back off as the consumers do

    wall = _closed_loop(concurrency, seconds, one)
    return results, wall


def paced(
    executors: Executors, *, seconds: float, pause: float, program: Program
) -> tuple[list[Execution], float]:
    """One client calling POST /execute, pausing `pause` seconds after each answer, for
    `seconds`: a program that finds its executor idle (and a warm sandbox ready, once the
    executor prepares the next one after each run). Returns the executions and the wall time."""
    results: list[Execution] = []

    def one() -> None:
        answer = executors.execute(program)
        status = answer.body.get("status") if answer.status_code == 200 else None
        results.append(
            Execution(answer.sent_at, answer.done_at, status or f"http_{answer.status_code}")
        )
        time.sleep(pause)

    wall = _closed_loop(1, seconds, one)
    return results, wall


def follow_to_end(gateway: Gateway, completions: Completions, eval_id: str) -> tuple[Answer, str]:
    """Wait for `eval_id`'s end event: (the finished evaluation as seen, how it was noticed).

    An end event carrying the evaluation is the result itself ("event"); one without it is
    followed by a read through the gateway ("event + read"). Without an event within
    NOTICE_TIMEOUT the driver polls the gateway instead ("poll").
    """
    deadline = time.monotonic() + END_TIMEOUT
    noticed_by = "event"
    while time.monotonic() < deadline:
        if completions.wait(eval_id, NOTICE_TIMEOUT if noticed_by == "event" else POLL_INTERVAL):
            ended = completions.ended(eval_id)
            if ended is not None and ended.evaluation is not None and noticed_by == "event":
                at = ended.received_at
                return Answer(200, ended.evaluation, sent_at=at, done_at=at), noticed_by
            if noticed_by == "event":
                noticed_by = "event + read"
            answer = gateway.view(eval_id)
            if answer.body.get("status") in TERMINAL:
                return answer, noticed_by
            time.sleep(0.005)  # the event came from storage's commit; the read raced it
        else:
            noticed_by = "poll"
            answer = gateway.view(eval_id)
            if answer.body.get("status") in TERMINAL:
                return answer, noticed_by
    raise RuntimeError(f"evaluation {eval_id} did not end within {END_TIMEOUT}s")


def evaluate(gateway: Gateway, completions: Completions, program: Program) -> Evaluation:
    """Submit one program and follow it to its end: one evaluation's whole timeline."""
    accepted = gateway.submit(program)
    if accepted.status_code != 202:
        return Evaluation(
            eval_id=None,
            kind=program.kind,
            backend="",
            sent_at=accepted.sent_at,
            accepted_at=accepted.done_at,
            status=f"http_{accepted.status_code}",
        )
    eval_id = accepted.body["eval_id"]
    seen, noticed_by = follow_to_end(gateway, completions, eval_id)
    completions.forget(eval_id)
    view = seen.body
    return Evaluation(
        eval_id=eval_id,
        kind=program.kind,
        backend=accepted.body["backend"],
        sent_at=accepted.sent_at,
        accepted_at=accepted.done_at,
        status=view["status"],
        created_at=epoch(view.get("created_at")),
        started_at=epoch(view.get("started_at")),
        completed_at=epoch(view.get("completed_at")),
        seen_at=seen.done_at,
        noticed_by=noticed_by,
    )


def end_to_end(
    gateway: Gateway,
    completions: Completions,
    *,
    window: int,
    seconds: float,
    programs: Sequence[Program],
) -> tuple[list[Evaluation], float]:
    """`window` evaluations in flight through the gateway, `programs` taken in turn, for `seconds`
    (then the ones in flight finish). Returns every evaluation and the loop's wall time."""
    results: list[Evaluation] = []
    lock = threading.Lock()
    turn = itertools.cycle(programs)

    def one() -> None:
        with lock:
            program = next(turn)
        evaluation = evaluate(gateway, completions, program)
        with lock:
            results.append(evaluation)

    wall = _closed_loop(window, seconds, one)
    return results, wall


def fixed_rate(
    gateway: Gateway, *, rate: float, seconds: float, program: Program, threads: int
) -> list[Submission]:
    """POST /api/eval at `rate` per second for `seconds`, each due at a fixed moment.

    The answers are not awaited before the next send (an open loop); `threads` bounds the
    requests in flight, and a send that starts late is visible as due_at < sent_at.
    """
    total = int(rate * seconds)
    start = time.time() + 0.05

    def send(due_at: float) -> Submission:
        answer = gateway.submit(program)
        body = answer.body if answer.status_code == 202 else {}
        return Submission(
            due_at=due_at,
            sent_at=answer.sent_at,
            done_at=answer.done_at,
            status_code=answer.status_code,
            eval_id=body.get("eval_id"),
            backend=body.get("backend"),
            shadow_backend=body.get("shadow_backend"),
        )

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rate") as pool:
        futures = []
        for index in range(total):
            due_at = start + index / rate
            delay = due_at - time.time()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(send, due_at))
        return [future.result() for future in futures]
