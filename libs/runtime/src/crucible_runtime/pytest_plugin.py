"""pytest fixtures that start Crucible's real dependencies: redis-server, PostgreSQL, service processes.

Registered as a pytest11 entry point, so every test in the workspace has them. Nothing here is a
fake: each fixture starts (or connects to) the real program and waits until it answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from crucible_contracts.ids import EVAL_ID_REGEX
from crucible_contracts.settings import ServerSettings
from crucible_runtime.postgres import initdb_argv, pg_bin, server_argv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 30, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll `predicate` until it returns something truthy; that value is returned.

    Exceptions raised by the predicate count as "not yet". On the deadline, AssertionError names
    `what` and the last exception seen.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or predicate!r}; last error: {last!r}"
            )
        time.sleep(interval)


def wait_until_ended(storage: Any, eval_id: str, timeout: float = 30) -> Any:
    """Poll storage (a StorageClient) until the evaluation is terminal; returns its view."""

    def ended() -> Any:
        view = storage.get_evaluation(eval_id)
        return view if view.status.is_terminal() else None

    return wait_for(ended, timeout=timeout, what=f"eval {eval_id} to end")


# --- hostile input ------------------------------------------------------------------------------

# Values an eval_id must never be, by what each tries: a path, a forged log line, an id that is
# almost one, an id Python's `re` would let through ("$" matches before a final newline), text that
# only looks like digits, and a body-sized value.
HOSTILE_EVAL_IDS = {
    "path-traversal": "../../etc/passwd",
    "forged-log-line": "abc\nFAKE 2026 INFO forged",
    "33-hex": "a" * 33,
    "31-hex": "a" * 31,
    "uppercase-hex": "A" * 32,
    "trailing-newline": "a" * 32 + "\n",
    "blank": " ",
    "unicode": "\u00e9" * 32,
    "unicode-digits": "\u0661" * 32,
    "1-MiB": "a" * 2**20,
}
# A refusal must stay this short whatever was sent: the value is never echoed in full.
MAX_REFUSAL_BYTES = 2048


@pytest.fixture(params=list(HOSTILE_EVAL_IDS.values()), ids=list(HOSTILE_EVAL_IDS))
def hostile_eval_id(request: pytest.FixtureRequest) -> str:
    """Each of HOSTILE_EVAL_IDS in turn: a test taking this runs once per value."""
    return request.param


# The request head's cap of every service (ServerSettings.max_header_bytes' default).
HEAD_CAP: int = ServerSettings.model_fields["max_header_bytes"].default


def check_eval_id_refused(
    response: httpx.Response,
    *,
    sent: str,
    field: str = "eval_id",
    pattern: str = EVAL_ID_REGEX,
    in_path: bool = False,
) -> None:
    """Assert that `response` refuses the bad id `sent`: 422 `invalid_input` in the one error
    shape, its message naming `field` and `pattern`, the whole body short and free of `sent`.

    In a path, a value with a `/` spans several segments, so no route has a place for it: the
    answer is then 404 `not_found` in the same shape (nothing reached a handler either way); and
    a path over the request head's cap (`crucible_runtime.serve`, 16 KiB) is 431
    `header_too_large` before any route is looked at.
    """
    assert len(response.content) <= MAX_REFUSAL_BYTES, response.content[:500]
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}, error
    if in_path and len(sent.encode()) > HEAD_CAP:
        assert (response.status_code, error["code"]) == (431, "header_too_large"), error
        return
    if in_path and "/" in sent:
        assert (response.status_code, error["code"]) == (404, "not_found"), error
        return
    assert (response.status_code, error["code"]) == (422, "invalid_input"), error
    assert field in error["message"] and pattern in error["message"], error["message"]
    if len(sent.strip()) > 1:
        assert sent not in response.text and json.dumps(sent)[1:-1] not in response.text


@pytest.fixture
def eval_id_refused() -> Callable[..., None]:
    """`check_eval_id_refused`, for tests (which cannot import helpers: see STYLE.md)."""
    return check_eval_id_refused


# --- processes ---------------------------------------------------------------------------------


@dataclass
class ManagedProcess:
    """A child process started by a fixture, its log file, and how to stop it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None
    url: str | None = None
    port: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def start(self) -> ManagedProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logs(self, tail: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-tail:]
        return ""

    def signal(self, signum: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signum)

    def stop(self, timeout: float = 10) -> None:
        if not self.alive():
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, not a shutdown."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(5)


