"""The Markdown report: every figure of a results document, and its place in docs/benchmarks.md."""

from __future__ import annotations

import pytest

from crucible_bench.report import BEGIN, END, render, replace_section
from crucible_bench.tables import triple


def summary(p50: float, p95: float, p99: float) -> dict:
    return {"count": 100, "p50": p50, "p95": p95, "p99": p99, "mean": p50, "max": p99 + 1}


def path(backend: str, window: int, rate: float) -> dict:
    return {
        "backend": backend,
        "window": window,
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
        "log_level": "INFO",
    },
    "duration_s": 321.0,
    "phases": {
        "bare_python": {"runs": 30, "latency_ms": summary(7.6, 9.0, 11.0)},
        "sandbox": {
            "concurrency": 2,
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
        "celery": path("celery", 2, 12.5),
        "celery_saturated": path("celery", 8, 15.0),
        "submit_celery": {
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
            "name": "Celery throughput / sandbox baseline",
            "target": ">= 60%",
            "value": 0.5,
            "met": False,
        },
        {"name": "Celery median overhead (ms)", "target": "<= 10 ms", "value": 17.0, "met": False},
        {
            "name": "Gateway submit p99 (ms), celery at 100 req/s",
            "target": "<= 20 ms",
            "value": 18.5,
            "met": True,
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


def test_header_names_date_machine_and_command(rendered):
    assert "### Run of 2027-01-15T08:00:00+00:00" in rendered
    assert "2 cores (Test CPU), 24105 MiB memory" in rendered
    assert "`BENCH_SECONDS=20 make bench`" in rendered


def test_targets_with_measured_values_and_verdicts(rendered):
    assert "| Celery throughput / sandbox baseline | >= 60% | 50% | **no** |" in rendered
    assert "| Celery median overhead (ms) | <= 10 ms | 17.0 | **no** |" in rendered
    assert "| Gateway submit p99 (ms), celery at 100 req/s | <= 20 ms | 18.5 | yes |" in rendered


def test_ratios_row(rendered):
    assert "| celery | 50% | 42% | 17.0 |" in rendered


def test_sandbox_and_bare_interpreter(rendered):
    assert (
        "| bare `/usr/bin/python3 -c 'print(1)'` | 1 | - | 7.6 / 9.0 / 11.0 | 30 runs |" in rendered
    )
    assert "`POST /execute` `print(1)`, 41001, 41002 | 2 | 30.0 | 60.0 / 80.0 / 90.0" in rendered


def test_latency_split_per_path_and_load(rendered):
    assert "| part | celery, 2 in flight | celery, 8 in flight |" in rendered
    assert (
        "| queue wait (created → running) | 20.0 / 30.0 / 40.0 | 20.0 / 30.0 / 40.0 |" in rendered
    )
    assert "| celery | 8 | 200 | 15.0 | completed 200 | event 199, poll 1 |" in rendered


def test_submit_latency_row(rendered):
    assert (
        "| celery | 2000 | 99.5 | 202 2000 | 9.0 / 14.0 / 18.5 | 19.5 | 0.7 | 500 / 1500 |"
    ) in rendered


def test_mixed_workload_per_kind(rendered):
    assert "| cpu | 10% | 9 | 1500.0 / 2000.0 / 2100.0 | - | - |" in rendered


def test_driver_cpu_and_cpu_per_evaluation_by_process(rendered):
    assert "| celery_saturated | 10.0 | 0.50 | 5% | 2.5 | 90% | 0.2 |" in rendered
    # storage: 2 s of CPU over 200 evaluations; no storage in the sandbox and submit phases
    assert "| storage | 0.0 | 10.0 | 10.0 | 0.0 | 10.0 |" in rendered
    assert "| **all suite processes** | 10.0 | 15.0 | 15.0 | 4.0 | 15.0 |" in rendered


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
