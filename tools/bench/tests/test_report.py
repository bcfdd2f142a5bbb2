"""The Markdown report: every figure of a results document, and its place in docs/benchmarks.md."""

from __future__ import annotations

import pytest

from crucible_bench.report import BEGIN, END, render, replace_section
from crucible_bench.tables import triple


def summary(p50: float, p95: float, p99: float) -> dict:
    return {"count": 100, "p50": p50, "p95": p95, "p99": p99, "mean": p50, "max": p99 + 1}


def load(clients: str, consumers: str = "Celery -c 2") -> dict:
    return {"clients": clients, "consumers": consumers, "executor_slots": "2 per executor"}


def path(backend: str, window: int, rate: float) -> dict:
    return {
        "backend": backend,
        "window": window,
        "load": load(f"{window} (closed loop)"),
        "count": 200,
        "statuses": {"completed": 200},
        "noticed_by": {"event": 199, "poll": 1},
        "throughput_per_s": rate,
        "split": {
            "submit": summary(8.0, 12.0, 15.0),
            "queue_wait": summary(20.0, 30.0, 40.0),
            "run": summary(45.0, 60.0, 70.0),
            "visibility": summary(3.0, 5.0, 9.0),
            "end_to_end": summary(77.0, 99.0, 120.0),
        },
        "cpu": {
            "wall_s": 10.0,
            "driver_cpu_s": 0.5,
            "machine_busy_share": 0.9,
            "others_cores": 0.2,
            "processes_cpu_s": {"storage": 2.0, "gateway": 1.0},
        },
    }


