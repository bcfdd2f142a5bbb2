"""Summaries of py-spy's collapsed stacks."""

from __future__ import annotations

import pytest

from crucible_bench.profiling import frame_name, package_of, parse_collapsed, summarize_stacks

RAW = """\
<module> (uvicorn:8);run (crucible_storage/routes.py:40);execute (sqlalchemy/engine/base.py:100) 6
<module> (uvicorn:8);run (crucible_storage/routes.py:41);publish (redis/client.py:12) 3
<module> (uvicorn:8);select (selectors.py:469) 1
garbage line
"""


def test_frames_lose_their_line_numbers():
    assert frame_name("run (crucible_storage/routes.py:40)") == "run (crucible_storage/routes.py)"


@pytest.mark.parametrize(
    ("frame", "package"),
    [
        ("execute (sqlalchemy/engine/base.py)", "sqlalchemy"),
        ("wait (threading.py)", "threading"),
        ("decode (<frozen codecs>)", "<frozen codecs>"),
        ("run (crucible_storage/routes.py)", "crucible_storage"),
    ],
)
def test_package_of_a_frame(frame, package):
    assert package_of(frame) == package


def test_parse_collapsed_merges_lines_of_one_function():
    stacks = parse_collapsed(RAW)
    assert sum(stacks.values()) == 10
    assert stacks[("<module> (uvicorn)", "select (selectors.py)")] == 1


def test_summary_shares():
    summary = summarize_stacks(parse_collapsed(RAW))
    assert summary["samples"] == 10
    assert summary["by_package"] == [["sqlalchemy", 0.6], ["redis", 0.3], ["selectors", 0.1]]
    assert summary["ours"] == [["run (crucible_storage/routes.py)", 0.9]]
    assert summary["self"][0] == ["execute (sqlalchemy/engine/base.py)", 0.6]


def test_process_frames_of_subprocess_sampling_are_not_functions():
    stacks = parse_collapsed('process 12:"celery worker";work (crucible_worker/tasks.py:3) 4\n')
    assert summarize_stacks(stacks)["by_package"] == [["crucible_worker", 1.0]]


def test_summary_of_no_samples():
    assert summarize_stacks(parse_collapsed(""))["samples"] == 0