class ProcessStarter:
    """Starts processes for one test (or session) and stops all of them at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[ManagedProcess] = []

    def process(
        self,
        name: str,
        argv: list[str],
        *,
        env: Mapping[str, str] | None = None,
        ready: Callable[[ManagedProcess], Any] | None = None,
        ready_timeout: float = 30,
    ) -> ManagedProcess:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        log_path = self.log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        managed = ManagedProcess(name=name, argv=argv, env=full_env, log_path=log_path).start()
        self.started.append(managed)
        if ready is not None:
            # Kept for `restart`, which waits for the same sign of readiness.
            managed.extra["ready"] = (ready, ready_timeout)
            self.wait_ready(managed, ready, ready_timeout)
        return managed

    def wait_ready(
        self, managed: ManagedProcess, ready: Callable[[ManagedProcess], Any], timeout: float = 30
    ) -> None:
        def check() -> Any:
            if not managed.alive():
                raise AssertionError(f"{managed.name} exited early:\n{managed.logs()}")
            return ready(managed)

        try:
            wait_for(check, timeout=timeout, what=f"{managed.name} to be ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- {managed.name} log ---\n{managed.logs()}") from None

    def service(
        self,
        app: str,
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        health_path: str = "/health",
    ) -> ManagedProcess:
        """Run `app` (a `module:create_app` factory) as production does (`crucible_runtime.serve`)
        on a free port; wait for health."""
        port = port or free_port()
        argv = [
            sys.executable,
            "-m",
            "crucible_runtime.serve",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        managed = self.process(name or app.split(":")[0], argv, env=env)
        managed.port, managed.url = port, f"http://127.0.0.1:{port}"
        self.wait_ready(
            managed, lambda m: httpx.get(m.url + health_path, timeout=1).status_code == 200
        )
        return managed

    def restart(self, managed: ManagedProcess, health_path: str = "/health") -> ManagedProcess:
        """Stop (if alive) and start `managed` again; wait as it was first waited for."""
        managed.stop()
        managed.start()
        if "ready" in managed.extra:
            ready, timeout = managed.extra["ready"]
            self.wait_ready(managed, ready, timeout)
        elif managed.url:
            self.wait_ready(
                managed, lambda m: httpx.get(m.url + health_path, timeout=1).status_code == 200
            )
        return managed

    def stop_all(self) -> None:
        for managed in reversed(self.started):
            managed.stop()


@pytest.fixture
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessStarter]:
    """Start real processes for this test; every one is stopped when the test ends."""
    starter = ProcessStarter(tmp_path_factory.mktemp("logs"))
    yield starter
    starter.stop_all()


@pytest.fixture(scope="session")
def session_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessStarter]:
    """Like `processes`, for processes shared by the whole session."""
    starter = ProcessStarter(tmp_path_factory.mktemp("session-logs"))
    yield starter
    starter.stop_all()


# --- Redis -------------------------------------------------------------------------------------


def _docker_engine_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


def start_redis_server(
    starter: ProcessStarter, *, port: int | None = None, appendonly: bool = False
) -> ManagedProcess:
    """A private `redis-server` on a free loopback port, keeping nothing on disk unless
    `appendonly`: then it keeps an append-only file, as production's do, and a restart
    (`ProcessStarter.restart`, same directory) finds its data again instead of starting empty."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run `make deps` (apt-get install redis-server)")
    port = port or free_port()
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes" if appendonly else "no",
        "--dir",
        tempfile.mkdtemp(prefix="crucible-redis-"),
    ]

    def ping(_: ManagedProcess) -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    managed = starter.process(f"redis-{port}", argv, ready=ping)
    managed.port, managed.url = port, f"redis://127.0.0.1:{port}/0"
    return managed


@pytest.fixture(scope="session")
def redis_url(session_processes: ProcessStarter) -> Iterator[str]:
    """URL of a Redis for this session: TEST_REDIS_URL, else testcontainers when a Docker engine
    answers, else a private redis-server process."""
    if os.environ.get("TEST_REDIS_URL"):
        yield os.environ["TEST_REDIS_URL"]
        return
    if _docker_engine_answers():
        from testcontainers.redis import RedisContainer

        with RedisContainer() as container:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(6379)}/0"
        return
    yield start_redis_server(session_processes).url


@pytest.fixture
def redis_server(processes: ProcessStarter) -> ManagedProcess:
    """A redis-server owned by this test alone, which the test may stop and start (fault tests)."""
    return start_redis_server(processes)


# --- PostgreSQL --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server_url(session_processes: ProcessStarter) -> Iterator[str]:
    """SQLAlchemy URL of a PostgreSQL server: TEST_POSTGRES_URL, else a private cluster made with
    initdb on a free port for this session, stopped and deleted (about 55 MB) when it ends.

    The cluster lives in a directory of its own under the system's temporary folder: pytest's
    tmp_path folders are private to root, and the server runs as the postgres user."""
    if os.environ.get("TEST_POSTGRES_URL"):
        yield os.environ["TEST_POSTGRES_URL"]
        return
    initdb, postgres = pg_bin("initdb"), pg_bin("postgres")
    if not (initdb and postgres):
        pytest.fail("PostgreSQL is not installed: run `make deps` (apt-get install postgresql)")
    data = Path(tempfile.mkdtemp(prefix="crucible-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(initdb_argv(initdb, data), check=True, capture_output=True)
    port = free_port()
    argv = server_argv(postgres, data, port)

    def accepts(_: ManagedProcess) -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    server = session_processes.process(f"postgres-{port}", argv, ready=accepts)
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    try:
        wait_for(lambda: _pg_connects(url), timeout=30, what="postgres to accept logins")
        yield url
    finally:
        # SIGINT is PostgreSQL's fast shutdown: it does not wait for clients to disconnect.
        server.signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(10)
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def _pg_connects(url: str) -> bool:
    import psycopg

    with psycopg.connect(url.replace("+psycopg", ""), connect_timeout=2):
        return True


@contextlib.contextmanager
def postgres_database(
    server_url: str, prefix: str = "crucible_test", *, template: str | None = None
) -> Iterator[str]:
    """A fresh database on the PostgreSQL server at `server_url`, dropped on exit (with whatever
    is still connected to it): empty, or a copy of the database at URL `template` (which nothing
    may be connected to meanwhile)."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = server_url.replace("+psycopg", "")
    copy = f' TEMPLATE "{template.rsplit("/", 1)[1]}"' if template else ""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    try:
        yield f"{server_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test, dropped afterwards."""
    with postgres_database(postgres_server_url) as url:
        yield url
