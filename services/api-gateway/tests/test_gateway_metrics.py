"""The gateway's /metrics and /api/queue-status over real processes: queue depths and oldest ages
of what waits on each path, a dead broker reported rather than raised, the split in force; and the
guard's decision reason, decided by the real guard."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from crucible_contracts.models import ComparisonStats, MigrationStats
from crucible_gateway import metrics
from crucible_gateway.migration.guard import Check, GuardSettings, Verdict, evaluate
from crucible_runtime.pytest_plugin import wait_for

OPERATOR = {"Authorization": "Bearer alice-operator-token"}


def _samples(url: str) -> dict[tuple[str, frozenset], float]:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200, response.text[:300]
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _one(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_what_waits_on_each_path_is_counted_and_aged(
    start_gateway, own_queue_service, redis_server
):
    # Nobody drains this queue-service or this broker: what is sent waits.
    gateway = start_gateway(
        broker=redis_server.url,
        queue=own_queue_service.url,
        celery_enabled="true",
        celery_percentage="1.0",
        operator_token="alice:alice-operator-token",
    )
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for priority in (False, True, False):
            answer = client.post("/api/eval", json={"code": "print(1)", "priority": priority})
            assert answer.json()["backend"] == "celery"
        client.put(
            "/api/admin/migration",
            headers=OPERATOR,
            json={"expected_version": 1, "celery_percentage": 0.0, "reason": "legacy too"},
        ).raise_for_status()
        wait_for(
            lambda: (
                client.post("/api/eval", json={"code": "print(2)"}).json()["backend"] == "legacy"
            ),
            timeout=10,
            what="the gateway to apply the new split",
        )
        report = client.get("/api/queue-status", headers=OPERATOR).json()

    samples = wait_for(
        lambda: (
            (found := _samples(gateway.url))
            and _one(found, "crucible_queue_depth", queue="default") == 2
            and found
        ),
        timeout=10,
        what="the scrape to count the default queue",
    )
    assert _one(samples, "crucible_queue_depth", queue="high") == 1
    assert _one(samples, "crucible_queue_depth", queue="legacy") >= 1
    assert _one(samples, "crucible_queue_oldest_age_seconds", queue="default") >= 0
    assert _one(samples, "crucible_queue_oldest_age_seconds", queue="shadow") == 0
    assert _one(samples, "crucible_gateway_celery_share_ratio", role="primary") == 0.0
    assert report["celery"]["queues"]["default"] == 2
    assert report["celery"]["oldest_age_seconds"]["default"] >= 0
    assert report["celery"]["oldest_age_seconds"]["low"] == 0.0
    assert report["legacy"]["queued"] >= 1 and report["legacy"]["oldest_age_seconds"] >= 0
    assert report["dead_letter"] == {"entries": 0, "oldest_age_seconds": 0.0}


def test_a_dead_broker_is_reported_by_the_scrape_not_raised(
    start_gateway, own_queue_service, redis_server
):
    gateway = start_gateway(broker=redis_server.url, queue=own_queue_service.url)
    redis_server.stop()

    samples = wait_for(
        lambda: (
            (found := _samples(gateway.url))
            and _one(found, "crucible_queue_source_up", source="broker") == 0
            and found
        ),
        timeout=15,
        what="the scrape to see the broker gone",
    )
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    report = httpx.get(f"{gateway.url}/api/queue-status", headers=OPERATOR, timeout=30).json()

    assert _one(samples, "crucible_queue_source_up", source="dead_letter") == 0
    assert _one(samples, "crucible_queue_source_up", source="queue_service") == 1
    assert {
        dict(labels)["queue"] for name, labels in samples if name == "crucible_queue_depth"
    } == {"legacy"}
    linted = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert (linted.returncode, linted.stdout + linted.stderr) == (0, "")
    assert "error" in report["celery"] and "error" in report["dead_letter"]
    assert report["legacy"]["oldest_age_seconds"] == 0.0


# --- the guard's decision reason (pure) -----------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _check(name: str, verdict: str) -> Check:
    return Check(name=name, verdict=verdict, detail="")


def test_the_guard_checks_are_the_reasons_the_metrics_know():
    empty = MigrationStats(since=T0, until=T0, paths={}, comparisons=ComparisonStats())

    verdict = evaluate(empty, GuardSettings(), shadow=True)

    assert tuple(check.name for check in verdict.checks) == metrics.GUARD_CHECKS
    assert metrics.deciding_check(verdict) == "error_rate"  # the first inconclusive one


@pytest.mark.parametrize(
    ("decision", "verdicts", "reason"),
    [
        ("pass", ["pass", "skip", "pass"], metrics.ALL_PASSED),
        ("breach", ["pass", "breach", "breach"], "mismatch_rate"),
        ("breach", ["inconclusive", "pass", "breach"], "p95_latency_ratio"),
        ("inconclusive", ["pass", "pass", "recovered"], "p95_latency_ratio"),
        ("inconclusive", ["pass", "inconclusive", "inconclusive"], "mismatch_rate"),
    ],
)
def test_a_decision_is_labelled_by_the_check_that_made_it(decision, verdicts, reason):
    checks = [_check(name, v) for name, v in zip(metrics.GUARD_CHECKS, verdicts, strict=True)]

    assert metrics.deciding_check(Verdict(decision=decision, checks=checks)) == reason
