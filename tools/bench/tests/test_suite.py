"""The suite's environment and honcho's process list (pure parts of starting the suite)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from crucible_bench.suite import (
    PORT_VARIABLES,
    PROCFILE,
    free_ports,
    quiet_procfile,
    started_pids,
    suite_environment,
)

PORTS = {name: 20000 + index for index, name in enumerate(PORT_VARIABLES)}


def environment(**inherited: str) -> dict[str, str]:
    return suite_environment(
        root=Path("/repo"),
        run_dir=Path("/repo/.bench/run"),
        ports=PORTS,
        operator_token="t" * 32,
        inherited=inherited,
    )


def test_the_wiring_is_the_benchs_own_whatever_the_caller_exported():
    env = environment(
        REDIS_URL="redis://127.0.0.1:6381/0",
        DATABASE_URL="sqlite:///.run/crucible.db",
        GATEWAY_PORT="8000",
        RUN_DIR="/repo/.run",
    )
    assert env["REDIS_URL"] == f"redis://127.0.0.1:{PORTS['STATE_REDIS_PORT']}/0"
    assert env["DATABASE_URL"] == "sqlite:////repo/.bench/run/crucible.db"
    assert env["GATEWAY_PORT"] == str(PORTS["GATEWAY_PORT"])
    assert env["RUN_DIR"] == "/repo/.bench/run"


def test_urls_point_at_the_benchs_ports_as_run_sh_wires_them():
    env = environment()
    broker = PORTS["BROKER_REDIS_PORT"]
    assert env["CELERY_BROKER_URL"] == f"redis://127.0.0.1:{broker}/0"
    assert env["CELERY_RESULT_BACKEND"] == f"redis://127.0.0.1:{broker}/1"
    assert env["LEGACY_EXECUTOR_URL"] == f"http://127.0.0.1:{PORTS['EXECUTOR_1_PORT']}"
    assert env["EXECUTOR_SERVICE_URL"] == (
        f"http://127.0.0.1:{PORTS['EXECUTOR_2_PORT']},http://127.0.0.1:{PORTS['EXECUTOR_3_PORT']}"
    )
    assert env["VENV"] == "/repo/.venv"


def test_tunables_come_from_the_caller_as_with_make_run():
    assert environment()["LOG_LEVEL"] == "INFO"
    # As run.sh: consumers at 1.5x their path's slots (two executors for Celery, one legacy).
    sized = environment(EXECUTOR_SLOTS="2")
    assert (sized["CELERY_CONCURRENCY"], sized["QUEUE_WORKER_CONCURRENCY"]) == ("6", "3")
    env = environment(CELERY_CONCURRENCY="4", LOG_LEVEL="WARNING", EXECUTOR_SLOTS="3")
    assert (env["CELERY_CONCURRENCY"], env["LOG_LEVEL"], env["EXECUTOR_SLOTS"]) == (
        "4",
        "WARNING",
        "3",
    )


def test_routing_starts_on_legacy_with_celery_enabled_and_an_operator_token():
    env = environment(CELERY_PERCENTAGE="0.5", OPERATOR_TOKEN="someone-elses")
    assert (env["CELERY_ENABLED"], env["CELERY_PERCENTAGE"], env["MIGRATION_MODE"]) == (
        "true",
        "0.0",
        "split",
    )
    assert env["OPERATOR_TOKEN"] == "t" * 32


def test_started_pids_from_honchos_log():
    log = (
        "00:08:55 system          | storage.1 started (pid=25941)\n"
        "00:08:55 redis-state.1   | 25950:C Redis version=7.0.15 just started\n"
        "00:08:55 system          | celery-worker.1 started (pid=25965)\n"
        "00:08:56 system          | gateway started (pid=25975)\n"
    )
    assert started_pids(log) == {"storage": 25941, "celery-worker": 25965, "gateway": 25975}


def test_free_ports_are_distinct():
    ports = free_ports(9)
    assert len(set(ports)) == 9


def test_storage_uses_sqlite_under_the_run_dir_unless_given_another_database():
    url = "postgresql+psycopg://postgres@127.0.0.1:5999/crucible_bench_1"
    env = suite_environment(
        root=Path("/repo"),
        run_dir=Path("/repo/.bench/run"),
        ports=PORTS,
        operator_token="t" * 32,
        inherited={"DATABASE_URL": "sqlite:///elsewhere.db"},
        database_url=url,
    )
    assert env["DATABASE_URL"] == url


PROCFILE_TEXT = """# a comment: kept
redis-broker: exec scripts/supervise.sh redis-broker redis-server --port $BROKER_REDIS_PORT

executor-1: EXECUTOR_ID=executor-1 exec scripts/supervise.sh executor-1 python -m x
"""


def test_quiet_procfile_sends_each_process_to_its_own_log_and_keeps_its_command():
    quiet = quiet_procfile(PROCFILE_TEXT).splitlines()
    assert quiet[0] == "# a comment: kept"
    assert quiet[1] == (
        'redis-broker: exec >>"$RUN_DIR/logs/redis-broker.log" 2>&1; '
        "exec scripts/supervise.sh redis-broker redis-server --port $BROKER_REDIS_PORT"
    )
    assert quiet[2] == ""
    assert quiet[3] == (
        'executor-1: exec >>"$RUN_DIR/logs/executor-1.log" 2>&1; '
        "EXECUTOR_ID=executor-1 exec scripts/supervise.sh executor-1 python -m x"
    )


def test_the_real_procfile_keeps_every_process_under_honcho(tmp_path: Path):
    from honcho.environ import parse_procfile

    text = (Path(__file__).parents[3] / PROCFILE).read_text()
    original = parse_procfile(text).processes
    quiet = parse_procfile(quiet_procfile(text)).processes
    assert list(quiet) == list(original)
    assert all(quiet[name].endswith(original[name]) for name in original)


def test_a_quiet_command_prints_nothing_to_honcho_and_everything_to_its_log(tmp_path: Path):
    (tmp_path / "logs").mkdir()
    line = quiet_procfile("hello: echo out; echo err >&2; exec sh -c 'echo $$'\n").strip()
    command = line.partition(": ")[2]
    # honcho runs each command with /bin/sh -c, as here
    shell = subprocess.Popen(
        ["/bin/sh", "-c", command],
        env={"RUN_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = shell.communicate(timeout=10)
    assert (stdout, stderr) == (b"", b"")
    lines = (tmp_path / "logs" / "hello.log").read_text().splitlines()
    # the shell honcho started is the process that runs the command (its pid is honcho's)
    assert lines == ["out", "err", str(shell.pid)]
