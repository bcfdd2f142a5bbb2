"""Container health probe: `python -m crucible_queue.healthcheck` exits 0 when this process answers.

A queue-worker container (QUEUE_WORKER_METRICS_PORT set) is probed on its metrics endpoint; a
queue-service container on `/health` at QUEUE_SERVICE_PORT (default 8002).
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


def main() -> int:
    try:
        response = httpx.get(probe_url(Settings()), timeout=2)
    except httpx.HTTPError as exc:
        print(f"unhealthy: {exc!r}", file=sys.stderr)
        return 1
    return 0 if response.status_code == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
