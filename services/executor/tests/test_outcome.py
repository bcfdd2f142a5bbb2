"""Pure rules: how an ended program is classified, the limits table, the language table."""

from __future__ import annotations

import signal

import pytest

from crucible_contracts.status import Status
from crucible_executor.cgroups import CgroupLimits
from crucible_executor.config import Settings
from crucible_executor.languages import load_languages, parse_languages
from crucible_executor.limits import RunLimits
from crucible_executor.outcome import Ended, Outcome, classify, exit_code_of

LIMITS = RunLimits.for_run(Settings(), timeout=5)


@pytest.mark.parametrize(
    ("ended", "expected"),
    [
        (Ended(started=True, exit_code=0), Outcome(Status.COMPLETED, 0)),
        (Ended(started=True, exit_code=2), Outcome(Status.FAILED, 2)),
        (Ended(started=True, exit_code=137, killed=True), Outcome(Status.FAILED, None, "killed")),
        (
            Ended(started=True, exit_code=137, timed_out=True),
            Outcome(Status.TIMEOUT, None, "time_limit"),
        ),
        (
            Ended(started=False, exit_code=1),
            Outcome(Status.ERROR, None, "sandbox_failed"),
        ),
        (
            Ended(started=False, exit_code=None, timed_out=True),
            Outcome(Status.TIMEOUT, None, "time_limit"),
        ),
        # SIGXCPU counts as the CPU limit only once the run used RLIMIT_CPU's soft limit.
        (
            Ended(started=True, exit_code=152, cpu_seconds=6.0),
            Outcome(Status.TIMEOUT, 152, "cpu_time_limit"),
        ),
        (Ended(started=True, exit_code=152, cpu_seconds=0.1), Outcome(Status.FAILED, 152)),
        (
            Ended(started=True, exit_code=137, cpu_seconds=7.2),
            Outcome(Status.TIMEOUT, 137, "cpu_time_limit"),
        ),
        (Ended(started=True, exit_code=137, cpu_seconds=0.1), Outcome(Status.FAILED, 137)),
        # Memory: only the cgroup's OOM counter says so, whatever the program printed.
        (
            Ended(started=True, exit_code=137, oom_kills=1),
            Outcome(Status.FAILED, 137, "memory_limit"),
        ),
        (
            Ended(started=True, exit_code=1, oom_kills=1),
            Outcome(Status.FAILED, 1, "memory_limit"),
        ),
        (Ended(started=True, exit_code=0, oom_kills=1), Outcome(Status.COMPLETED, 0)),
        (Ended(started=True, exit_code=1), Outcome(Status.FAILED, 1)),
    ],
)
def test_how_an_ended_program_is_classified(ended, expected):
    assert classify(ended, limits=LIMITS) == expected


def test_a_signal_death_is_reported_as_128_plus_the_signal():
    assert exit_code_of(signal.SIGKILL) == 137  # a raw wait status of "killed by SIGKILL"
    assert exit_code_of(3 << 8) == 3


def test_rlimits_come_from_settings():
    limits = RunLimits.for_run(Settings(nproc=10, nofile=20, memory_mb=128), timeout=2.5)
    assert limits.rlimits() == {
        "cpu": (4, 5),
        "nproc": (10, 10),
        "fsize": (16 * 2**20, 16 * 2**20),
        "nofile": (20, 20),
        "core": (0, 0),
    }
    assert limits.rlimits(extra_nproc=5)["nproc"] == (15, 15)
    # Without a cgroup, RLIMIT_AS is the only memory bound left.
    assert limits.rlimits(cgroup=False)["as"] == (128 * 2**20, 128 * 2**20)
    # Runs get a quarter of the default CPU weight: the platform's own processes come first.
    assert limits.cgroup() == CgroupLimits(
        memory_bytes=128 * 2**20, pids=10, cpus=1.0, cpu_weight=25
    )


def test_settings_defaults_are_the_platform_limits():
    settings = Settings(_env_file=None)
    assert settings.memory_mb == 256
    assert settings.max_output_bytes == 2**20
    assert settings.max_code_bytes == 64 * 1024
    assert settings.max_timeout == 300
    assert settings.executor_slots >= 1


def test_the_language_table_is_data():
    languages = load_languages()
    python = languages["python"]
    assert python.command(memory_mb=256) == ["/usr/bin/python3", "-I", "-B", "main.py"]
    assert python.available
    added = parse_languages('[ruby]\nfile = "main.rb"\nargv = ["/nonexistent/ruby", "{file}"]\n')
    assert added["ruby"].command(memory_mb=64) == ["/nonexistent/ruby", "main.rb"]
    assert not added["ruby"].available


def test_javascript_declares_the_least_memory_it_starts_in():
    assert load_languages()["javascript"].min_memory_mb == 64
    assert load_languages()["python"].min_memory_mb == 0
