"""The gateway's CPU per submission and per read, on each path and in shadow mode (issue 14).

    .venv/bin/python services/api-gateway/bench_submit.py [-n 1000] [--keyed] [--profile DIR]

Starts real processes (a redis-server for the broker and the state, storage on SQLite, the
queue-service, then one gateway per mode), sends N submissions of `print(1)` and N reads of
them, one at a time on one kept-alive connection, and prints the gateway's CPU (utime + stime
from /proc/<pid>/stat) per request, less what the idle gateway burns meanwhile (its leader loop
and settings refresh). No consumer runs: messages wait in their queues. `--keyed` sends a
tenant key and turns the rate limit on (what production does; `make bench` runs keyless with
no rate limit). `--profile DIR` runs each gateway under py-spy and writes DIR/<mode>.txt (collapsed stacks).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from crucible_runtime.pytest_plugin import ProcessStarter, start_redis_server

INTERNAL_KEY = "bench-internal-key-0123456789"
TENANT_KEY = "bench-tenant-key-0123456789abcdef"
OPERATOR = "op:bench-operator-token-0123456789"
MODES = {
    "legacy": {"CELERY_ENABLED": "false", "CELERY_PERCENTAGE": "0"},
    "celery": {"CELERY_ENABLED": "true", "CELERY_PERCENTAGE": "1"},
    "shadow": {"CELERY_ENABLED": "true", "CELERY_PERCENTAGE": "1", "MIGRATION_MODE": "shadow"},
}
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def call(conn: http.client.HTTPConnection, method: str, path: str, headers: dict, body=None):
    payload = json.dumps(body).encode() if body is not None else None
    conn.request(
        method, path, body=payload, headers={"Content-Type": "application/json", **headers}
    )
    response = conn.getresponse()
    data = response.read()
    return response.status, data


def measure(pid: int, run) -> float:
    """CPU seconds `pid` spent during `run()`, less its idle rate over the same wall time."""
    idle_start, wall = cpu_seconds(pid), time.monotonic()
    time.sleep(2)
    idle_rate = (cpu_seconds(pid) - idle_start) / (time.monotonic() - wall)
    before, wall = cpu_seconds(pid), time.monotonic()
    run()
    time.sleep(0.3)  # background work (a shadow dispatch) after the last answer
    spent = cpu_seconds(pid) - before
    return max(0.0, spent - idle_rate * (time.monotonic() - wall))


def bench_mode(gateway_pid: int, port: int, n: int, headers: dict) -> tuple[float, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    ids: list[str] = []

    def submit(count: int) -> None:
        for _ in range(count):
            status, data = call(conn, "POST", "/api/eval", headers, {"code": "print(1)"})
            if status != 202:
                raise SystemExit(f"submit answered {status}: {data[:300]!r}")
            ids.append(json.loads(data)["eval_id"])

    def read() -> None:
        for eval_id in ids[-n:]:
            status, data = call(conn, "GET", f"/api/eval/{eval_id}", headers)
            if status != 200:
                raise SystemExit(f"read answered {status}: {data[:300]!r}")

    submit(50)  # warm up: connections, caches, imports
    submit_cpu = measure(gateway_pid, lambda: submit(n))
    read_cpu = measure(gateway_pid, read)
    conn.close()
    return submit_cpu / n * 1000, read_cpu / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="submissions (and reads) per mode")
    parser.add_argument("--keyed", action="store_true", help="a tenant key and a rate limit")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--profile", type=Path, help="py-spy each gateway into this folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="crucible-hotbench-"))
    starter = ProcessStarter(work)
    try:
        redis = start_redis_server(starter)
        base = redis.url.rsplit("/", 1)[0]
        storage = starter.service(
            "crucible_storage.main:create_app",
            name="storage",
            env={
                "DATABASE_URL": f"sqlite:///{work / 'crucible.db'}",
                "INTERNAL_API_KEY": INTERNAL_KEY,
            },
        )
        queue = starter.service(
            "crucible_queue.main:create_app",
            name="queue-service",
            env={"INTERNAL_API_KEY": INTERNAL_KEY, "QUEUE_MAX_DEPTH": "1000000"},
        )
        headers = {"X-API-Key": TENANT_KEY} if args.keyed else {}
        print(f"gateway CPU ms per request, n={args.n}, keyed={args.keyed}")
        for index, mode in enumerate(args.modes.split(",")):
            env = {
                "STORAGE_SERVICE_URL": storage.url,
                "QUEUE_SERVICE_URL": queue.url,
                "CELERY_BROKER_URL": f"{base}/{2 + index}",
                "REDIS_URL": f"{base}/1",
                "MIGRATION_KEY_PREFIX": f"crucible:migration:bench:{mode}:{time.time_ns()}",
                "INTERNAL_API_KEY": INTERNAL_KEY,
                "OPERATOR_TOKEN": OPERATOR,
                "API_KEYS": f"bench:{TENANT_KEY}" if args.keyed else "",
                "RATE_LIMIT_PER_SECOND": "100000" if args.keyed else "0",
                "TENANT_MAX_IN_FLIGHT": "10000000",
                "RECONCILE_QUEUED_AFTER_SECONDS": "86400",
                "RECONCILE_CELERY_QUEUED_AFTER_SECONDS": "86400",
                "LOG_LEVEL": "WARNING",
                **MODES[mode],
            }
            gateway = starter.service("crucible_gateway.main:create_app", name=mode, env=env)
            spy = None
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
                spy = starter.process(
                    f"py-spy-{mode}",
                    [
                        str(Path(sys.executable).parent / "py-spy"),
                        "record",
                        "--gil",
                        "-r",
                        "200",
                        "-f",
                        "raw",
                        "-o",
                        str(args.profile / f"{mode}.txt"),
                        "-p",
                        str(gateway.proc.pid),
                    ],
                )
            submit_ms, read_ms = bench_mode(gateway.proc.pid, gateway.port, args.n, headers)
            print(f"{mode:7s} submit {submit_ms:6.2f} ms   read {read_ms:6.2f} ms", flush=True)
            if spy is not None:
                spy.signal(2)
                spy.proc.wait(30)
            gateway.stop()
    finally:
        starter.stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
