"""The HTTP calls the driver makes: the gateway's public and admin API, and an executor's /execute.

The driver shares the machine with the suite it measures, so its own cost per request matters: it
speaks HTTP/1.1 with the standard library's http.client over one keep-alive connection per thread
and server (about 0.6 ms of CPU per request here, against 2.5-5 ms for httpx, which the services
use). Every call returns plain dicts and the driver's own wall-clock moments.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from crucible_contracts.ids import new_eval_id
from crucible_contracts.names import INTERNAL_KEY_HEADER
from crucible_contracts.status import Status

OPERATOR_HEADER = "X-Operator-Token"
TERMINAL = frozenset(status.value for status in Status if status.is_terminal())
# What a server's close of an idle keep-alive connection looks like on the next request.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass(frozen=True)
class Program:
    """What an evaluation runs: `kind` names its class in the mixed workload."""

    kind: str
    code: str
    timeout: float = 30


QUICK = Program("quick", "print(1)")


@dataclass(frozen=True)
class Answer:
    """One HTTP exchange as the driver timed it (time.time(), seconds)."""

    status_code: int
    body: dict[str, Any]
    sent_at: float
    done_at: float


class Server:
    """One HTTP server, with a keep-alive connection per calling thread (all closed together)."""

    def __init__(
        self, base_url: str, *, headers: dict[str, str] | None = None, timeout: float = 60
    ):
        parts = urlsplit(base_url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self._timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[http.client.HTTPConnection] = []
        self.base_url = base_url

    def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        payload = json.dumps(body).encode() if body is not None else None
        all_headers = {**self._headers, **(headers or {})}
        connection, reused = self._connection()
        sent_at = time.time()
        try:
            status, raw = _exchange(connection, method, path, payload, all_headers)
        except _STALE:
            if not reused:
                raise
            # The server closed the idle connection before this request reached it: send again.
            connection = self._connect()
            sent_at = time.time()
            status, raw = _exchange(connection, method, path, payload, all_headers)
        done_at = time.time()
        return Answer(status, _decode(raw), sent_at, done_at)

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            return self._connect(), False
        return connection, True

    def _connect(self) -> http.client.HTTPConnection:
        old = getattr(self._local, "connection", None)
        if old is not None:
            old.close()
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        self._local.connection = connection
        with self._lock:
            self._connections.append(connection)
        return connection

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()


def _exchange(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    payload: bytes | None,
    headers: dict[str, str],
) -> tuple[int, bytes]:
    connection.request(method, path, body=payload, headers=headers)
    response = connection.getresponse()
    return response.status, response.read()


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return {"text": raw[:500].decode(errors="replace")}
    return body if isinstance(body, dict) else {"items": body}


class Gateway:
    """The gateway as a client and an operator use it."""

    def __init__(self, base_url: str, *, operator_token: str, timeout: float = 60) -> None:
        self._server = Server(base_url, timeout=timeout)
        self._operator = {OPERATOR_HEADER: operator_token}

    def submit(self, program: Program) -> Answer:
        body = {"code": program.code, "timeout": program.timeout}
        return self._server.call("POST", "/api/eval", body=body)

    def view(self, eval_id: str) -> Answer:
        return self._server.call("GET", f"/api/eval/{eval_id}")

    def migration(self) -> dict[str, Any]:
        answer = self._server.call("GET", "/api/admin/migration", headers=self._operator)
        _expect(answer, 200, "GET /api/admin/migration")
        return answer.body

    def set_migration(self, *, reason: str, **changes: Any) -> dict[str, Any]:
        """A versioned write of `changes` on top of the document in force."""
        body = {"expected_version": self.migration()["version"], "reason": reason, **changes}
        answer = self._server.call("PUT", "/api/admin/migration", body=body, headers=self._operator)
        _expect(answer, 200, "PUT /api/admin/migration")
        return answer.body

    def close(self) -> None:
        self._server.close()


class Executors:
    """The executors' internal API, called straight (the sandbox baseline), round-robin."""

    def __init__(self, urls: list[str], *, internal_key: str | None, timeout: float = 60) -> None:
        headers = {INTERNAL_KEY_HEADER: internal_key} if internal_key else {}
        self._servers = [Server(url, headers=headers, timeout=timeout) for url in urls]
        self.urls = urls
        self._next = 0
        self._lock = threading.Lock()

    def execute(self, program: Program) -> Answer:
        with self._lock:
            index, self._next = self._next, (self._next + 1) % len(self._servers)
        body = {
            "eval_id": new_eval_id(),
            "code": program.code,
            "language": "python",
            "timeout": program.timeout,
        }
        return self._servers[index].call("POST", "/execute", body=body)

    def close(self) -> None:
        for server in self._servers:
            server.close()


def _expect(answer: Answer, status_code: int, what: str) -> None:
    if answer.status_code != status_code:
        raise RuntimeError(f"{what} answered {answer.status_code}: {answer.body}")
