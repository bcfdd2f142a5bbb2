"""One bench session: a fresh suite, the driver's clients, every phase, the ratios and targets."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from crucible_bench import machine, phases, postgres, ratios
from crucible_bench.api import Executors, Gateway
from crucible_bench.follow import Completions
from crucible_bench.suite import running_suite
from crucible_queue.config import Settings as QueueSettings

SettingsFor = Callable[[Mapping[str, str]], phases.BenchSettings]
# The groups of phases, each on suites of its own, in the order they run (`--only`).
PHASE_GROUPS = ("paths", "submit", "accept", "listeners")


def consumer_concurrency(env: Mapping[str, str]) -> tuple[int, int]:
    """(Celery worker processes, queue-worker threads) the suite's consumers run with.

    The Celery worker gets `-c $CELERY_CONCURRENCY` from the Procfile; the queue-worker reads
    QUEUE_WORKER_CONCURRENCY, whose default is its Settings' own.
    """
    default_threads = QueueSettings.model_fields["queue_worker_concurrency"].default
    return (
        int(env["CELERY_CONCURRENCY"]),
        int(env.get("QUEUE_WORKER_CONCURRENCY", default_threads)),
    )


def executor_slots(env: Mapping[str, str]) -> int:
    """Program slots per executor: EXECUTOR_SLOTS, else the executor's default (the cores)."""
    return int(env.get("EXECUTOR_SLOTS") or os.cpu_count() or 1)


@contextlib.contextmanager
def storage_database(
    cluster: postgres.Cluster | None,
) -> Iterator[tuple[str | None, dict[str, int]]]:
    """(DATABASE_URL, extra CPU roots) for one suite: a fresh database on the bench's PostgreSQL
    cluster, counted as the suite's process "postgres"; or (None, {}): SQLite under the run dir."""
    if cluster is None:
        yield None, {}
        return
    with postgres.fresh_database(cluster) as url:
        yield url, {"postgres": cluster.pid}


@contextlib.contextmanager
def driving(
    *,
    root: Path,
    bench_dir: Path,
    settings_for: SettingsFor,
    inherited: Mapping[str, str],
    cluster: postgres.Cluster | None = None,
) -> Iterator[phases.Context]:
    """A fresh suite and the driver's clients of it; everything stopped on exit."""
    with (
        storage_database(cluster) as (database_url, extra_roots),
        running_suite(
            root=root,
            run_dir=bench_dir / "run",
            operator_token=secrets.token_hex(16),
            inherited=inherited,
            database_url=database_url,
            extra_roots=extra_roots,
        ) as suite,
    ):
        gateway = Gateway(suite.url("gateway"), operator_token=suite.operator_token)
        executors = Executors(suite.celery_executor_urls, internal_key=suite.internal_key)
        completions = Completions(suite.state_redis_url)
        try:
            completions.start()
            profile_dir = bench_dir / "profiles"
            profile_dir.mkdir(parents=True, exist_ok=True)
            yield phases.Context(
                suite=suite,
                gateway=gateway,
                executors=executors,
                completions=completions,
                settings=settings_for(suite.env),
                profile_dir=profile_dir,
            )
        finally:
            completions.stop()
            gateway.close()
            executors.close()


def run(
    *,
    root: Path,
    bench_dir: Path,
    seconds: float,
    rate: float,
    profile: bool,
    command: str,
    use_postgres: bool = False,
    inherited: Mapping[str, str] = os.environ,
    only: Collection[str] | None = None,
) -> dict[str, Any]:
    """Phases 1, 2 and 4 on one suite, then each fixed-rate phase and the accept-only phase on a
    fresh suite of its own (stopping a suite is much faster than draining the backlog they
    leave on a small machine); the results document. With `use_postgres`, storage uses a
    private PostgreSQL cluster under `bench_dir`, deleted at the end. `only` names the groups
    of PHASE_GROUPS to run (all of them by default)."""
    wanted = set(PHASE_GROUPS if only is None else only)
    started = time.monotonic()
    described = machine.describe()

    def settings_for(env: Mapping[str, str]) -> phases.BenchSettings:
        celery, legacy = consumer_concurrency(env)
        return phases.BenchSettings(
            seconds=seconds,
            rate=rate,
            celery_concurrency=celery,
            legacy_concurrency=legacy,
            executor_slots=executor_slots(env),
            profile=profile,
        )

    profiles: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        cluster = (
            stack.enter_context(postgres.private_cluster(bench_dir / "postgres"))
            if use_postgres
            else None
        )
        suites = {
            "root": root,
            "bench_dir": bench_dir,
            "settings_for": settings_for,
            "inherited": inherited,
            "cluster": cluster,
        }
        results: dict[str, Any] = {}
        env: Mapping[str, str] = {}
        if "paths" in wanted:
            with driving(**suites) as ctx:
                results.update(phases.run_paths(ctx))
                profiles.update(ctx.profiles)
                env = ctx.suite.env
        for mode in phases.SUBMIT_MODES if "submit" in wanted else ():
            with driving(**suites) as ctx:
                results[f"submit_{mode}"] = phases.run_submit(ctx, mode)
                profiles.update(ctx.profiles)
                env = ctx.suite.env
        if "accept" in wanted:
            with driving(**suites) as ctx:
                results["accept_only"] = phases.run_accept_only(ctx)
                env = ctx.suite.env
        if "listeners" in wanted:
            with driving(**suites) as ctx:
                results["listeners"] = phases.run_listeners(ctx)
                env = ctx.suite.env
        database = f"PostgreSQL {postgres.server_version(cluster)}" if cluster else "SQLite"
    settings = settings_for(env)
    path_ratios = ratios.path_ratios(results)
    return {
        "machine": described,
        "command": command,
        "settings": {
            "seconds": seconds,
            "rate": rate,
            "celery_concurrency": settings.celery_concurrency,
            "legacy_concurrency": settings.legacy_concurrency,
            "light_concurrency": settings.light_concurrency,
            "saturation_factor": settings.saturation_factor,
            "executor_slots": settings.executor_slots,
            "warm_pause_s": settings.warm_pause,
            "database": database + " (private cluster, fsync off)" if cluster else database,
            "log_level": env.get("LOG_LEVEL"),
            "celery_task_events": env.get("CELERY_TASK_EVENTS"),
            "profiled": profile,
        },
        "duration_s": time.monotonic() - started,
        "phases": results,
        "ratios": path_ratios,
        "targets": ratios.targets(results, path_ratios),
        "profiles": profiles,
    }
