"""The migration as an operator runs it, over the whole suite: shadow runs and their comparisons,
the report, the ramp, the guard rolling back a broken Celery path and riding out a short outage."""

from __future__ import annotations

import signal
import threading
import time
from contextlib import closing

import httpx
import pytest
import redis

from crucible_runtime.pytest_plugin import free_port, start_redis_server, wait_for

pytestmark = pytest.mark.e2e

TOKEN = "ops-token-for-the-migration-tests"
OPERATOR = {"Authorization": f"Bearer {TOKEN}"}
ADMIN = "/api/admin/migration"
# The leader's loop runs often in tests, so that comparisons and guard decisions come quickly.
FAST = {"OPERATOR_TOKEN": f"ops:{TOKEN}", "SUPERVISOR_INTERVAL": "0.2"}


def _admin(gateway) -> httpx.Client:
    return httpx.Client(base_url=gateway.url, headers=OPERATOR, timeout=30)


def _change(admin: httpx.Client, path: str = "", method: str = "PUT", **fields) -> dict:
    version = admin.get(ADMIN).json()["version"]
    response = admin.request(
        method, ADMIN + path, json={"expected_version": version, "reason": "test", **fields}
    )
    assert response.status_code == 200, response.text
    return response.json()


def _comparison(client, eval_id: str, timeout: float = 60) -> dict:
    """The side-by-side view once the leader has recorded the comparison."""

    def recorded():
        response = client.http.get(f"/api/eval/{eval_id}/comparison")
        assert response.status_code == 200, response.text
        body = response.json()
        return body if body["outcome"] != "pending" else None

    return wait_for(recorded, timeout=timeout, interval=0.1, what=f"comparison of {eval_id}")


def test_shadow_runs_are_compared_once_with_the_right_outcome(suite, client_for):
    gateway = suite.gateway(
        CELERY_ENABLED="true",
        CELERY_PERCENTAGE="0",
        MIGRATION_MODE="shadow",
        SHADOW_PERCENTAGE="1.0",
        **FAST,
    )
    client = client_for(gateway)
    programs = {
        "match": "print('same on both paths')",
        # A program's own failure, the same on both paths, is an agreement.
        "failed-alike": "import sys\nprint('bad input', file=sys.stderr)\nsys.exit(3)",
        "mismatch": "import random\nprint(random.random())",
        "match_after_normalisation": "from datetime import datetime\nprint(datetime.now())",
    }
    accepted = {name: client.submit(code) for name, code in programs.items()}
    for answer in accepted.values():
        assert (answer["backend"], answer["shadow_backend"]) == ("legacy", "celery")

    views = {name: _comparison(client, answer["eval_id"]) for name, answer in accepted.items()}

    assert views["match"]["outcome"] == "match"
    assert views["failed-alike"]["outcome"] == "match"
    assert views["failed-alike"]["primary"]["status"] == "failed"
    mismatch = views["mismatch"]
    assert (mismatch["outcome"], mismatch["differing_fields"]) == ("mismatch", ["stdout"])
    assert "primary (legacy)" in mismatch["diff"]["stdout"]
    assert "shadow (celery)" in mismatch["diff"]["stdout"]
    assert views["match_after_normalisation"]["outcome"] == "match_after_normalisation"
    for view in views.values():
        assert view["primary"]["backend"] == "legacy"
        assert view["shadow"]["backend"] == "celery"
    # The client sees the primary run only; the shadow is listed beside it.
    evaluation = client.get(accepted["match"]["eval_id"])
    assert (evaluation["backend"], evaluation["output"]) == ("legacy", "same on both paths\n")
    assert sorted(run["role"] for run in evaluation["runs"]) == ["primary", "shadow"]

    report = client.http.get("/api/migration/report", params={"window": "1h"}).json()
    outcomes = report["comparisons"]["by_outcome"]
    assert outcomes.get("mismatch", 0) >= 1 and outcomes.get("match", 0) >= 2
    assert report["paths"]["celery"]["by_role"].get("shadow", 0) >= 4
    assert any(
        s["eval_id"] == accepted["mismatch"]["eval_id"] for s in report["comparisons"]["samples"]
    )


def test_a_shadow_that_never_finishes_is_reported_missing_after_its_deadline(suite, client_for):
    # A queue-service nobody drains: the legacy shadow runs stay queued.
    stalled = suite.starter.service(
        "crucible_queue.main:create_app", name="stalled-queue-service", env=suite.env
    )
    gateway = suite.gateway(
        CELERY_ENABLED="true",
        CELERY_PERCENTAGE="1.0",
        MIGRATION_MODE="shadow",
        SHADOW_PERCENTAGE="1.0",
        QUEUE_SERVICE_URL=stalled.url,
        **FAST,
    )
    with _admin(gateway) as admin:
        _change(admin, comparison={"shadow_grace_seconds": 1})
    client = client_for(gateway)

    accepted = client.submit("print('primary only')", timeout=1)
    assert (accepted["backend"], accepted["shadow_backend"]) == ("celery", "legacy")
    assert client.wait_done(accepted["eval_id"])["output"] == "primary only\n"

    view = _comparison(client, accepted["eval_id"])
    assert view["outcome"] == "shadow_missing"
    assert view["shadow"]["status"] == "queued"


