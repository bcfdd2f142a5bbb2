"""End-to-end smoke test of the compose suite, over HTTP against the running containers.

Run by `make compose-smoke` (scripts/compose.sh smoke), which starts the suite and passes its
addresses; the file name keeps it out of `make test` (pytest collects `test_*.py` only), since
building and starting every image takes minutes. Submits on both paths, runs a shadow with its
comparison, cancels a running program, checks that the sandbox has no network inside the compose
network, and asks Flower, Prometheus and the gateway's /metrics.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from crucible_runtime.pytest_plugin import wait_for


def _engine_answers() -> bool:
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    ):
        return True
    return bool(shutil.which("podman") and shutil.which("podman-compose"))


if not _engine_answers():
    pytest.skip(
        "no container engine on this machine (no Docker engine answers, no podman-compose)",
        allow_module_level=True,
    )

GATEWAY = os.environ.get("COMPOSE_GATEWAY_URL", "http://127.0.0.1:8000")
FLOWER = os.environ.get("COMPOSE_FLOWER_URL", "http://127.0.0.1:5555")
PROMETHEUS = os.environ.get("COMPOSE_PROMETHEUS_URL", "http://127.0.0.1:9090")
TERMINAL = {"completed", "failed", "timeout", "cancelled", "error"}
ADMIN = "/api/admin/migration"


@pytest.fixture(scope="module")
def gateway() -> Iterator[httpx.Client]:
    with httpx.Client(base_url=GATEWAY, timeout=30) as client:
        try:
            assert client.get("/health").status_code == 200
        except httpx.TransportError as exc:
            pytest.fail(f"the compose suite does not answer at {GATEWAY} ({exc}): make compose-up")
        yield client


@pytest.fixture(scope="module")
def admin() -> Iterator[httpx.Client]:
    token = os.environ["OPERATOR_TOKEN"]
    with httpx.Client(
        base_url=GATEWAY, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        initial = client.get(ADMIN).json()
        yield client
        # The suite is left as it started: the split of the environment, no shadow.
        _migrate(client, **{key: initial[key] for key in _ROUTING})


_ROUTING = ("celery_enabled", "celery_percentage", "mode", "shadow_percentage", "force_legacy")


def _migrate(admin: httpx.Client, **fields: object) -> dict:
    version = admin.get(ADMIN).json()["version"]
    body = {"expected_version": version, "reason": "compose smoke test", **fields}
    response = admin.put(ADMIN, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _submit(gateway: httpx.Client, code: str, **fields: object) -> dict:
    response = gateway.post("/api/eval", json={"code": code, **fields})
    assert response.status_code == 202, response.text
    return response.json()


def _ended(gateway: httpx.Client, eval_id: str, timeout: float = 120) -> dict:
    def done() -> dict | None:
        body = gateway.get(f"/api/eval/{eval_id}").json()
        return body if body["status"] in TERMINAL else None

    return wait_for(done, timeout=timeout, interval=0.2, what=f"{eval_id} to end")


@pytest.mark.parametrize("path, percentage", [("legacy", 0.0), ("celery", 1.0)])
def test_an_evaluation_runs_to_completion_on_each_path(gateway, admin, path, percentage):
    _migrate(admin, celery_enabled=True, celery_percentage=percentage, mode="split")
    accepted = _submit(gateway, "import sys\nprint(6 * 7)\nprint('to stderr', file=sys.stderr)")
    assert (accepted["status"], accepted["backend"]) == ("queued", path)

    result = _ended(gateway, accepted["eval_id"])

    assert (result["status"], result["exit_code"], result["backend"]) == ("completed", 0, path)
    assert result["output"] == "42\n"
    assert result["error"] == "to stderr\n"
    # Path 1 (legacy) runs on executor-1, the Celery path on executors 2 and 3.
    assert result["executor_id"] in (
        {"executor-1"} if path == "legacy" else {"executor-2", "executor-3"}
    )


def test_a_program_failure_is_failed_and_a_memory_hog_is_killed_by_the_kernel(gateway, admin):
    _migrate(admin, celery_enabled=True, celery_percentage=0.5, mode="split")
    failing = _submit(gateway, "raise SystemExit(3)")
    hog = _submit(gateway, "x = bytearray(1 << 30)\nprint('not reached')")

    failed = _ended(gateway, failing["eval_id"])
    assert (failed["status"], failed["exit_code"]) == ("failed", 3)
    killed = _ended(gateway, hog["eval_id"])
    assert killed["status"] == "failed"
    assert killed["output"] == ""


def test_a_sandboxed_program_reaches_nothing_on_the_compose_network(gateway, admin):
    _migrate(admin, celery_enabled=True, celery_percentage=0.5, mode="split")
    probe = (
        "import socket\n"
        "for host, port in (('storage', 8082), ('celery-redis', 6379), ('1.1.1.1', 53)):\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=3).close()\n"
        "        print('reached', host)\n"
        "    except OSError as exc:\n"
        "        print('refused', host, type(exc).__name__)\n"
        "print(sorted(name for _, name in socket.if_nameindex()))\n"
    )
    result = _ended(gateway, _submit(gateway, probe)["eval_id"])

    assert result["status"] == "completed", result
    assert "reached" not in result["output"]
    assert result["output"].splitlines()[-1] == "['lo']"


HOSTILE = {
    # The seccomp filter refuses ptrace with EPERM (1); the program goes on.
    "ptrace": (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.ptrace(0, 0, 0, 0), ctypes.get_errno())",
        "-1 1\n",
    ),
    # The root file system is read-only inside the sandbox, and the pid namespace its own.
    "filesystem-and-pids": (
        "import os\ntry:\n    open('/etc/crucible-was-here', 'w')\nexcept OSError as exc:\n"
        "    print(type(exc).__name__)\n"
        "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit())[0])",
        "OSError\n1\n",
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_programs_are_contained_by_the_containerised_sandbox(gateway, admin, name):
    code, expected = HOSTILE[name]
    _migrate(admin, celery_enabled=True, celery_percentage=0.5, mode="split")
    result = _ended(gateway, _submit(gateway, code)["eval_id"])
    assert (result["status"], result["output"]) == ("completed", expected), result


def test_a_fork_bomb_ends_by_its_limits_and_the_suite_goes_on(gateway, admin):
    _migrate(admin, celery_enabled=True, celery_percentage=0.0, mode="split")
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    ended = _ended(gateway, _submit(gateway, bomb, timeout=5)["eval_id"])
    assert ended["status"] in {"timeout", "failed"}, ended
    after = _ended(gateway, _submit(gateway, "print('still here')")["eval_id"])
    assert (after["status"], after["output"]) == ("completed", "still here\n")


def test_shadow_mode_runs_both_paths_and_records_a_comparison(gateway, admin):
    _migrate(
        admin, celery_enabled=True, celery_percentage=0.0, mode="shadow", shadow_percentage=1.0
    )
    same = _submit(gateway, "print('same on both paths')")
    differs = _submit(gateway, "import random\nprint(random.random())")
    assert (same["backend"], same["shadow_backend"]) == ("legacy", "celery")

    def comparison(eval_id: str) -> dict | None:
        response = gateway.get(f"/api/eval/{eval_id}/comparison")
        assert response.status_code == 200, response.text
        body = response.json()
        return body if body["outcome"] != "pending" else None

    matched = wait_for(lambda: comparison(same["eval_id"]), timeout=180, what="a comparison")
    mismatched = wait_for(lambda: comparison(differs["eval_id"]), timeout=180, what="a comparison")

    assert matched["outcome"] == "match"
    assert (matched["primary"]["backend"], matched["shadow"]["backend"]) == ("legacy", "celery")
    assert (mismatched["outcome"], mismatched["differing_fields"]) == ("mismatch", ["stdout"])
    # The client sees the primary run; the shadow is listed beside it.
    evaluation = gateway.get(f"/api/eval/{same['eval_id']}").json()
    assert (evaluation["backend"], evaluation["output"]) == ("legacy", "same on both paths\n")
    assert sorted(run["role"] for run in evaluation["runs"]) == ["primary", "shadow"]


@pytest.mark.parametrize("percentage", [0.0, 1.0], ids=["legacy", "celery"])
def test_cancel_ends_a_running_program_and_a_finished_one_answers_409(gateway, admin, percentage):
    _migrate(admin, celery_enabled=True, celery_percentage=percentage, mode="split")
    accepted = _submit(
        gateway, "import time\nprint('started', flush=True)\ntime.sleep(120)", timeout=150
    )
    eval_id = accepted["eval_id"]
    wait_for(
        lambda: gateway.get(f"/api/eval/{eval_id}").json()["status"] == "running",
        timeout=120,
        what=f"{eval_id} to run",
    )

    answer = gateway.post(f"/api/eval/{eval_id}/cancel", params={"terminate": "true"})

    assert answer.status_code == 200, answer.text
    assert _ended(gateway, eval_id, timeout=60)["status"] == "cancelled"
    assert gateway.post(f"/api/eval/{eval_id}/cancel").status_code == 409


def test_bad_input_and_unknown_ids_get_clear_4xx(gateway):
    too_long = gateway.post("/api/eval", json={"code": "print(1)", "timeout": 100_000})
    assert too_long.status_code == 422
    assert "timeout" in too_long.text
    assert gateway.get("/api/eval/0123456789abcdef0123456789abcdef").status_code == 404
    assert gateway.put(ADMIN, json={"mode": "shadow"}).status_code == 401


def test_flower_answers_and_sees_the_worker_only_with_its_credentials(gateway):
    user, _, password = os.environ["COMPOSE_FLOWER_AUTH"].partition(":")
    assert httpx.get(f"{FLOWER}/healthcheck", timeout=10).text == "OK"
    assert httpx.get(f"{FLOWER}/api/workers", timeout=10).status_code == 401

    def workers() -> dict | None:
        # refresh: ask the workers now (Flower's cache is empty when it started before them).
        response = httpx.get(
            f"{FLOWER}/api/workers", params={"refresh": 1}, auth=(user, password), timeout=30
        )
        assert response.status_code == 200, response.text
        return response.json() or None

    assert any(name.startswith("celery@") for name in wait_for(workers, timeout=60, what="workers"))
    metrics = httpx.get(f"{FLOWER}/metrics", auth=(user, password), timeout=30)
    assert metrics.status_code == 200
    assert "flower_events_total" in metrics.text or "flower_worker_online" in metrics.text


def test_metrics_answer_and_prometheus_scrapes_every_service(gateway):
    metrics = gateway.get("/metrics")
    assert metrics.status_code == 200
    assert "crucible_" in metrics.text

    def scraped() -> dict | None:
        targets = httpx.get(f"{PROMETHEUS}/api/v1/targets", timeout=10).json()["data"]
        health = {
            t["labels"]["job"] + "/" + t["labels"]["instance"]: t["health"]
            for t in targets["activeTargets"]
        }
        return health if health and all(state == "up" for state in health.values()) else None

    health = wait_for(scraped, timeout=90, interval=1, what="every Prometheus target up")
    assert {job.split("/")[0] for job in health} == {
        "gateway",
        "storage",
        "queue-service",
        "queue-worker",
        "executors",
        "flower",
    }
