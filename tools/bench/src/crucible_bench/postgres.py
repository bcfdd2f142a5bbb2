"""`--postgres`: storage on a private PostgreSQL cluster (initdb on a free port under the bench
dir), a fresh database for each suite, the cluster stopped and deleted afterwards.

The cluster is the test plugin's recipe (`crucible_runtime.postgres`): trust authentication on
127.0.0.1 only, fsync off, and the server run as the postgres user when the bench runs as root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from crucible_bench.suite import free_ports
from crucible_runtime.postgres import initdb_argv, pg_bin, server_argv

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


@dataclass
class Cluster:
    """A running private cluster: its data folder, port and server process."""

    data: Path
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the maintenance database `postgres`."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def pid(self) -> int:
        """The root of the server's process tree (runuser's, when run as root): its CPU."""
        return self.process.pid

    def sql(self, statement: str, *, database: str = "postgres") -> subprocess.CompletedProcess:
        """Run one statement with psql (the bench needs no database driver of its own)."""
        return subprocess.run(
            [
                pg_bin("psql") or "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atqc",
                statement,
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PGCONNECT_TIMEOUT": "2"},
        )

    def accepts_logins(self) -> bool:
        return self.sql("SELECT 1").returncode == 0


@contextlib.contextmanager
def private_cluster(folder: Path) -> Iterator[Cluster]:
    """A new cluster in `folder` (emptied first), accepting logins on entry; on exit (also on an
    exception or Ctrl-C) stopped with a fast shutdown, killed if it does not stop, and deleted.

    `folder`'s parents must be traversable by the postgres user when running as root.
    """
    initdb, postgres = pg_bin("initdb"), pg_bin("postgres")
    if not (initdb and postgres):
        raise RuntimeError("--postgres: PostgreSQL is not installed (make deps installs it)")
    folder = folder.resolve()  # the server changes into its data folder: relative paths break
    shutil.rmtree(folder, ignore_errors=True)
    data = folder / "data"
    data.mkdir(parents=True)
    if os.geteuid() == 0:
        for path in (folder, data):
            shutil.chown(path, "postgres", "postgres")
    init = subprocess.run(initdb_argv(initdb, data), capture_output=True, text=True)
    if init.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb failed ({init.returncode}): {init.stderr[-2000:]}")
    port = free_ports(1)[0]
    argv = server_argv(postgres, data, port)
    log = (folder / "server.log").open("ab")
    try:
        # A session of its own: a Ctrl-C reaches the driver, which then stops the server.
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        log.close()
    cluster = Cluster(data=data, port=port, process=process)
    try:
        _wait_for_logins(cluster, folder)
        yield cluster
    finally:
        _stop(cluster)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for_logins(cluster: Cluster, folder: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not cluster.accepts_logins():
        if cluster.process.poll() is not None or time.monotonic() > deadline:
            log = (folder / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"PostgreSQL did not start on port {cluster.port}:\n{log}")
        time.sleep(0.1)


def _stop(cluster: Cluster) -> None:
    """SIGINT to the postmaster (PostgreSQL's fast shutdown: it does not wait for clients),
    then SIGKILL to the whole process group if it has not ended within STOP_TIMEOUT."""
    if cluster.process.poll() is None:
        postmaster = _postmaster_pid(cluster.data) or cluster.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(postmaster, signal.SIGINT)
        try:
            cluster.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(cluster.process.pid, signal.SIGKILL)
            cluster.process.wait(5)


def _postmaster_pid(data: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((data / "postmaster.pid").read_text().splitlines()[0])
    return None


def server_version(cluster: Cluster) -> str:
    """The server's version, e.g. "15.10"; "?" when it cannot be read."""
    done = cluster.sql("SHOW server_version")
    return done.stdout.strip().split()[0] if done.returncode == 0 and done.stdout.strip() else "?"


@contextlib.contextmanager
def fresh_database(cluster: Cluster) -> Iterator[str]:
    """A new, empty database on `cluster` for one suite; its SQLAlchemy URL. Dropped on exit,
    with whatever is still connected to it."""
    name = f"crucible_bench_{uuid.uuid4().hex[:12]}"
    _check(cluster.sql(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{cluster.url.rsplit('/', 1)[0]}/{name}"
    finally:
        if cluster.process.poll() is None:
            _check(cluster.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _check(done: subprocess.CompletedProcess) -> None:
    if done.returncode != 0:
        raise RuntimeError(f"psql {done.args[-1]!r} failed: {done.stderr.strip()}")