def test_the_ramp_promotes_step_by_step_while_the_guard_passes(suite, client_for):
    gateway = suite.gateway(CELERY_ENABLED="true", CELERY_PERCENTAGE="0", **FAST)
    client = client_for(gateway)
    with _admin(gateway) as admin:
        _change(admin, guard={"min_samples": 3, "max_p95_latency_ratio": 20})
        _change(admin, "/ramp", method="POST", steps=[0.5, 1.0], hold_seconds=1)
        assert admin.get(ADMIN).json()["celery_percentage"] == 0.5

        def promoted():
            for _ in range(8):
                client.wait_done(client.submit("print(1)")["eval_id"])
            return admin.get(ADMIN).json()["celery_percentage"] == 1.0

        wait_for(promoted, timeout=120, interval=0.1, what="the ramp to reach 100 %")
        entries = admin.get(f"{ADMIN}/audit").json()
        document = admin.get(ADMIN).json()

    promotion = next(entry for entry in entries if entry["action"] == "ramp_promote")
    assert promotion["actor"] == "ramp"
    assert promotion["changes"]["celery_percentage"] == [0.5, 1.0]
    assert "guard passed" in promotion["reason"] and "ramp complete" in promotion["reason"]
    assert document["ramp"]["active"] is False


def test_the_guard_rolls_back_a_broken_celery_path(suite, client_for):
    # A Celery worker on its own broker whose executors cannot be reached: every run ends error.
    broker = start_redis_server(suite.starter)
    broken_env = {
        "CELERY_BROKER_URL": broker.url,
        "EXECUTOR_SERVICE_URL": f"http://127.0.0.1:{free_port()}",
        "TRANSIENT_RETRY_MAX_ATTEMPTS": "2",
        "TRANSIENT_RETRY_BASE_DELAY": "0.05",
    }
    suite.extra_celery_worker("broken-celery-worker", concurrency=2, **broken_env)
    # Two replicas of the gateway share the settings; only the leader's guard acts.
    replica_env = {
        "CELERY_ENABLED": "true",
        "CELERY_PERCENTAGE": "0",
        "CELERY_BROKER_URL": broker.url,
        "MIGRATION_KEY_PREFIX": f"crucible:migration:guard-{free_port()}",
        **FAST,
    }
    gateway, replica = suite.gateway(**replica_env), suite.gateway(**replica_env)
    client, other_client = client_for(gateway), client_for(replica)
    with _admin(gateway) as admin:
        _change(admin, guard={"min_samples": 5, "window_seconds": 300, "breach_after": 10})
        _change(admin, "/promote", method="POST", celery_percentage=0.5)

        submitted = [c.submit("print(1)") for _ in range(12) for c in (client, other_client)]
        wait_for(
            lambda: admin.get(ADMIN).json()["celery_percentage"] == 0.0,
            timeout=120,
            interval=0.2,
            what="the guard to roll the Celery share back",
        )
        [rollback] = [
            e for e in admin.get(f"{ADMIN}/audit").json() if e["action"] == "guard_rollback"
        ]
        guard = admin.get(f"{ADMIN}/guard", params={"limit": 200}).json()

    assert rollback["actor"] == "guard"
    assert rollback["changes"]["celery_percentage"] == [0.5, 0.0]
    assert "error_rate" in rollback["reason"]
    assert "10 evaluations in a row" in rollback["reason"]
    # The decision that acted is stored with its numbers, on the 10th breach in a row.
    [acted] = [d for d in guard["decisions"] if d["action"] == "guard_rollback"]
    assert (acted["streak"], acted["breach_after"], acted["verdict"]["decision"]) == (
        10,
        10,
        "breach",
    )
    error_rate = next(c for c in acted["verdict"]["checks"] if c["name"] == "error_rate")
    assert error_rate["verdict"] == "breach"
    assert error_rate["value"] > error_rate["threshold"]
    assert error_rate["samples"]["celery_terminal"] >= 5
    breaches = [
        d["streak"]
        for d in reversed(guard["decisions"])
        if d["document_version"] == acted["document_version"] and d["streak"]
    ]
    assert breaches[:10] == list(range(1, 11))
    celery_runs = [s for s in submitted if s["backend"] == "celery"]
    assert celery_runs and all(
        client.wait_done(s["eval_id"])["status"] == "error" for s in celery_runs
    )
    # After the rollback every new evaluation goes to legacy, and completes.
    after = client.submit("print('safe again')")
    assert after["backend"] == "legacy"
    assert client.wait_done(after["eval_id"])["output"] == "safe again\n"
    leaders = [c.http.get("/api/status").json()["leader"] for c in (client, other_client)]
    assert sorted(leaders) == [False, True]
    assert guard["latest"]["leader"]
    # The rollback wrote a new settings version: the streak starts again from nothing.
    with _admin(gateway) as admin:
        streak = wait_for(
            lambda: (
                (s := admin.get(f"{ADMIN}/guard").json()["streak"])
                and s["document_version"] > acted["document_version"]
                and s
            ),
            timeout=30,
            what="a decision on the rolled-back settings",
        )
    assert streak["breaches"] == 0


