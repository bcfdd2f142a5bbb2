"""A queue-worker cannot be killed by what it is handed: malformed leases are refused and failed,
every polling thread lives on, and the health probe counts them."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from crucible_queue.healthcheck import threads_short
from crucible_runtime.pytest_plugin import free_port, wait_for

# What a broken or hostile queue-service could lease: each fails validation differently.
MALFORMED = [
    {"task_id": "t-1:primary", "task": {"eval_id": "../../etc/passwd"}, "attempts": 1},
    {"task_id": "t-2:primary", "task": "not an object", "attempts": "many"},
    {"task_id": "t-3:primary"},
    {"task_id": "t-4:primary", "task": {"code": "print(1)", "eval_id": "0" * 32}, "attempts": 1},
]


class HostileQueue(ThreadingHTTPServer):
    """An HTTP peer in the queue-service's place that leases only malformed tasks, then nothing,
    and records what the worker answers (the real queue-service validates on enqueue, so it
    cannot be made to lease these)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.leases = [json.dumps(body).encode() for body in MALFORMED] + [b"{not json"]
        self.failed: dict[str, str] = {}
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: HostileQueue

    def do_GET(self) -> None:
        with self.server.lock:
            body = self.server.leases.pop(0) if self.server.leases else None
        if body is None:
            self.send_response(204)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        parts = self.path.strip("/").split("/")
        if len(parts) == 3 and parts[2] == "fail":
            with self.server.lock:
                self.server.failed[parts[1]] = body.get("reason", "")
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        """Quiet: the test reads what the worker answered, not access lines."""


@pytest.fixture
def hostile_queue():
    server = HostileQueue()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def test_malformed_leases_are_failed_and_every_thread_lives_on(processes, hostile_queue):
    metrics_port = free_port()
    nowhere = f"http://127.0.0.1:{free_port()}"
    env = {
        "QUEUE_SERVICE_URL": f"http://127.0.0.1:{hostile_queue.server_address[1]}",
        "STORAGE_SERVICE_URL": nowhere,
        "LEGACY_EXECUTOR_URL": nowhere,
        "QUEUE_WORKER_CONCURRENCY": "2",
        "QUEUE_WORKER_METRICS_PORT": str(metrics_port),
        "QUEUE_POLL_IDLE_MAX": "0.1",
        "INTERNAL_API_KEY": "",
    }
    worker = processes.process(
        "queue-worker", [sys.executable, "-m", "crucible_queue.worker"], env=env
    )

    def all_handed_out_and_failed() -> bool:
        with hostile_queue.lock:
            return not hostile_queue.leases and len(hostile_queue.failed) == len(MALFORMED)

    # The unparsable last one names no task to fail; it is read and dropped all the same.
    wait_for(all_handed_out_and_failed, timeout=30, what="every malformed lease to be failed")
    assert all(reason.startswith("malformed task") for reason in hostile_queue.failed.values())
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    assert threads_short(metrics) is None
    assert worker.alive()


def test_health_is_short_of_threads_until_all_run():
    def metrics(alive: float) -> str:
        return (
            f"crucible_legacy_worker_threads_alive {alive}\n"
            "crucible_legacy_worker_threads_configured 2.0\n"
        )

    assert threads_short(metrics(2.0)) is None
    assert threads_short(metrics(1.0)) == "polling threads alive 1.0 of 2.0"
    assert threads_short("") is not None
