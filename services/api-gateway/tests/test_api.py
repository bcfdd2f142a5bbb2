"""The rest of the public API over real processes: batch, reads, listing, auth, status reports."""

from __future__ import annotations

import httpx
import pytest

from crucible_contracts.ids import new_eval_id

CODE = {"code": "print('hello')"}


def test_a_batch_gets_one_accepted_entry_per_item_each_retrievable(api):
    items = [CODE, {**CODE, "priority": True}, {"code": "console.log(1)", "language": "javascript"}]

    response = api.post("/api/eval-batch", json={"evaluations": items})

    assert response.status_code == 202, response.text
    entries = response.json()["evaluations"]
    assert len(entries) == 3
    assert len({entry["eval_id"] for entry in entries}) == 3
    for entry, item in zip(entries, items, strict=True):
        assert entry["status"] == "queued"
        stored = api.get(f"/api/eval/{entry['eval_id']}").json()
        assert (stored["language"], stored["backend"]) == (
            item.get("language", "python"),
            entry["backend"],
        )


def test_a_batch_over_the_limit_is_refused_whole(api):
    before = api.get("/api/evaluations", params={"limit": 1}).json()["total"]

    response = api.post("/api/eval-batch", json={"evaluations": [CODE] * 101})

    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["field"] == "evaluations"
    assert "100" in response.json()["error"]["message"]
    assert api.get("/api/evaluations", params={"limit": 1}).json()["total"] == before


def test_a_batch_with_one_bad_item_creates_none_of_them(api):
    before = api.get("/api/evaluations", params={"limit": 1}).json()["total"]

    response = api.post("/api/eval-batch", json={"evaluations": [CODE, CODE, {"code": ""}]})

    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["field"] == "evaluations.2.code"
    assert api.get("/api/evaluations", params={"limit": 1}).json()["total"] == before


def test_an_accepted_evaluation_reads_back_as_queued_with_its_fields(api):
    answer = api.post("/api/eval", json={**CODE, "stdin": "in", "timeout": 5}).json()

    stored = api.get(f"/api/eval/{answer['eval_id']}").json()

    assert stored["eval_id"] == answer["eval_id"]
    assert (stored["status"], stored["backend"]) == ("queued", answer["backend"])
    assert (stored["code"], stored["stdin"], stored["timeout"]) == (CODE["code"], "in", 5)


@pytest.mark.parametrize(
    "eval_id",
    [new_eval_id(), "not-an-id", "A" * 32, "0" * 31, "0" * 32 + "%0A"],
    ids=["unknown", "not-hex", "upper-case", "too-short", "trailing-newline"],
)
def test_an_unknown_or_malformed_eval_id_is_404(api, eval_id):
    response = api.get(f"/api/eval/{eval_id}")
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"


def test_listing_filters_by_backend_and_pages(api):
    api.post("/api/eval-batch", json={"evaluations": [CODE] * 10})

    page = api.get("/api/evaluations", params={"backend": "legacy", "limit": 3}).json()

    assert len(page["items"]) <= 3
    assert page["limit"] == 3
    assert {item["backend"] for item in page["items"]} <= {"legacy"}
    assert api.get("/api/evaluations", params={"status": "queued"}).status_code == 200


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "sleeping"}, "status"),
        ({"backend": "kafka"}, "backend"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"offset": -1}, "offset"),
    ],
    ids=str,
)
def test_listing_refuses_bad_filters_with_422(api, params, field):
    response = api.get("/api/evaluations", params=params)
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]["details"]["field"]


def test_queue_status_reports_the_legacy_depth_and_each_celery_queue(api):
    report = api.get("/api/queue-status").json()

    assert {"queued", "processing"} <= set(report["legacy"])
    assert set(report["celery"]["queues"]) == {"high", "default", "low", "shadow"}
    assert report["celery"]["total"] == sum(report["celery"]["queues"].values())