def test_a_five_second_celery_worker_stall_under_load_does_not_roll_back(suite, client_for):
    """The default hysteresis (breach_after 20, recent_seconds 10, a decision a second): the slow
    runs of a 5 s stall of the Celery worker (SIGSTOP, then SIGCONT) breach the latency check
    for a while, but the recent runs recover before the streak gets to 20: no rollback."""
    broker = start_redis_server(suite.starter)
    worker = suite.extra_celery_worker(
        "blip-celery-worker", concurrency=2, CELERY_BROKER_URL=broker.url
    )
    gateway = suite.gateway(
        CELERY_ENABLED="true",
        CELERY_PERCENTAGE="0",
        CELERY_BROKER_URL=broker.url,
        OPERATOR_TOKEN=f"ops:{TOKEN}",
    )
    client = client_for(gateway)
    accepted: list[dict] = []
    stop = threading.Event()

    def load() -> None:
        # About two evaluations a second, half of them to Celery, until told to stop.
        while not stop.is_set():
            accepted.append(client.submit("print('steady')"))
            stop.wait(0.5)

    with _admin(gateway) as admin:
        _change(admin, guard={"min_samples": 10})
        _change(admin, "/promote", method="POST", celery_percentage=0.5)
        version = admin.get(ADMIN).json()["version"]
        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        try:
            wait_for(
                lambda: _latest_decision(admin) == "pass",
                timeout=90,
                interval=0.5,
                what="the guard to pass on both paths before the outage",
            )
            # The outage: the worker and its pool stand still for exactly 5 s, however long a
            # restart would take on a loaded machine, then go on where they were.
            worker.signal(signal.SIGSTOP)
            time.sleep(5)
            worker.signal(signal.SIGCONT)
            # Until the outage's runs have left the recent window and the streak is over.
            wait_for(
                lambda: _streaks(admin, version)[-1:] == [0] and max(_streaks(admin, version)) > 0,
                timeout=90,
                interval=0.5,
                what="the outage to show as a breach streak that ended",
            )
        finally:
            stop.set()
            loader.join(timeout=30)
        document = admin.get(ADMIN).json()
        audit = admin.get(f"{ADMIN}/audit").json()
        streaks = _streaks(admin, version)

    assert document["version"] == version and document["celery_percentage"] == 0.5
    assert not [entry for entry in audit if entry["action"] == "guard_rollback"]
    assert 0 < max(streaks) < 20, streaks
    celery_runs = [a for a in accepted if a["backend"] == "celery"]
    assert celery_runs
    assert {client.wait_done(a["eval_id"])["status"] for a in accepted} == {"completed"}


def _latest_decision(admin: httpx.Client) -> str | None:
    latest = admin.get(f"{ADMIN}/guard").json()["latest"]
    return latest and latest["verdict"] and latest["verdict"]["decision"]


def _streaks(admin: httpx.Client, version: int) -> list[int]:
    """The streak after each stored decision on settings `version`, oldest first."""
    decisions = admin.get(f"{ADMIN}/guard", params={"limit": 200}).json()["decisions"]
    return [d["streak"] for d in reversed(decisions) if d["document_version"] == version]


def test_the_audit_log_outlives_a_restart_of_the_state_redis(suite, client_for):
    # The gateway's own state Redis (no persistence, as in `make run`), which the test restarts.
    state = start_redis_server(suite.starter)
    prefix = f"crucible:migration:audit-{free_port()}"
    gateway = suite.gateway(
        CELERY_ENABLED="true", REDIS_URL=state.url, MIGRATION_KEY_PREFIX=prefix, **FAST
    )
    with _admin(gateway) as admin, closing(redis.Redis.from_url(state.url)) as state_redis:
        _change(admin, "/promote", method="POST", celery_percentage=0.1)
        _change(admin, "/pause", method="POST")
        before = admin.get(f"{ADMIN}/audit").json()

        suite.starter.restart(state)  # everything the state Redis held is gone
        # The gateway writes its last known document back into the empty Redis.
        wait_for(
            lambda: state_redis.exists(f"{prefix}:document"),
            timeout=30,
            what="the gateway to write its settings back into the restarted Redis",
        )
        after = admin.get(f"{ADMIN}/audit").json()
        _change(admin, "/promote", method="POST", celery_percentage=0.2)
        latest = admin.get(f"{ADMIN}/audit").json()

    assert [(e["action"], e["reason"]) for e in before] == [("pause", "test"), ("promote", "test")]
    assert after == before
    assert [e["action"] for e in latest] == ["promote", "pause", "promote"]
    assert latest[0]["changes"]["celery_percentage"] == [0.1, 0.2]
    assert latest[1:] == before
