"""What the routes call: validate a request against the limits, run it in a slot, report capacity."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

from crucible_contracts.errors import Busy, InvalidInput
from crucible_contracts.models import ExecuteRequest, ExecuteResult
from crucible_contracts.names import Role
from crucible_executor import metrics
from crucible_executor.cgroups import CgroupMode
from crucible_executor.config import SandboxMode, Settings
from crucible_executor.languages import Language
from crucible_executor.runner import Execution, Runner
from crucible_executor.slots import How, Killed, SlotRegistry
from crucible_executor.warm import WarmPool

log = logging.getLogger(__name__)


@dataclass
class Executor:
    """The executor's state: its settings, its runner (one sandbox mode) and its slots."""

    settings: Settings
    runner: Runner
    slots: SlotRegistry
    # One warm sandbox per slot (warm.py); None when WARM_SANDBOXES is off.
    warm: WarmPool | None = None

    @property
    def languages(self) -> dict[str, Language]:
        return self.runner.languages


def validate(
    request: ExecuteRequest, *, settings: Settings, languages: dict[str, Language]
) -> None:
    """Raise InvalidInput (naming the field and the limit) for a request the executor will not run."""
    language = languages.get(request.language)
    if language is None or not language.available:
        names = sorted(name for name, lang in languages.items() if lang.available)
        raise InvalidInput("language", f"must be one of {names}", allowed=names)
    if not settings.min_timeout <= request.timeout <= settings.max_timeout:
        raise InvalidInput(
            "timeout",
            f"must be between {settings.min_timeout:g} and {settings.max_timeout:g} seconds",
            min=settings.min_timeout,
            max=settings.max_timeout,
        )
    if len(request.code.encode()) > settings.max_code_bytes:
        raise InvalidInput(
            "code", f"must be at most {settings.max_code_bytes} bytes", max=settings.max_code_bytes
        )
    if request.stdin is not None and len(request.stdin.encode()) > settings.max_stdin_bytes:
        raise InvalidInput(
            "stdin",
            f"must be at most {settings.max_stdin_bytes} bytes",
            max=settings.max_stdin_bytes,
        )
    least = max(settings.min_memory_mb, language.min_memory_mb)
    if request.memory_mb is not None and request.memory_mb < least:
        raise InvalidInput(
            "memory_mb",
            f"must be at least {least} for {language.name} "
            f"(above {settings.memory_mb} it is capped)",
            min=least,
            max=settings.memory_mb,
        )


async def execute(*, request: ExecuteRequest, executor: Executor) -> ExecuteResult:
    """Run the program to its end in a free slot, or join the run of the same (eval_id, role),
    or collect its result when that run ended within the retention window (never run twice).

    Raises Busy at once when every slot is taken. The run belongs to the slot registry, not to
    this call: a caller that goes away does not stop it, and a retry joins it. A run that was
    killed is never joined: the call waits for it to leave its slot and starts a new one.
    """
    validate(request, settings=executor.settings, languages=executor.languages)
    executor_id = executor.settings.executor_id

    async def start(execution: Execution) -> ExecuteResult:
        # One line per program started, never for a join or a collect: what `make chaos` counts
        # to tell a program that ran twice from a result handed out twice.
        log.info("eval %s %s started in slot %d", request.eval_id, request.role, execution.slot)
        began = time.monotonic()
        pool = executor.warm
        if pool is not None:
            # Once this program has its sandbox, the slot prepares its next one.
            execution.on_start = functools.partial(pool.refill, execution.slot)
        try:
            warm = await pool.take(execution.slot) if pool is not None else None
            result = await executor.runner.run(
                request,
                slot=execution.slot,
                execution=execution,
                warm=warm,
                defer_teardown=True,
            )
            _ended(request, result, execution, executor_id, began)
            # The caller has its answer (and the slot is free) while the sandbox is torn down.
            execution.deliver(result)
            if execution.teardown is not None:
                await asyncio.shield(execution.teardown)
        finally:
            if pool is not None:
                pool.refill(execution.slot)  # unless on_start did: a sandbox that never started
        return result

    try:
        run, how = await executor.slots.join_or_start(
            (request.eval_id, request.role),
            start,
            reap_timeout=executor.settings.kill_reap_timeout_seconds,
        )
    except Busy:
        metrics.REJECTED.labels(executor_id).inc()
        raise
    if how is How.JOINED:
        metrics.JOINED.labels(executor_id).inc()
    elif how is How.COLLECTED:
        metrics.COLLECTED.labels(executor_id).inc()
    return await asyncio.shield(run)


