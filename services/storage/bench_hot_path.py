"""Storage's CPU per evaluation on its hot path, measured on a real storage process.

    .venv/bin/python services/storage/bench_hot_path.py [-n 500] [--postgres] [--shadow]
        [--no-read] [--create-only] [--no-redis] [--profile out.svg]

Starts redis-server (storage publishes its events there, as in production) and storage
(`crucible_runtime.serve`, SQLite in a temporary folder, or a private PostgreSQL cluster with
`--postgres`), then drives `n` evaluations through exactly the calls one Celery evaluation makes
of storage: create (the gateway), run `running` and run completed with its output (the worker),
one read of the finished evaluation (the client, through the gateway). `--shadow` creates the shadow
run with the evaluation (one call, as the gateway does) and adds its two reports; `--no-read` leaves the read out (a client that took the result
from the status event), `--create-only` measures creations alone. Prints storage's CPU (utime + stime from /proc/<pid>/stat)
per evaluation over the measured calls, after a warm-up. `--profile` records the measured part
with py-spy (it must be on PATH or in the venv). KEEP=1 keeps the temporary folder (logs).
To measure another checkout's storage, put its `services/storage/src` first on PYTHONPATH.

A tool for developers, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import EvaluationCreate, Program, RunUpdate
from crucible_contracts.names import Backend, Role
from crucible_contracts.status import Status
from crucible_runtime.clients import StorageClient
from crucible_runtime.pytest_plugin import (
    ManagedProcess,
    ProcessStarter,
    free_port,
    start_redis_server,
    wait_for,
)

APP = "crucible_storage.main:create_app"
PROGRAM = Program(code="print(1)", language="python", timeout=5)
WARM_UP = 50


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid`, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_evaluation(
    storage: StorageClient, *, shadow: bool = False, read: bool = True, create_only: bool = False
) -> None:
    """The calls one Celery evaluation of print(1) makes of storage, in order."""
    eval_id = new_eval_id()
    storage.create_evaluation(
        EvaluationCreate(
            eval_id=eval_id,
            program=PROGRAM,
            backend=Backend.CELERY,
            tenant="default",
            max_in_flight=1000,
            shadow_backend=Backend.LEGACY if shadow else None,
        )
    )
    if create_only:
        return
    roles = [Role.PRIMARY, Role.SHADOW] if shadow else [Role.PRIMARY]
    for role in roles:
        storage.update_run(eval_id, role, RunUpdate(status=Status.RUNNING, attempts=1))
        storage.update_run(
            eval_id,
            role,
            RunUpdate(
                status=Status.COMPLETED,
                executor_id="executor-bench",
                exit_code=0,
                output="1\n",
                error="",
                output_truncated=False,
                error_truncated=False,
                runtime_ms=12.5,
            ),
        )
    if read:
        storage.get_evaluation(eval_id, tenant="default")


def start_postgres(starter: ProcessStarter, folder: Path) -> str:
    """A private PostgreSQL cluster on a free port (as the pytest plugin makes one); its URL."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    if not bins:
        sys.exit("PostgreSQL is not installed: run `make deps`")
    data = folder / "pg"
    data.mkdir()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(folder, "postgres", "postgres")
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        [*as_user, str(bins[0] / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    argv = [*as_user, str(bins[0] / "postgres"), "-D", str(data), "-p", str(port), "-k", str(data)]
    argv += ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
    starter.process("postgres", argv)
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def connects() -> bool:
        import psycopg

        with psycopg.connect(url.replace("+psycopg", ""), connect_timeout=2):
            return True

    wait_for(connects, timeout=30, what="postgres to accept logins")
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=500, help="evaluations measured")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--shadow", action="store_true", help="add a shadow run to each")
    parser.add_argument("--no-redis", action="store_true", help="publish no events")
    parser.add_argument(
        "--no-read", action="store_true", help="no read at the end (the client used the event)"
    )
    parser.add_argument("--create-only", action="store_true", help="the submit-only phase")
    parser.add_argument("--profile", metavar="OUT", help="py-spy record to OUT (svg or txt)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="crucible-hotbench-"))
    starter = ProcessStarter(folder)
    try:
        if args.postgres:
            database_url = start_postgres(starter, folder)
        else:
            database_url = f"sqlite:///{folder / 'crucible.db'}"
        redis_url = "" if args.no_redis else start_redis_server(starter).url
        env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "INTERNAL_API_KEY": ""}
        storage_process = starter.service(APP, name="storage", env=env)
        run(storage_process, args)
    finally:
        for managed in reversed(starter.started):
            if managed.name == "postgres":
                managed.signal(signal.SIGINT)  # fast shutdown
            managed.stop()
        if os.environ.get("KEEP"):
            print(folder)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def run(storage_process: ManagedProcess, args: argparse.Namespace) -> None:
    assert storage_process.proc is not None and storage_process.url is not None
    pid = storage_process.proc.pid  # serve runs uvicorn in-process: no reloader, no workers
    storage = StorageClient(storage_process.url)
    calls = {"shadow": args.shadow, "read": not args.no_read, "create_only": args.create_only}
    for _ in range(WARM_UP):
        one_evaluation(storage, **calls)
    profiler = _start_profiler(pid, args.profile) if args.profile else None
    before, started = cpu_seconds(pid), time.monotonic()
    for _ in range(args.n):
        one_evaluation(storage, **calls)
    cpu, wall = cpu_seconds(pid) - before, time.monotonic() - started
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(60)
    storage.close()
    database = "postgresql" if args.postgres else "sqlite"
    flags = [name for name in ("shadow", "no_read", "create_only") if getattr(args, name)]
    flags += [] if args.no_redis else ["redis"]
    print(
        f"storage on {database} ({', '.join(flags)}): {args.n} evaluations, "
        f"{cpu * 1000 / args.n:.2f} ms CPU per evaluation "
        f"(wall {wall * 1000 / args.n:.2f} ms per evaluation, client included)"
    )


def _start_profiler(pid: int, out: str) -> subprocess.Popen:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    fmt = "raw" if out.endswith(".txt") else "flamegraph"
    argv = [spy, "record", "--pid", str(pid), "--rate", "200", "--format", fmt, "-o", out]
    profiler = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)  # py-spy attaches
    return profiler


if __name__ == "__main__":
    main()