def test_status_reports_the_configuration_in_force_and_healthy_dependencies(api):
    status = api.get("/api/status").json()

    assert status["celery_enabled"] is True
    assert status["celery_percentage"] == 0.5
    assert (status["mode"], status["force_legacy"]) == ("split", False)
    assert status["migration_source"]["version"] == 1
    assert status["migration_source"]["stale"] is False
    assert status["dependencies"] == {
        "storage": {"ok": True},
        "queue_service": {"ok": True},
        "broker": {"ok": True},
    }
    assert status["healthy"] is True


def test_status_and_queue_status_report_dead_dependencies_without_failing(
    start_gateway, own_queue_service, redis_server
):
    gateway = start_gateway(broker=redis_server.url, queue=own_queue_service.url)
    own_queue_service.stop()
    redis_server.stop()

    status = httpx.get(f"{gateway.url}/api/status", timeout=30).json()
    report = httpx.get(f"{gateway.url}/api/queue-status", timeout=30).json()

    assert status["dependencies"]["storage"] == {"ok": True}
    assert status["dependencies"]["queue_service"]["ok"] is False
    assert status["dependencies"]["broker"]["ok"] is False
    assert status["healthy"] is False
    assert "error" in report["legacy"]
    assert "error" in report["celery"]
    assert httpx.get(f"{gateway.url}/health", timeout=10).status_code == 200


def test_api_keys_are_enforced_on_the_api_when_configured(start_gateway, redis_server):
    gateway = start_gateway(broker=redis_server.url, api_keys="key-one, key-two")
    url = f"{gateway.url}/api/eval"

    def post(headers: dict) -> int:
        return httpx.post(url, json=CODE, headers=headers, timeout=30).status_code

    assert post({}) == 401
    assert post({"X-API-Key": "key-three"}) == 401
    assert post({"Authorization": "Bearer key-thre"}) == 401
    assert post({"X-API-Key": "key-one"}) == 202
    assert post({"Authorization": "Bearer key-two"}) == 202
    unauthorized = httpx.get(f"{gateway.url}/api/status", timeout=10)
    assert unauthorized.status_code == 401
    assert unauthorized.json()["error"]["code"] == "unauthorized"
    assert httpx.get(f"{gateway.url}/health", timeout=10).status_code == 200
    assert httpx.get(f"{gateway.url}/metrics", timeout=10).status_code == 200


def test_the_public_api_does_not_ask_clients_for_the_internal_key(api):
    response = api.post("/api/eval", json=CODE)
    assert response.status_code == 202, response.text


def test_metrics_count_submissions_by_backend(api):
    api.post("/api/eval", json=CODE)

    text = api.get("/metrics").text

    assert "crucible_gateway_evaluations_submitted_total{backend=" in text
    assert "crucible_http_requests_total" in text


def test_the_comparison_of_an_evaluation_that_was_not_shadowed_is_404(api):
    eval_id = api.post("/api/eval", json=CODE).json()["eval_id"]

    response = api.get(f"/api/eval/{eval_id}/comparison")

    assert response.status_code == 404
    assert "no shadow run" in response.json()["error"]["message"]
    assert api.get(f"/api/eval/{new_eval_id()}/comparison").status_code == 404


def test_the_migration_report_counts_the_window_per_path(api):
    accepted = [api.post("/api/eval", json=CODE).json() for _ in range(4)]

    report = api.get("/api/migration/report", params={"window": "10m"}).json()

    assert report["window_seconds"] == 600
    assert set(report["paths"]) == {"legacy", "celery"}
    created = sum(report["paths"][path]["total"] for path in ("legacy", "celery"))
    assert created >= len(accepted)
    assert report["settings"]["celery_percentage"] == 0.5


@pytest.mark.parametrize("window", ["soon", "0", "40d"])
def test_a_report_window_that_is_not_a_valid_duration_is_422(api, window):
    response = api.get("/api/migration/report", params={"window": window})

    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "window"
