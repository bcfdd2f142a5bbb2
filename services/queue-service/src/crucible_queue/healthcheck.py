"""Container health probe: `python -m crucible_queue.healthcheck` exits 0 when this process answers.

A queue-worker container (QUEUE_WORKER_METRICS_PORT set) is probed on its metrics endpoint, and
is unhealthy while fewer polling threads run than configured; a queue-service container on
`/health` at QUEUE_SERVICE_PORT (default 8002).
"""

from __future__ import annotations

import os
import sys

import httpx

from crucible_queue.config import Settings


def probe_url(settings: Settings) -> str:
    if settings.queue_worker_metrics_port:
        return f"http://127.0.0.1:{settings.queue_worker_metrics_port}/metrics"
    return f"http://127.0.0.1:{os.environ.get('QUEUE_SERVICE_PORT', '8002')}/health"


def threads_short(metrics_text: str) -> str | None:
    """Why a queue-worker is unhealthy by its metrics: fewer polling threads alive than
    configured (one died and is not back yet); None when all of them run."""
    values = {}
    for line in metrics_text.splitlines():
        name, _, value = line.partition(" ")
        if name in (
            "crucible_legacy_worker_threads_alive",
            "crucible_legacy_worker_threads_configured",
        ):
            values[name] = float(value)
    alive = values.get("crucible_legacy_worker_threads_alive")
    configured = values.get("crucible_legacy_worker_threads_configured")
    if alive is None or configured is None or alive < configured:
        return f"polling threads alive {alive} of {configured}"
    return None


def main() -> int:
    settings = Settings()
    try:
        response = httpx.get(probe_url(settings), timeout=2)
    except httpx.HTTPError as exc:
        print(f"unhealthy: {exc!r}", file=sys.stderr)
        return 1
    if response.status_code != 200:
        return 1
    if settings.queue_worker_metrics_port and (short := threads_short(response.text)):
        print(f"unhealthy: {short}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
