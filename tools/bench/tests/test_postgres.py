"""`--postgres`: a real private cluster started, a database per suite, stopped and deleted."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from crucible_bench.postgres import fresh_database, private_cluster, server_version


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder the postgres user can reach (pytest's tmp_path is private to root)."""
    parent = Path(tempfile.mkdtemp(prefix="crucible-bench-pg-"))
    os.chmod(parent, 0o755)
    yield parent / "postgres"
    shutil.rmtree(parent, ignore_errors=True)


def test_the_cluster_serves_fresh_databases_and_is_deleted_afterwards(
    folder: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(folder.parent)  # as `--bench-dir .bench/try` gives it: a relative path
    with private_cluster(Path("postgres")) as cluster:
        process = cluster.process
        assert server_version(cluster)[0].isdigit()
        with fresh_database(cluster) as url:
            name = url.rsplit("/", 1)[1]
            assert url.startswith(f"postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/")
            done = cluster.sql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)", database=name)
            assert done.returncode == 0, done.stderr
            assert cluster.sql("SELECT count(*) FROM t", database=name).stdout.strip() == "1"
        listed = cluster.sql("SELECT datname FROM pg_database").stdout.split()
        assert name not in listed
    assert process.poll() is not None
    assert not folder.exists()


def test_the_cluster_is_stopped_and_deleted_when_the_body_fails(folder: Path):
    with pytest.raises(KeyboardInterrupt), private_cluster(folder) as cluster:
        process = cluster.process
        raise KeyboardInterrupt
    assert process.poll() is not None
    assert not folder.exists()
