"""The bench's phases, each returning plain data for `.bench/latest.json`.

1. sandbox baseline (POST /execute straight to the executors) and the bare interpreter's spawn;
   then the warm sandbox: one request at a time to one executor, with a pause between requests;
2. each path at 100 %, end to end through the gateway, at the consumers' concurrency and saturated;
3. gateway submit latency at a fixed rate, per path and in shadow mode;
4. a mixed workload on the Celery path;
5. accept-only: the consumers paused, rising submission rates until the submit p99 or the answers
   fail.
6. listeners: the consumers paused, submit latency at the fixed rate without, with and again
   without LISTENERS operators following every live event (`GET /api/events`).

`run_paths` runs 1, 2 and 4 on one suite; `run_submit` one mode of 3, `run_accept_only` 5 and
`run_listeners` 6, each on a suite of its own. Every result records its concurrency (`load`: clients in
flight, consumers, executor slots) for the report.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crucible_bench import accept, load, machine, profiling
from crucible_bench.api import QUICK, Executors, Gateway, Program
from crucible_bench.follow import Completions
from crucible_bench.listeners import listening
from crucible_bench.pause import paused
from crucible_bench.stats import per_second, ratio, summarize
from crucible_bench.suite import Suite
from crucible_bench.timeline import Evaluation, count_by, span_seconds, split_summaries
from crucible_executor.bench import bare_spawn_ms

SLEEP = Program("sleep", "import time\ntime.sleep(0.5)\nprint(1)")
CPU = Program(
    "cpu",
    "import time\nend = time.process_time() + 1\nwhile time.process_time() < end:\n    pass\nprint(1)",
)
MIX = {QUICK: 7, SLEEP: 2, CPU: 1}
BARE_SPAWN_RUNS = 30


@dataclass(frozen=True)
class BenchSettings:
    """What the phases do; see the CLI for where each value comes from."""

    seconds: float
    rate: float
    celery_concurrency: int
    legacy_concurrency: int
    executor_slots: int = 2
    # In flight in the light phases (nothing waits behind anything: the latency is the
    # platform's own cost), whatever the consumers' size.
    light_concurrency: int = 2
    saturation_factor: int = 4
    rate_threads: int = 128
    seed: int = 6
    profile: bool = False
    # The warm sandbox phase's pause after each answer: long enough for an executor slot to have
    # prepared its next sandbox in the background.
    warm_pause: float = 0.1
    accept_rates: tuple[float, ...] = accept.RATES
    accept_step_seconds: float = accept.STEP_SECONDS

    def path_slots(self, backend: str) -> int:
        """Executor slots a path runs programs in: the Celery path has two executors."""
        return self.executor_slots * (2 if backend == "celery" else 1)

    def saturated(self, backend: str) -> int:
        """In flight in a saturated phase: the path's slots, `saturation_factor` times over."""
        return self.saturation_factor * self.path_slots(backend)

    def consumers(self, backend: str) -> str:
        """The consumers a path's evaluations wait for, as the report names them."""
        celery = f"Celery -c {self.celery_concurrency}"
        legacy = f"queue-worker {self.legacy_concurrency} threads"
        return {"celery": celery, "legacy": legacy, "shadow": f"{legacy}; {celery}"}[backend]

    def concurrency(self, *, clients: str, consumers: str) -> dict[str, str]:
        """The three figures every phase's table states."""
        return {
            "clients": clients,
            "consumers": consumers,
            "executor_slots": f"{self.executor_slots} per executor",
        }


@dataclass
class Context:
    """What every phase drives and where it records; `profiles` fills when profiling."""

    suite: Suite
    gateway: Gateway
    executors: Executors
    completions: Completions
    settings: BenchSettings
    profile_dir: Path
    profiles: dict[str, Any] = field(default_factory=dict)


def mixed_programs(seed: int, mix: dict[Program, int] = MIX) -> list[Program]:
    """One cycle of the mixed workload in a fixed shuffled order (the same on every run)."""
    cycle = [program for program, weight in mix.items() for _ in range(weight)]
    random.Random(seed).shuffle(cycle)  # noqa: S311 - a repeatable order, not a secret
    return cycle