RESULTS = {
    "machine": {
        "date": "2027-01-15T08:00:00+00:00",
        "cores": 2,
        "cpu_model": "Test CPU",
        "memory_mib": 24105,
        "kernel": "6.1",
        "python": "3.11.7",
        "load_average_at_start": [0.5, 0.4, 0.3],
    },
    "command": "BENCH_SECONDS=20 make bench",
    "settings": {
        "seconds": 20,
        "celery_concurrency": 2,
        "legacy_concurrency": 2,
        "saturation_factor": 4,
        "executor_slots": 2,
        "database": "PostgreSQL 15.10 (private cluster, fsync off)",
        "log_level": "INFO",
    },
    "duration_s": 321.0,
    "phases": {
        "bare_python": {"runs": 30, "latency_ms": summary(7.6, 9.0, 11.0)},
        "sandbox": {
            "concurrency": 2,
            "load": load("2 (closed loop)", "none: straight to the executors"),
            "executors": ["http://127.0.0.1:41001", "http://127.0.0.1:41002"],
            "count": 600,
            "statuses": {"completed": 600},
            "throughput_per_s": 30.0,
            "latency_ms": summary(60.0, 80.0, 90.0),
            "cpu": {
                "wall_s": 20.0,
                "driver_cpu_s": 0.4,
                "machine_busy_share": 0.95,
                "processes_cpu_s": {"executor-2": 6.0},
            },
        },
        "warm_sandbox": {
            "executor": "http://127.0.0.1:41001",
            "pause_s": 0.1,
            "load": load("1, 100 ms pause after each answer", "none: straight to one executor"),
            "count": 50,
            "statuses": {"completed": 50},
            "latency_ms": summary(22.8, 30.0, 35.0),
        },
        "celery": path("celery", 2, 12.5),
        "celery_saturated": path("celery", 8, 15.0),
        "submit_celery": {
            "load": load("open loop at 100/s, at most 128 in flight"),
            "rate": 100.0,
            "sent": 2000,
            "status_codes": {"202": 2000},
            "achieved_rate_per_s": 99.5,
            "latency_ms": summary(9.0, 14.0, 18.5),
            "send_lag_ms": summary(0.1, 0.3, 0.7),
            "backlog": {"ended": 500, "left": 1500},
            "cpu": {
                "wall_s": 20.0,
                "driver_cpu_s": 2.0,
                "machine_busy_share": 1.0,
                "processes_cpu_s": {"gateway": 8.0},
            },
        },
        "accept_only": {
            "backend": "celery",
            "paused": ["queue-worker", "celery-worker"],
            "paused_processes": 7,
            "step_seconds": 5.0,
            "max_p99_ms": 25.0,
            "load": load("open loop, at most 128 in flight", "paused (SIGSTOP)"),
            "highest_held_per_s": 150.0,
            "count": 1750,
            "steps": [
                {
                    "rate": 100.0,
                    "sent": 500,
                    "achieved_rate_per_s": 99.8,
                    "status_codes": {"202": 500},
                    "latency_ms": summary(8.0, 12.0, 14.0),
                    "send_lag_ms": summary(0.1, 0.2, 0.4),
                    "held": True,
                    "why_not": None,
                },
                {
                    "rate": 150.0,
                    "sent": 750,
                    "achieved_rate_per_s": 149.5,
                    "status_codes": {"202": 750},
                    "latency_ms": summary(9.0, 16.0, 21.0),
                    "send_lag_ms": summary(0.1, 0.2, 0.5),
                    "held": True,
                    "why_not": None,
                },
                {
                    "rate": 200.0,
                    "sent": 1000,
                    "achieved_rate_per_s": 198.0,
                    "status_codes": {"202": 1000},
                    "latency_ms": summary(12.0, 30.0, 41.0),
                    "send_lag_ms": summary(0.1, 0.3, 0.9),
                    "held": False,
                    "why_not": "p99 41.0 ms > 25 ms",
                },
            ],
            "cpu": {
                "wall_s": 15.0,
                "driver_cpu_s": 1.0,
                "machine_busy_share": 0.8,
                "processes_cpu_s": {
                    "gateway": 7.0,
                    "storage": 10.5,
                    "executor-1": 0.35,
                    "postgres": 3.5,
                },
            },
        },
        "mixed_celery": {
            **path("celery", 8, 4.5),
            "mix": {"quick": 7, "sleep": 2, "cpu": 1},
            "by_kind": {
                "cpu": {
                    "count": 9,
                    "statuses": {"completed": 9},
                    "split": {"end_to_end": summary(1500.0, 2000.0, 2100.0)},
                }
            },
        },
    },
    "ratios": {
        "celery": {
            "throughput_ratio": 0.5,
            "throughput_ratio_at_concurrency": 0.4167,
            "median_overhead_ms": 17.0,
        }
    },
    "targets": [
        {
            "name": "Warm sandbox `print(1)` median / bare spawn",
            "target": "<= 1x",
            "value": 3.0,
            "unit": "x",
            "met": False,
        },
        {
            "name": "Celery throughput / sandbox baseline (saturated)",
            "target": ">= 80%",
            "value": 0.5,
            "unit": "share",
            "met": False,
        },
        {
            "name": "Legacy throughput / sandbox baseline (saturated)",
            "target": "reported",
            "value": 0.45,
            "unit": "share",
            "met": None,
        },
        {
            "name": "Celery median overhead, 2 in flight",
            "target": "<= 15 ms",
            "value": 17.0,
            "unit": "ms",
            "met": False,
        },
        {
            "name": "Gateway submit p99, celery at 100/s",
            "target": "<= 50 ms",
            "value": 18.5,
            "unit": "ms",
            "met": True,
        },
        {
            "name": "Accept-only: submissions/s sustained with p99 <= 25 ms",
            "target": ">= 250/s",
            "value": 150.0,
            "unit": "per_s",
            "met": False,
        },
    ],
    "profiles": {
        "celery_saturated": {
            "storage": {
                "samples": 800,
                "by_package": [["sqlalchemy", 0.3]],
                "self": [["execute (sqlalchemy/engine/base.py)", 0.1]],
                "ours": [["update_run (crucible_storage/service.py)", 0.22]],
            }
        }
    },
}


@pytest.fixture(scope="module")
def rendered() -> str:
    return render(RESULTS)


