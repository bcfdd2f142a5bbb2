"""The fixtures start real programs: a redis-server that answers, a PostgreSQL that takes queries."""

import socket

import psycopg

from crucible_runtime.pytest_plugin import wait_for


def _ping(url: str) -> bytes:
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16)


def test_session_redis_answers_ping(redis_url):
    assert _ping(redis_url).startswith(b"+PONG")


def test_private_redis_can_be_stopped_and_started(redis_server):
    assert _ping(redis_server.url).startswith(b"+PONG")
    redis_server.stop()
    assert not redis_server.alive()
    redis_server.start()
    assert wait_for(lambda: _ping(redis_server.url).startswith(b"+PONG"), timeout=10)


def test_postgres_database_is_fresh_and_usable(postgres_url):
    with psycopg.connect(postgres_url.replace("+psycopg", "")) as conn:
        tables = conn.execute(
            "select count(*) from information_schema.tables where table_schema = 'public'"
        ).fetchone()[0]
        assert tables == 0
        conn.execute("create table t (x int)")
        conn.execute("insert into t values (41)")
        assert conn.execute("select x + 1 from t").fetchone()[0] == 42