def measured(ctx: Context, phase: str, body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `body` between two CPU snapshots (and under py-spy when profiling); adds "cpu"."""
    roots = {"honcho": ctx.suite.honcho.pid, **ctx.suite.pids()} if ctx.suite.honcho else {}
    roots.update(ctx.suite.extra_roots)
    before = machine.snapshot(roots)
    with profiling.recording(ctx, phase, roots):
        result = body()
    result["cpu"] = machine.cpu_between(before, machine.snapshot(roots))
    print(f"  {phase}: {summary_line(result)}", flush=True)
    return result


def summary_line(result: dict[str, Any]) -> str:
    parts = []
    if result.get("throughput_per_s"):
        parts.append(f"{result['throughput_per_s']:.1f}/s")
    latency = result.get("latency_ms") or result.get("split", {}).get("end_to_end")
    if latency and latency.get("p50") is not None:
        parts.append(f"p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms")
    return ", ".join(parts) or "done"


# --- 1. the sandbox ------------------------------------------------------------------------------


def bare_python() -> dict[str, Any]:
    """`/usr/bin/python3 -c 'print(1)'` spawned from this process (crucible_executor.bench)."""
    times = bare_spawn_ms(BARE_SPAWN_RUNS)
    return {"runs": len(times), "latency_ms": summarize(times).as_dict()}


def sandbox_baseline(ctx: Context, *, concurrency: int, phase: str) -> dict[str, Any]:
    """`print(1)` straight to the Celery path's executors by `concurrency` closed-loop clients:
    at the light load (latency) and at every slot taken (the executors' capacity)."""

    def body() -> dict[str, Any]:
        executions, wall = load.sandbox_baseline(
            ctx.executors, concurrency=concurrency, seconds=ctx.settings.seconds, program=QUICK
        )
        completed = [one for one in executions if one.status == "completed"]
        return {
            "concurrency": concurrency,
            "load": ctx.settings.concurrency(
                clients=f"{concurrency} (closed loop)", consumers="none: straight to the executors"
            ),
            "executors": ctx.executors.urls,
            "count": len(executions),
            "statuses": _counts(one.status for one in executions),
            "wall_s": wall,
            "throughput_per_s": per_second(len(completed), wall),
            "latency_ms": summarize(
                (one.done_at - one.sent_at) * 1000 for one in completed
            ).as_dict(),
        }

    return measured(ctx, phase, body)


def warm_sandbox(ctx: Context) -> dict[str, Any]:
    """`print(1)` through POST /execute to one executor, one request at a time with
    `warm_pause` after each answer: the latency of a program that finds a prepared sandbox."""
    url = ctx.suite.celery_executor_urls[0]
    executors = Executors([url], internal_key=ctx.suite.internal_key)
    pause = ctx.settings.warm_pause

    def body() -> dict[str, Any]:
        executions, wall = load.paced(
            executors, seconds=ctx.settings.seconds, pause=pause, program=QUICK
        )
        completed = [one for one in executions if one.status == "completed"]
        return {
            "executor": url,
            "pause_s": pause,
            "load": ctx.settings.concurrency(
                clients=f"1, {pause * 1000:g} ms pause after each answer",
                consumers="none: straight to one executor",
            ),
            "count": len(executions),
            "statuses": _counts(one.status for one in executions),
            "wall_s": wall,
            "latency_ms": summarize(
                (one.done_at - one.sent_at) * 1000 for one in completed
            ).as_dict(),
        }

    try:
        return measured(ctx, "warm_sandbox", body)
    finally:
        executors.close()


# --- 2. each path end to end ---------------------------------------------------------------------


def route(ctx: Context, *, backend: str, shadow: bool = False) -> None:
    """All new evaluations to `backend` (shadow: primary legacy, every one shadowed on Celery).

    The rollback guard is switched off: it compares the paths' latencies and would, rightly on a
    saturated machine, move the share back in the middle of a phase.
    """
    ctx.gateway.set_migration(
        reason=f"bench: {backend}{' + shadow' if shadow else ''}",
        celery_enabled=True,
        celery_percentage=1.0 if backend == "celery" else 0.0,
        mode="shadow" if shadow else "split",
        shadow_percentage=1.0 if shadow else 0.0,
        force_legacy=False,
        guard={"enabled": False},
        ramp={"active": False},
    )
    warm, _ = load.end_to_end(ctx.gateway, ctx.completions, window=2, seconds=1, programs=[QUICK])
    wrong = {one.backend for one in warm} - {backend}
    if wrong:
        raise RuntimeError(f"routing to {backend} put evaluations on {wrong}")


def path_end_to_end(
    ctx: Context, *, backend: str, window: int, phase: str, programs: Sequence[Program] = (QUICK,)
) -> dict[str, Any]:
    def body() -> dict[str, Any]:
        evaluations, _ = load.end_to_end(
            ctx.gateway,
            ctx.completions,
            window=window,
            seconds=ctx.settings.seconds,
            programs=programs,
        )
        result = describe_evaluations(evaluations, window=window, backend=backend)
        result["load"] = ctx.settings.concurrency(
            clients=f"{window} (closed loop)", consumers=ctx.settings.consumers(backend)
        )
        return result

    return measured(ctx, phase, body)


def describe_evaluations(
    evaluations: Sequence[Evaluation], *, window: int, backend: str
) -> dict[str, Any]:
    """Throughput over the closed loop's span (first POST to last seen), split, and counts."""
    completed = [one for one in evaluations if one.status == "completed"]
    span = span_seconds(evaluations)
    return {
        "backend": backend,
        "window": window,
        "count": len(evaluations),
        "statuses": count_by(evaluations, "status"),
        "backends": count_by(evaluations, "backend"),
        "noticed_by": count_by(evaluations, "noticed_by"),
        "span_s": span,
        "throughput_per_s": per_second(len(completed), span),
        "split": {part: one.as_dict() for part, one in split_summaries(completed).items()},
    }


# --- 3. submit latency at a fixed rate -----------------------------------------------------------


def fixed_rate_figures(ctx: Context, rate: float, seconds: float) -> dict[str, Any]:
    """An open loop of POST /api/eval at `rate` for `seconds`: answers, latency, send lag."""
    submissions = load.fixed_rate(
        ctx.gateway, rate=rate, seconds=seconds, program=QUICK, threads=ctx.settings.rate_threads
    )
    accepted = [one for one in submissions if one.status_code == 202]
    span = max(one.done_at for one in submissions) - min(one.due_at for one in submissions)
    return {
        "rate": rate,
        "sent": len(submissions),
        "status_codes": _counts(one.status_code for one in submissions),
        "backends": _counts(one.backend for one in accepted),
        "shadow_backends": _counts(one.shadow_backend for one in accepted),
        "achieved_rate_per_s": per_second(len(submissions), span),
        "latency_ms": summarize((one.done_at - one.sent_at) * 1000 for one in accepted).as_dict(),
        "send_lag_ms": summarize(
            (one.sent_at - one.due_at) * 1000 for one in submissions
        ).as_dict(),
        "_accepted": accepted,
    }


def open_loop_clients(ctx: Context, rate: float | None = None) -> str:
    at = f" at {rate:g}/s" if rate else ""
    return f"open loop{at}, at most {ctx.settings.rate_threads} in flight"


def submit_rate(ctx: Context, *, phase: str, mode: str) -> dict[str, Any]:
    rate, seconds = ctx.settings.rate, ctx.settings.seconds

    def body() -> dict[str, Any]:
        result = fixed_rate_figures(ctx, rate, seconds)
        accepted = result.pop("_accepted")
        result["load"] = ctx.settings.concurrency(
            clients=open_loop_clients(ctx, rate), consumers=ctx.settings.consumers(mode)
        )
        result["backlog"] = _backlog(ctx.completions, accepted)
        return result

    return measured(ctx, phase, body)


def _backlog(completions: Completions, accepted: Sequence[load.Submission]) -> dict[str, int]:
    """How many of the phase's evaluations had ended when it stopped, and how many were left
    behind (they go with the suite, which the caller stops instead of draining it)."""
    ended = sum(1 for one in accepted if one.eval_id and completions.has_ended(one.eval_id))
    return {"ended": ended, "left": len(accepted) - ended}


# --- 4. mixed workload -----------------------------------------------------------------------------


def mixed(ctx: Context, *, window: int) -> dict[str, Any]:
    programs = mixed_programs(ctx.settings.seed)

    def body() -> dict[str, Any]:
        evaluations, _ = load.end_to_end(
            ctx.gateway,
            ctx.completions,
            window=window,
            seconds=ctx.settings.seconds,
            programs=programs,
        )
        result = describe_evaluations(evaluations, window=window, backend="celery")
        result["load"] = ctx.settings.concurrency(
            clients=f"{window} (closed loop)", consumers=ctx.settings.consumers("celery")
        )
        result["mix"] = {program.kind: weight for program, weight in MIX.items()}
        result["by_kind"] = {
            kind: {
                "count": len(ones),
                "statuses": count_by(ones, "status"),
                "split": {part: one.as_dict() for part, one in split_summaries(ones).items()},
            }
            for kind in MIX_KINDS
            if (ones := [one for one in evaluations if one.kind == kind])
        }
        return result

    return measured(ctx, "mixed_celery", body)


MIX_KINDS = tuple(program.kind for program in MIX)


# The fixed-rate phases: name -> (primary path, shadowed). Each runs on a suite of its own.
SUBMIT_MODES = {
    "legacy": ("legacy", False),
    "celery": ("celery", False),
    "shadow": ("legacy", True),
}


def run_paths(ctx: Context) -> dict[str, Any]:
    """Phases 1, 2 and 4 on one suite, in that order; the results keyed by phase name.

    Each leaves the suite idle: a closed loop ends when its last evaluation has.
    """
    settings = ctx.settings
    phases: dict[str, Any] = {"bare_python": bare_python()}
    print("phase 1: sandbox baseline", flush=True)
    phases["sandbox"] = sandbox_baseline(
        ctx, concurrency=settings.light_concurrency, phase="sandbox"
    )
    slots = settings.path_slots("celery")
    print(f"phase 1: sandbox baseline, every slot taken ({slots})", flush=True)
    phases["sandbox_saturated"] = sandbox_baseline(
        ctx, concurrency=slots, phase="sandbox_saturated"
    )
    print(f"phase 1: warm sandbox, {settings.warm_pause * 1000:g} ms between requests", flush=True)
    phases["warm_sandbox"] = warm_sandbox(ctx)
    for backend in ("legacy", "celery"):
        print(f"phase 2: {backend} path at 100 %", flush=True)
        route(ctx, backend=backend)
        phases[backend] = path_end_to_end(
            ctx, backend=backend, window=settings.light_concurrency, phase=backend
        )
        phases[f"{backend}_saturated"] = path_end_to_end(
            ctx, backend=backend, window=settings.saturated(backend), phase=f"{backend}_saturated"
        )
    print("phase 4: mixed workload on the Celery path", flush=True)
    route(ctx, backend="celery")
    phases["mixed_celery"] = mixed(ctx, window=settings.saturated("celery"))
    return phases


def run_submit(ctx: Context, mode: str) -> dict[str, Any]:
    """Phase 3 in one mode of SUBMIT_MODES. It leaves a backlog the machine would need minutes to
    run or cancel, so its suite is meant to be stopped afterwards rather than drained."""
    backend, shadow = SUBMIT_MODES[mode]
    print(f"phase 3: submit latency at {ctx.settings.rate:g}/s, {mode}", flush=True)
    route(ctx, backend=backend, shadow=shadow)
    return submit_rate(ctx, phase=f"submit_{mode}", mode=mode)


# --- 5. accept-only ----------------------------------------------------------------------------

# The consumers the accept-only phase pauses: nothing takes an evaluation off its queue.
CONSUMERS = ("queue-worker", "celery-worker")


def run_accept_only(ctx: Context) -> dict[str, Any]:
    """Phase 5 on the Celery path: the consumers paused (SIGSTOP, continued before the suite is
    stopped), then an open loop at each of `accept_rates` until a step does not hold. What the
    gateway and storage (and the broker) sustain accepting, with nothing run."""
    settings = ctx.settings
    print("phase 5: accept-only, consumers paused", flush=True)
    route(ctx, backend="celery")
    pids = ctx.suite.pids()
    missing = [name for name in CONSUMERS if name not in pids]
    if missing:
        raise RuntimeError(f"accept-only: no pid for {missing}")
    seconds = min(settings.seconds, settings.accept_step_seconds)

    def measure(rate: float) -> dict[str, Any]:
        step = fixed_rate_figures(ctx, rate, seconds)
        del step["_accepted"]
        print(f"  accept-only at {rate:g}/s: {summary_line(step)}", flush=True)
        return step

    def body() -> dict[str, Any]:
        with paused(pids[name] for name in CONSUMERS) as stopped:
            steps = accept.run_steps(settings.accept_rates, measure)
        return {
            "backend": "celery",
            "paused": list(CONSUMERS),
            "paused_processes": len(stopped),
            "step_seconds": seconds,
            "max_p99_ms": accept.MAX_P99_MS,
            "load": settings.concurrency(
                clients=open_loop_clients(ctx), consumers="paused (SIGSTOP)"
            ),
            "steps": steps,
            "highest_held_per_s": accept.highest_held(steps),
            "count": sum(step["sent"] for step in steps),
        }

    return measured(ctx, "accept_only", body)


# --- 6. listeners ----------------------------------------------------------------------------------

# Operators following every live event while clients submit.
LISTENERS = 100


def run_listeners(ctx: Context) -> dict[str, Any]:
    """Phase 6 on the Celery path, consumers paused (so that no program competes for the CPU and
    only what the listeners cost can move the figures): the fixed-rate submit window without
    listeners, with LISTENERS of them on `GET /api/events` (each event of each submission goes
    to every one), and without again. The ratio is the p99 with them over the mean p99 of the
    two windows without (before and after, so that a drift over the phase shows)."""
    settings = ctx.settings
    print(
        f"phase 6: submit latency at {settings.rate:g}/s, {LISTENERS} event listeners", flush=True
    )
    route(ctx, backend="celery")
    pids = ctx.suite.pids()
    missing = [name for name in CONSUMERS if name not in pids]
    if missing:
        raise RuntimeError(f"listeners: no pid for {missing}")

    def window(name: str) -> dict[str, Any]:
        figures = fixed_rate_figures(ctx, settings.rate, settings.seconds)
        del figures["_accepted"]
        print(f"  {name}: {summary_line(figures)}", flush=True)
        return figures

    def body() -> dict[str, Any]:
        with paused(pids[name] for name in CONSUMERS):
            before = window("without listeners")
            with listening(
                ctx.suite.url("gateway"), operator_token=ctx.suite.operator_token, count=LISTENERS
            ) as held:
                during = window(f"with {LISTENERS} listeners")
            after = window("without listeners, again")
        baseline = [w["latency_ms"]["p99"] for w in (before, after) if w["latency_ms"]["p99"]]
        return {
            "backend": "celery",
            "rate": settings.rate,
            "window_seconds": settings.seconds,
            "listeners": LISTENERS,
            "load": settings.concurrency(
                clients=open_loop_clients(ctx, settings.rate), consumers="paused (SIGSTOP)"
            ),
            "windows": {"without": before, "with_listeners": during, "without_again": after},
            "held": held.figures,
            "p99_ratio": ratio(
                during["latency_ms"]["p99"], sum(baseline) / len(baseline) if baseline else None
            ),
            "count": before["sent"] + during["sent"] + after["sent"],
        }

    return measured(ctx, "listeners", body)


def _counts(values: Iterable[object]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[str(value)] = counts.get(str(value), 0) + 1
    return dict(sorted(counts.items()))