def test_header_names_date_machine_command_and_database(rendered):
    assert "### Run of 2027-01-15T08:00:00+00:00" in rendered
    assert "2 cores (Test CPU), 24105 MiB memory" in rendered
    assert "`BENCH_SECONDS=20 make bench`" in rendered
    assert "executor slots: 2 per executor" in rendered
    assert "storage's database: PostgreSQL 15.10 (private cluster, fsync off)" in rendered


def test_targets_with_measured_values_in_their_units_and_verdicts(rendered):
    assert "| Warm sandbox `print(1)` median / bare spawn | <= 1x | 3.00x | **no** |" in rendered
    assert (
        "| Celery throughput / sandbox baseline (saturated) | >= 80% | 50% | **no** |" in rendered
    )
    assert "| Legacy throughput / sandbox baseline (saturated) | reported | 45% | - |" in rendered
    assert "| Celery median overhead, 2 in flight | <= 15 ms | 17.0 ms | **no** |" in rendered
    assert "| Gateway submit p99, celery at 100/s | <= 50 ms | 18.5 ms | yes |" in rendered
    assert (
        "| Accept-only: submissions/s sustained with p99 <= 25 ms | >= 250/s | 150/s | **no** |"
        in rendered
    )


def test_ratios_row(rendered):
    assert "| celery | 50% | 42% | 17.0 |" in rendered


def test_sandbox_bare_interpreter_and_warm_sandbox_with_their_concurrency(rendered):
    assert (
        "| bare `/usr/bin/python3 -c 'print(1)'` | 1 (one after another) | none | no sandbox "
        "| - | 7.6 / 9.0 / 11.0 | 1.00x | 30 runs |"
    ) in rendered
    assert (
        "| `POST /execute` `print(1)`, 41001, 41002 | 2 (closed loop) | "
        "none: straight to the executors | 2 per executor | 30.0 | 60.0 / 80.0 / 90.0 | 7.89x |"
    ) in rendered
    assert (
        "| warm: `POST /execute` `print(1)`, 41001 | 1, 100 ms pause after each answer | "
        "none: straight to one executor | 2 per executor | - | 22.8 / 30.0 / 35.0 | 3.00x "
        "| completed 50 |"
    ) in rendered


def test_latency_split_per_path_and_load(rendered):
    assert "| part | celery, 2 in flight | celery, 8 in flight |" in rendered
    assert (
        "| queue wait (created → running) | 20.0 / 30.0 / 40.0 | 20.0 / 30.0 / 40.0 |" in rendered
    )
    assert (
        "| celery | 8 (closed loop) | Celery -c 2 | 2 per executor | 200 | 15.0 | completed 200 "
        "| event 199, poll 1 |"
    ) in rendered


def test_submit_latency_row(rendered):
    assert (
        "| celery | open loop at 100/s, at most 128 in flight | Celery -c 2 | 2 per executor "
        "| 2000 | 99.5 | 202 2000 | 9.0 / 14.0 / 18.5 | 19.5 | 0.7 | 500 / 1500 |"
    ) in rendered


def test_mixed_workload_per_kind(rendered):
    assert "| cpu | 10% | 9 | 1500.0 / 2000.0 / 2100.0 | - | - |" in rendered
    assert "Clients in flight, consumers, executor slots: 8 (closed loop); Celery -c 2" in rendered


def test_accept_only_steps_and_the_highest_rate_held(rendered):
    assert "#### 5. Accept-only on the Celery path, consumers paused" in rendered
    assert "Highest rate that held: **150/s**." in rendered
    assert (
        "| 150 | open loop, at most 128 in flight | paused (SIGSTOP) | 2 per executor | 750 "
        "| 149.5 | 202 750 | 9.0 / 16.0 / 21.0 | 0.5 | yes |"
    ) in rendered
    assert (
        "| 1000 | 198.0 | 202 1000 | 12.0 / 30.0 / 41.0 | 0.9 | **no**: p99 41.0 ms > 25 ms |"
        in (rendered)
    )


