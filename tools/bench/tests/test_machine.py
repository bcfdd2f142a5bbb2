"""Reading /proc: CPU ticks per process tree and the machine's busy share."""

from __future__ import annotations

from pathlib import Path

import pytest

from crucible_bench.machine import (
    CLOCK_TICKS,
    CpuSnapshot,
    cpu_between,
    describe,
    parse_stat,
    system_ticks,
    tree_ticks,
)


def stat_line(pid: int, comm: str, ppid: int, utime: int, stime: int, cutime=0, cstime=0) -> str:
    # Fields 3.. : state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime ...
    return (
        f"{pid} ({comm}) S {ppid} 1 1 0 -1 4194560 100 0 0 0 "
        f"{utime} {stime} {cutime} {cstime} 20 0 1 0 100 1000 10"
    )


def test_parse_stat_sums_own_and_reaped_childrens_ticks():
    assert parse_stat(stat_line(10, "python", 1, 5, 3, 7, 2)) == (1, 17)


def test_parse_stat_survives_a_command_name_with_spaces_and_parentheses():
    assert parse_stat(stat_line(10, "a (b) c)", 4, 1, 1)) == (4, 2)


def test_tree_ticks_counts_descendants_but_not_other_named_roots():
    table = {
        1: (0, 100),  # honcho
        2: (1, 5),  # honcho's relay helper
        10: (2, 50),  # gateway
        11: (10, 7),  # a child of the gateway
        20: (2, 30),  # storage
        99: (0, 1000),  # not ours
    }
    totals = tree_ticks(table, {"honcho": 1, "gateway": 10, "storage": 20})
    assert totals == {"honcho": 105, "gateway": 57, "storage": 30}


def test_a_root_that_has_exited_counts_nothing():
    assert tree_ticks({1: (0, 5)}, {"gone": 42}) == {"gone": 0}


def test_system_ticks_reads_busy_and_total(tmp_path: Path):
    # user nice system idle iowait irq softirq steal
    (tmp_path / "stat").write_text("cpu  100 0 50 800 50 0 0 0\ncpu0 1 2 3 4\n")
    assert system_ticks(tmp_path) == (150, 1000)


def test_cpu_between_two_snapshots():
    before = CpuSnapshot(at=10.0, driver=1.0, system=(100, 1000), processes={"gateway": 0})
    after = CpuSnapshot(
        at=12.0,
        driver=1.5,
        system=(250, 1200),
        processes={"gateway": 2 * CLOCK_TICKS, "storage": CLOCK_TICKS},
    )
    cpu = cpu_between(before, after)
    assert cpu["wall_s"] == pytest.approx(2.0)
    assert cpu["driver_cpu_s"] == pytest.approx(0.5)
    assert cpu["machine_busy_share"] == pytest.approx(0.75)
    # The machine was busier by less than the suite used: nobody else's share, never negative.
    assert cpu["others_cores"] == 0.0
    assert cpu["processes_cpu_s"] == {"gateway": 2.0, "storage": 1.0}
    assert list(cpu["processes_cpu_s"]) == ["gateway", "storage"]  # busiest first


def test_others_are_the_machines_busy_time_less_the_suites_and_the_drivers():
    before = CpuSnapshot(at=0.0, driver=0.0, system=(0, 0), processes={"gateway": 0})
    after = CpuSnapshot(
        at=2.0,
        driver=0.5,
        system=(4 * CLOCK_TICKS, 4 * CLOCK_TICKS),
        processes={"gateway": 2 * CLOCK_TICKS},
    )
    # 4 s busy over 2 s of wall time: 2 s the gateway, 0.5 s the driver, 1.5 s someone else.
    assert cpu_between(before, after)["others_cores"] == pytest.approx(0.75)


def test_describe_reads_cores_and_memory(tmp_path: Path):
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel name\t: Test CPU @ 1GHz\n")
    (tmp_path / "meminfo").write_text("MemTotal:        2097152 kB\nMemFree: 1 kB\n")
    machine = describe(tmp_path)
    assert machine["cpu_model"] == "Test CPU @ 1GHz"
    assert machine["memory_mib"] == 2048
    assert machine["cores"] >= 1
