"""Flower on the worker's app: behind the basic auth of the environment, or open and saying so."""

from __future__ import annotations

import sys
from typing import Any

import httpx
import pytest

from crucible_runtime.pytest_plugin import free_port, wait_for
from crucible_worker.flower import OPEN_WARNING, flower_environment


def _flower(processes, env: dict[str, str]) -> tuple[str, Any]:
    port = free_port()
    flower = processes.process(
        "flower",
        [sys.executable, "-m", "crucible_worker.flower", f"--port={port}", "--address=127.0.0.1"],
        env=env,
        ready=lambda _: httpx.get(f"http://127.0.0.1:{port}/healthcheck", timeout=1).is_success,
    )
    return f"http://127.0.0.1:{port}", flower


def test_flower_asks_for_the_basic_auth_credentials_of_the_environment(processes, stack):
    env = {**stack.worker.process.env, "FLOWER_BASIC_AUTH": "ops:s3cret-pass,second:other-pass"}
    url, _ = _flower(processes, env)

    anonymous = httpx.get(f"{url}/api/workers", timeout=5)
    wrong = httpx.get(f"{url}/api/workers", auth=("ops", "guess"), timeout=5)
    workers = wait_for(
        lambda: httpx.get(f"{url}/api/workers", auth=("ops", "s3cret-pass"), timeout=5).json(),
        timeout=20,
        what="flower to list the worker",
    )
    second = httpx.get(f"{url}/api/workers", auth=("second", "other-pass"), timeout=5)

    assert (anonymous.status_code, wrong.status_code, second.status_code) == (401, 401, 200)
    assert stack.worker.nodename in workers


def test_flower_metrics_ask_for_the_same_credentials(processes, stack):
    env = {**stack.worker.process.env, "FLOWER_BASIC_AUTH": "ops:s3cret-pass"}
    url, _ = _flower(processes, env)

    anonymous = httpx.get(f"{url}/metrics", timeout=5)
    wrong = httpx.get(f"{url}/metrics", auth=("ops", "guess"), timeout=5)
    scraped = httpx.get(f"{url}/metrics", auth=("ops", "s3cret-pass"), timeout=5)
    health = httpx.get(f"{url}/healthcheck", timeout=5)

    assert (anonymous.status_code, wrong.status_code, scraped.status_code) == (401, 401, 200)
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    assert "flower" not in anonymous.text
    assert scraped.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE flower_" in scraped.text
    assert health.status_code == 200


def test_flower_without_credentials_is_open_and_says_so(processes, stack):
    env = {
        **stack.worker.process.env,
        "FLOWER_BASIC_AUTH": "",
        "FLOWER_UNAUTHENTICATED_API": "true",
    }
    url, flower = _flower(processes, env)

    workers = wait_for(
        lambda: httpx.get(f"{url}/api/workers", timeout=5).json(),
        timeout=20,
        what="flower to list the worker",
    )

    assert stack.worker.nodename in workers
    assert OPEN_WARNING in flower.logs()


@pytest.mark.parametrize(
    ("value", "environment", "outcome"),
    [
        ("ops:pw", "local", "closed"),
        ("ops:pw,second:pw2", "production", "closed"),
        ("", "local", "open"),
        ("  ", "local", "open"),
        ("", "production", "refused"),
        ("ops", "local", "refused"),
        (":pw", "local", "refused"),
        ("ops:pw,", "local", "refused"),
    ],
)
def test_flower_credentials_from_the_environment(value, environment, outcome):
    env = {"FLOWER_BASIC_AUTH": value, "ENVIRONMENT": environment, "PATH": "/usr/bin"}
    if outcome == "refused":
        with pytest.raises(ValueError, match="FLOWER_BASIC_AUTH"):
            flower_environment(env)
        return
    result, warning = flower_environment(env)
    assert result["PATH"] == "/usr/bin"
    if outcome == "closed":
        assert (result["FLOWER_BASIC_AUTH"], warning) == (value, None)
    else:
        # A blank value must not reach Flower: it would lock everyone out.
        assert ("FLOWER_BASIC_AUTH" not in result, warning) == (True, OPEN_WARNING)