def test_driver_cpu_and_cpu_per_evaluation_by_process(rendered):
    assert "| celery_saturated | 10.0 | 0.50 | 5% | 2.5 | 90% | 0.2 |" in rendered
    header = (
        "| process | sandbox | celery | celery_saturated | submit_celery | mixed_celery "
        "| accept_only |"
    )
    assert header in rendered
    # storage: 2 s of CPU over 200 evaluations; 10.5 s over 1750 submissions when accepting
    assert "| storage | 0.0 | 10.0 | 10.0 | 0.0 | 10.0 | 6.0 |" in rendered
    assert "| postgres | 0.0 | 0.0 | 0.0 | 0.0 | 0.0 | 2.0 |" in rendered
    # the platform leaves the executors out: in accept_only 21 s of 21.35 over 1750
    assert (
        "| **all except the executors (the platform)** | 0.0 | 15.0 | 15.0 | 4.0 | 15.0 | 12.0 |"
        in rendered
    )
    assert "| **all suite processes** | 10.0 | 15.0 | 15.0 | 4.0 | 15.0 | 12.2 |" in rendered


def test_profiles(rendered):
    assert (
        "celery_saturated, **storage**, 800 samples. Self time by package: sqlalchemy 30%."
        in rendered
    )
    assert "| `update_run (crucible_storage/service.py)` | 22% |" in rendered


def test_render_of_an_empty_document_does_not_fail():
    assert "### Run of ?" in render({})


@pytest.mark.parametrize(
    ("summary_value", "expected"),
    [(None, "-"), ({"count": 0}, "-"), (summary(1.0, 2.25, 3.0), "1.0 / 2.2 / 3.0")],
)
def test_triple(summary_value, expected):
    assert triple(summary_value) == expected


def test_replace_section_keeps_the_text_around_it():
    document = f"# Benchmarks\n\nintro\n\n{BEGIN}\n\nold tables\n\n{END}\n\n## Analysis\n\nkept\n"
    updated = replace_section(document, "new tables\n")
    assert "old tables" not in updated
    assert updated.startswith("# Benchmarks\n\nintro\n\n")
    assert f"{BEGIN}\n\nnew tables\n\n{END}\n\n## Analysis\n\nkept\n" in updated


def test_replace_section_appends_when_the_markers_are_missing():
    updated = replace_section("# Benchmarks\n", "tables")
    assert updated == f"# Benchmarks\n\n{BEGIN}\n\ntables\n\n{END}\n"


def test_the_listeners_phase_states_its_windows_and_the_ratio():
    window = {
        "sent": 1000,
        "achieved_rate_per_s": 99.9,
        "status_codes": {"202": 1000},
        "latency_ms": summary(6.0, 9.0, 12.0),
    }
    phase = {
        "backend": "celery",
        "rate": 100.0,
        "window_seconds": 10.0,
        "listeners": 100,
        "load": load("open loop at 100/s, at most 128 in flight", "paused (SIGSTOP)"),
        "windows": {
            "without": window,
            "with_listeners": {**window, "latency_ms": summary(6.5, 9.5, 13.2)},
            "without_again": window,
        },
        "held": {
            "status_codes": {"200": 100},
            "open_at_end": 100,
            "bytes_min": 250000,
            "bytes_median": 251000,
        },
        "p99_ratio": 1.1,
    }

    rendered = render({"phases": {"listeners": phase}})

    assert "#### 6. Submit latency with 100 live event listeners (Celery path" in rendered
    assert "Submit p99 with them / mean p99 without: **1.10x**" in rendered
    assert "answers 200 100, 100 still open at the end" in rendered
    assert "| with listeners | open loop at 100/s, at most 128 in flight | paused (SIGSTOP) " in (
        rendered
    )
    assert "| 1000 | 99.9 | 202 1000 | 6.5 / 9.5 / 13.2 |" in rendered


def test_a_run_of_some_phases_leaves_the_sections_of_the_others_out():
    rendered = render({"phases": {}})
    assert "#### 1. Sandbox baseline" not in rendered
    assert "#### 2. Each path" not in rendered