def _ended(
    request: ExecuteRequest,
    result: ExecuteResult,
    execution: Execution,
    executor_id: str,
    began: float,
) -> None:
    """Count and log a run's end, before its caller is answered (a caller that reads the
    metrics next finds the run counted)."""
    if execution.warm:
        metrics.HANDOVERS.labels(executor_id).inc()
    else:
        metrics.COLD_RUNS.labels(executor_id, request.language).inc()
    metrics.RUNS.labels(executor_id, result.status, result.reason or "").inc()
    metrics.RUN_SECONDS.labels(executor_id, result.status).observe(time.monotonic() - began)
    log.info(
        "eval %s %s ended %s (%s) in %.0f ms",
        request.eval_id,
        request.role,
        result.status,
        result.reason or result.exit_code,
        result.runtime_ms,
    )


async def kill(*, eval_id: str, role: Role | None = None, executor: Executor) -> Killed:
    """SIGKILL every run of `eval_id` (of `role` only, when given) and answer once they have left
    their slots, so that a retry sent after the answer starts a new run. The wait is bounded by
    KILL_REAP_TIMEOUT_SECONDS; `reaped` says whether it was enough."""
    return await executor.slots.kill(
        eval_id, role=role, reap_timeout=executor.settings.kill_reap_timeout_seconds
    )


def capacity(executor: Executor) -> dict[str, Any]:
    slots = executor.slots
    return {
        "slots": slots.slots,
        "busy": slots.busy,
        "free": slots.free,
        "cgroup": cgroup_mode(executor.runner).value,
    }


def kept_results(executor: Executor) -> dict[str, int]:
    finished = executor.slots.finished
    return {"kept_results": len(finished) if finished else 0}


def warm_state(executor: Executor) -> dict[str, Any]:
    """Whether slots keep warm sandboxes, for which languages, how many wait now (and which:
    slot, uid, cgroup) and how many are being prepared."""
    pool = executor.warm
    if pool is None:
        return {"enabled": False, "languages": [], "ready": 0, "preparing": 0, "waiting": []}
    return {
        "enabled": pool.enabled,
        "languages": [pool.language] if pool.enabled else [],
        "ready": pool.ready_count,
        "preparing": pool.preparing_count,
        "waiting": [dataclasses.asdict(waiting) for waiting in pool.waiting()],
    }


def cgroup_favordynmods(runner: Runner) -> bool | None:
    return runner.cgroups.favordynmods if runner.cgroups is not None else None


def cgroup_mode(runner: Runner) -> CgroupMode:
    return runner.cgroups.mode if runner.cgroups is not None else CgroupMode.NONE


def weaknesses(runner: Runner) -> list[str]:
    """Why this executor isolates programs less than it should (empty: it does not)."""
    found = []
    if runner.mode is SandboxMode.UNSHARE:
        found.append(
            "sandbox is the unshare fallback: the host's files are visible as the sandbox's uid "
            "allows, and no seccomp filter is installed"
        )
    if runner.scratch is None:
        found.append(
            "runs write to bwrap's tmpfs: bounded in bytes, in inodes only by the run's memory"
        )
    if runner.cgroups is None:
        found.append(
            "runs have no cgroup: memory is bounded per process (RLIMIT_AS), not per run, and "
            "the memory_limit outcome cannot be decided"
        )
    return found


def health(executor: Executor) -> dict[str, Any]:
    degraded = weaknesses(executor.runner)
    return {
        "status": "degraded" if degraded else "ok",
        "degraded": degraded,
        "executor_id": executor.settings.executor_id,
        "sandbox": executor.runner.mode.value,
        "seccomp": executor.runner.seccomp_program is not None,
        "scratch_inodes": executor.settings.scratch_inodes if executor.runner.scratch else None,
        "cgroup_favordynmods": cgroup_favordynmods(executor.runner),
        "warm": warm_state(executor),
        **capacity(executor),
        **kept_results(executor),
        "languages": sorted(name for name, lang in executor.languages.items() if lang.available),
    }
