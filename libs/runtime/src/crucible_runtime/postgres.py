"""The recipe of a private PostgreSQL cluster, shared by the test plugin and the bench: where the
programs are, initdb's and the server's command lines (trust authentication, 127.0.0.1 only,
fsync off), run as the postgres user when the caller is root (initdb and postgres refuse root)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def pg_bin(name: str) -> str | None:
    """Path of a PostgreSQL program: on PATH, else the newest under /usr/lib/postgresql."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    return str(candidates[0]) if candidates else None


def as_postgres_user(argv: list[str]) -> list[str]:
    """`argv` run as the postgres user when this process is root, else as it is."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def initdb_argv(initdb: str, data: Path) -> list[str]:
    """Make a cluster in `data` (owned by the user it runs as), superuser `postgres`, UTF-8."""
    return as_postgres_user(
        [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
    )


def server_argv(postgres: str, data: Path, port: int) -> list[str]:
    """Serve the cluster in `data` on 127.0.0.1:`port`, its socket in `data`, without fsync."""
    return as_postgres_user(
        [
            postgres,
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(data),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=200",
        ]
    )
