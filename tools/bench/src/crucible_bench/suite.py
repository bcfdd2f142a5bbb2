"""The suite under test: the processes of `make run` (deploy/Procfile.local under honcho), started on
free ports with a run directory of the bench's own, and stopped whatever happens.

scripts/run.sh cannot be reused as it is: it fixes RUN_DIR to `.run`, where a developer's own
`make run` keeps its Redis append-only files and its SQLite database. So the
bench builds the same environment (`suite_environment`, which mirrors run.sh) with RUN_DIR under
`.bench/` and starts honcho on the same Procfile itself.

honcho relays every line its processes print through pipes (the Celery worker alone prints two
INFO lines per task), which would put the relay in the hot path of the CPU measured. So honcho
runs `quiet_procfile` of the same Procfile: the same commands, each with its output sent to a
log file of its own under `$RUN_DIR/logs/`; honcho only launches, relays signals and stops.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PROCFILE = Path("deploy/Procfile.local")

# Every port run.sh lets the environment move, and so every port the bench picks itself.
PORT_VARIABLES = (
    "GATEWAY_PORT",
    "QUEUE_SERVICE_PORT",
    "STORAGE_PORT",
    "EXECUTOR_1_PORT",
    "EXECUTOR_2_PORT",
    "EXECUTOR_3_PORT",
    "FLOWER_PORT",
    "BROKER_REDIS_PORT",
    "STATE_REDIS_PORT",
)
# Wiring the bench always sets itself: inherited values could point it at someone else's suite.
WIRING_VARIABLES = (
    *PORT_VARIABLES,
    "VENV",
    "RUN_DIR",
    "BIND_HOST",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "DEAD_LETTER_REDIS_URL",
    "REDIS_URL",
    "STORAGE_SERVICE_URL",
    "QUEUE_SERVICE_URL",
    "LEGACY_EXECUTOR_URL",
    "EXECUTOR_SERVICE_URL",
    "DATABASE_URL",
    "OPERATOR_TOKEN",
    "MIGRATION_KEY_PREFIX",
)
# run.sh's defaults for the tunables; the caller's environment overrides each, as with make run.
TUNABLE_DEFAULTS = {
    "LOG_LEVEL": "INFO",
    "EXECUTION_NICE": "5",
    "FORCE_LEGACY_QUEUE": "false",
    "PYTHONUNBUFFERED": "1",
    # The bench measures the platform at its own rate, not the per-tenant rate limit.
    "RATE_LIMIT_PER_SECOND": "0",
    # Nor at one tenant's in-flight cap: at the highest offered rate a thousand may be queued.
    "TENANT_MAX_IN_FLIGHT": "100000",
    # Celery's task events off: Flower (still running) shows workers and queues, not tasks; the
    # events would cost the worker and Flower about 3 ms of CPU per evaluation between them.
    "CELERY_TASK_EVENTS": "false",
}
LOG_FOLDER = "logs"
HTTP_SERVICES = ("storage", "executor-1", "executor-2", "executor-3", "queue-service", "gateway")
_PROCESS_NAME = re.compile(r"[A-Za-z0-9_-]+")
_STARTED_LINE = re.compile(r"\|\s*(?P<name>[\w-]+)(?:\.\d+)? started \(pid=(?P<pid>\d+)\)")


def consumer_defaults(env: Mapping[str, str]) -> dict[str, str]:
    """run.sh's consumer sizes: 1.5x their path's executor slots (EXECUTOR_SLOTS, else the
    cores, per executor; the Celery path has two executors, the legacy path one)."""
    slots = int(env.get("EXECUTOR_SLOTS") or os.cpu_count() or 1)
    return {
        "CELERY_CONCURRENCY": str(3 * slots),
        "QUEUE_WORKER_CONCURRENCY": str(slots + slots // 2),
    }


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free right now (held open together, so none is handed out twice)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def suite_environment(
    *,
    root: Path,
    run_dir: Path,
    ports: Mapping[str, int],
    operator_token: str,
    inherited: Mapping[str, str],
    database_url: str | None = None,
) -> dict[str, str]:
    """The environment run.sh would give the Procfile, on `ports` and with RUN_DIR=`run_dir`.

    Storage's database is SQLite under `run_dir`, as with make run, unless `database_url` names
    another (the bench's private PostgreSQL with `--postgres`).

    Tunables (CELERY_CONCURRENCY, LOG_LEVEL, EXECUTOR_SLOTS, QUEUE_WORKER_*, INTERNAL_API_KEY,
    ...) come from `inherited` as they would for make run; the wiring never does. Routing starts
    on the legacy path with Celery enabled, so that the admin API can move it per phase.
    """
    env = {key: value for key, value in inherited.items() if key not in WIRING_VARIABLES}
    for key, default in TUNABLE_DEFAULTS.items():
        env.setdefault(key, default)
    env.update({key: value for key, value in consumer_defaults(env).items() if key not in env})
    local = "http://127.0.0.1"
    broker = f"redis://127.0.0.1:{ports['BROKER_REDIS_PORT']}"
    env.update({name: str(ports[name]) for name in PORT_VARIABLES})
    env.update(
        {
            "VENV": str(root / ".venv"),
            "RUN_DIR": str(run_dir),
            "BIND_HOST": "127.0.0.1",
            "CELERY_BROKER_URL": f"{broker}/0",
            "CELERY_RESULT_BACKEND": f"{broker}/1",
            "DEAD_LETTER_REDIS_URL": f"{broker}/0",
            "REDIS_URL": f"redis://127.0.0.1:{ports['STATE_REDIS_PORT']}/0",
            "STORAGE_SERVICE_URL": f"{local}:{ports['STORAGE_PORT']}",
            "QUEUE_SERVICE_URL": f"{local}:{ports['QUEUE_SERVICE_PORT']}",
            "LEGACY_EXECUTOR_URL": f"{local}:{ports['EXECUTOR_1_PORT']}",
            "EXECUTOR_SERVICE_URL": (
                f"{local}:{ports['EXECUTOR_2_PORT']},{local}:{ports['EXECUTOR_3_PORT']}"
            ),
            "DATABASE_URL": database_url or f"sqlite:///{run_dir}/crucible.db",
            "OPERATOR_TOKEN": operator_token,
            "CELERY_ENABLED": "true",
            "CELERY_PERCENTAGE": "0.0",
            "MIGRATION_MODE": "split",
        }
    )
    return env


def quiet_procfile(text: str) -> str:
    """`text` (a Procfile) with each process's output going to `$RUN_DIR/logs/<name>.log`.

    Each command is prefixed with `exec >>file 2>&1;`, which redirects the shell honcho starts
    before the command runs, so the command itself (and the pid honcho reports) are unchanged.
    Comments and blank lines are kept as they are.
    """
    lines = []
    for line in text.splitlines():
        name, colon, command = line.partition(":")
        if line.lstrip().startswith("#") or not colon or not _PROCESS_NAME.fullmatch(name):
            lines.append(line)
            continue
        log = f'"$RUN_DIR/{LOG_FOLDER}/{name}.log"'
        lines.append(f"{name}: exec >>{log} 2>&1; {command.strip()}")
    return "\n".join(lines) + "\n"


def started_pids(log_text: str) -> dict[str, int]:
    """Procfile name -> pid, from honcho's "<name> started (pid=N)" lines (the latest wins)."""
    return {match["name"]: int(match["pid"]) for match in _STARTED_LINE.finditer(log_text)}


@dataclass
class Suite:
    """One running suite: its environment, honcho, and where each service answers."""

    root: Path
    run_dir: Path
    env: dict[str, str]
    honcho: subprocess.Popen | None = None
    # Processes outside the Procfile whose CPU counts as the suite's (the bench's PostgreSQL).
    extra_roots: dict[str, int] = field(default_factory=dict)
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.run_dir / "suite.log"

    def url(self, name: str) -> str:
        port_of = {
            "gateway": "GATEWAY_PORT",
            "storage": "STORAGE_PORT",
            "queue-service": "QUEUE_SERVICE_PORT",
            "executor-1": "EXECUTOR_1_PORT",
            "executor-2": "EXECUTOR_2_PORT",
            "executor-3": "EXECUTOR_3_PORT",
            "flower": "FLOWER_PORT",
        }
        return f"http://127.0.0.1:{self.env[port_of[name]]}"

    @property
    def celery_executor_urls(self) -> list[str]:
        return self.env["EXECUTOR_SERVICE_URL"].split(",")

    @property
    def state_redis_url(self) -> str:
        return self.env["REDIS_URL"]

    @property
    def operator_token(self) -> str:
        return self.env["OPERATOR_TOKEN"]

    @property
    def internal_key(self) -> str | None:
        return self.env.get("INTERNAL_API_KEY") or None

    def start(self) -> None:
        for folder in ("redis-broker", "redis-state", LOG_FOLDER):
            (self.run_dir / folder).mkdir(parents=True, exist_ok=True)
        procfile = self.run_dir / "Procfile"
        procfile.write_text(quiet_procfile((self.root / PROCFILE).read_text()))
        argv = [
            str(self.root / ".venv/bin/honcho"),
            "--procfile",
            str(procfile),
            "--app-root",
            str(self.root),
            "start",
        ]
        with self.log_path.open("ab") as log:
            # Its own session: a Ctrl-C reaches the driver, which then stops honcho in order.
            self.honcho = subprocess.Popen(
                argv,
                cwd=self.root,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.honcho is not None and self.honcho.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        """The end of honcho's log and of each process's own log (for a failure's message)."""
        parts = []
        for path in [self.log_path, *sorted((self.run_dir / LOG_FOLDER).glob("*.log"))]:
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace")[-chars:].strip()
                if text:
                    parts.append(f"--- {path.name}\n{text}")
        return "\n".join(parts)

    def pids(self) -> dict[str, int]:
        """The Procfile processes honcho started, by name."""
        with contextlib.suppress(OSError):
            return started_pids(self.log_path.read_text(errors="replace"))
        return {}

    def wait_healthy(self, timeout: float = 90) -> None:
        """Until every HTTP service answers /health 200; RuntimeError (with the log) otherwise."""
        pending = list(HTTP_SERVICES)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1) as http:
            while pending:
                if not self.alive():
                    raise RuntimeError(f"the suite stopped while starting:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"not healthy after {timeout}s: {', '.join(pending)}\n{self.log_tail()}"
                    )
                pending = [name for name in pending if not _healthy(http, self.url(name))]
                if pending:
                    time.sleep(0.2)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM honcho, which stops every process; SIGKILL what is left after `timeout`."""
        if self.honcho is None:
            return
        children = self.pids()
        if self.alive():
            self.honcho.send_signal(signal.SIGTERM)
            try:
                self.honcho.wait(timeout)
            except subprocess.TimeoutExpired:
                self.honcho.kill()
                self.honcho.wait(5)
        # honcho puts every process in a session of its own: kill any group it left behind.
        for pid in children.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def _healthy(http: httpx.Client, url: str) -> bool:
    try:
        return http.get(f"{url}/health").status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def running_suite(
    *,
    root: Path,
    run_dir: Path,
    operator_token: str,
    inherited: Mapping[str, str],
    database_url: str | None = None,
    extra_roots: Mapping[str, int] | None = None,
) -> Iterator[Suite]:
    """A fresh suite (run_dir wiped first: a broker's append-only file would replay old tasks),
    healthy on entry, stopped on exit, also on an exception or Ctrl-C. `database_url`: storage's
    database when not the default SQLite (it must be empty); `extra_roots`: processes outside
    the Procfile counted as the suite's."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    ports = dict(zip(PORT_VARIABLES, free_ports(len(PORT_VARIABLES)), strict=True))
    env = suite_environment(
        root=root,
        run_dir=run_dir,
        ports=ports,
        operator_token=operator_token,
        inherited=inherited,
        database_url=database_url,
    )
    suite = Suite(root=root, run_dir=run_dir, env=env, extra_roots=dict(extra_roots or {}))
    try:
        suite.start()
        suite.wait_healthy()
        yield suite
    finally:
        suite.stop()
