"""Migration control over real gateway processes sharing one state Redis: admin API, replicas, faults."""

from __future__ import annotations

import uuid

import httpx
import pytest

from crucible_runtime.pytest_plugin import wait_for

CODE = {"code": "print('hello')"}
ADMIN = "/api/admin/migration"
ALICE = {"Authorization": "Bearer alice-operator-token"}


@pytest.fixture
def prefix() -> str:
    """One migration document for the gateways of this test."""
    return f"crucible:migration:test:{uuid.uuid4().hex[:10]}"


def _status(gateway) -> dict:
    return httpx.get(f"{gateway.url}/api/status", timeout=30).json()


def _submit(gateway) -> dict:
    response = httpx.post(f"{gateway.url}/api/eval", json=CODE, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()


def test_the_env_seeds_the_document_only_when_none_exists(
    start_gateway, session_broker, admin, prefix
):
    a = start_gateway(broker=session_broker, migration_key_prefix=prefix)
    b = start_gateway(
        broker=session_broker,
        migration_key_prefix=prefix,
        celery_enabled=True,
        celery_percentage=0.3,
    )

    document = admin(b.url).get(ADMIN).json()

    assert (document["version"], document["celery_enabled"]) == (1, False)
    assert document["updated_by"] == "environment"
    assert _status(b)["celery_percentage"] == 0.0
    assert admin(a.url).get(ADMIN).json() == document


def test_a_change_on_one_replica_reaches_another_and_its_routing_follows(
    start_gateway, session_broker, admin, prefix
):
    a = start_gateway(broker=session_broker, migration_key_prefix=prefix)
    b = start_gateway(broker=session_broker, migration_key_prefix=prefix)
    assert {_submit(b)["backend"] for _ in range(3)} == {"legacy"}

    answer = admin(a.url).put(
        ADMIN,
        json={
            "expected_version": 1,
            "reason": "all in",
            "celery_enabled": True,
            "celery_percentage": 1.0,
        },
    )

    assert answer.status_code == 200, answer.text
    assert (answer.json()["version"], answer.json()["updated_by"]) == (2, "alice")
    wait_for(lambda: _status(b)["celery_percentage"] == 1.0, timeout=5, what="B to follow")
    assert {_submit(b)["backend"] for _ in range(3)} == {"celery"}


def test_a_write_on_a_stale_version_is_409_naming_the_current_one(
    start_gateway, session_broker, admin
):
    gateway = start_gateway(broker=session_broker)
    client = admin(gateway.url)
    assert (
        client.put(ADMIN, json={"expected_version": 1, "reason": "r", "mode": "shadow"}).status_code
        == 200
    )

    stale = client.put(ADMIN, json={"expected_version": 1, "reason": "r", "force_legacy": True})

    assert stale.status_code == 409
    assert stale.json()["error"]["details"]["current_version"] == 2
    assert "current version is 2" in stale.json()["error"]["message"]
    assert client.get(ADMIN).json()["force_legacy"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"expected_version": 1, "reason": "r", "celery_percentage": 1.5}, "celery_percentage"),
        ({"expected_version": 1, "reason": "r", "celery_percentage": -0.5}, "celery_percentage"),
        ({"expected_version": 1, "reason": "r", "mode": "mirror"}, "mode"),
        ({"expected_version": 1, "reason": "", "force_legacy": True}, "reason"),
        ({"expected_version": 1, "force_legacy": True}, "reason"),
        ({"reason": "r", "force_legacy": True}, "expected_version"),
        ({"expected_version": 1, "reason": "r", "version": 7}, "version"),
    ],
)
def test_invalid_writes_are_422_naming_the_field(api_gateway_with_admin, admin, body, field):
    response = admin(api_gateway_with_admin.url).put(ADMIN, json=body)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["field"] == field


@pytest.fixture(scope="module")
def api_gateway_with_admin(session_processes, storage, queue_service, redis_url):
    """One admin-enabled gateway for the tests that are refused before anything is written."""
    broker = redis_url.rsplit("/", 1)[0] + "/13"
    env = {
        "STORAGE_SERVICE_URL": storage.url,
        "QUEUE_SERVICE_URL": queue_service.url,
        "CELERY_BROKER_URL": broker,
        "REDIS_URL": redis_url,
        # conftest's key of the session storage, which keeps the audit log of every change.
        "INTERNAL_API_KEY": "gateway-tests-internal-key",
        "MIGRATION_KEY_PREFIX": f"crucible:migration:test:{uuid.uuid4().hex[:10]}",
        "OPERATOR_TOKEN": "alice:alice-operator-token,bob:bob-operator-token",
        "API_KEYS": "client-key",
    }
    return session_processes.service(
        "crucible_gateway.main:create_app", name="admin-gateway", env=env
    )


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong-token"}, 403),
        ({"X-Operator-Token": "alice-operator-tokeN"}, 403),
        ({"X-API-Key": "client-key"}, 403),
        ({"X-Operator-Token": "bob-operator-token"}, 200),
        (ALICE, 200),
    ],
)
def test_the_admin_api_needs_an_operator_token(api_gateway_with_admin, admin, headers, code):
    client = admin(api_gateway_with_admin.url, headers=headers)

    assert client.get(ADMIN).status_code == code
    assert client.get(f"{ADMIN}/audit").status_code == code


def test_the_admin_api_is_closed_when_no_operator_token_is_configured(
    start_gateway, session_broker, admin
):
    gateway = start_gateway(broker=session_broker, operator_token="")

    response = admin(gateway.url).get(ADMIN)

    assert response.status_code == 403
    assert "OPERATOR_TOKEN is not configured" in response.json()["error"]["message"]


def test_the_verbs_are_versioned_writes_and_the_audit_says_who_what_and_why_newest_first(
    api_gateway_with_admin, admin
):
    alice = admin(api_gateway_with_admin.url)
    bob = admin(api_gateway_with_admin.url, headers={"X-Operator-Token": "bob-operator-token"})
    version = alice.get(ADMIN).json()["version"]

    promoted = alice.post(
        f"{ADMIN}/promote",
        json={"expected_version": version, "reason": "canary", "celery_percentage": 0.1},
    ).json()
    paused = bob.post(
        f"{ADMIN}/pause", json={"expected_version": version + 1, "reason": "errors up"}
    ).json()
    aborted = bob.post(
        f"{ADMIN}/abort", json={"expected_version": version + 2, "reason": "roll back"}
    ).json()

    assert (promoted["celery_enabled"], promoted["celery_percentage"]) == (True, 0.1)
    assert (promoted["mode"], promoted["force_legacy"]) == ("split", False)
    assert (paused["force_legacy"], paused["celery_percentage"]) == (True, 0.1)
    assert (aborted["celery_enabled"], aborted["celery_percentage"]) == (False, 0.0)
    assert aborted["force_legacy"] is True
    entries = alice.get(f"{ADMIN}/audit", params={"limit": 3}).json()
    assert [(e["action"], e["actor"], e["reason"]) for e in entries] == [
        ("abort", "bob", "roll back"),
        ("pause", "bob", "errors up"),
        ("promote", "alice", "canary"),
    ]
    assert [(e["version_before"], e["version_after"]) for e in entries] == [
        (version + 2, version + 3),
        (version + 1, version + 2),
        (version, version + 1),
    ]
    assert entries[1]["changes"] == {"force_legacy": [False, True]}
    assert entries[0]["changes"]["celery_percentage"] == [0.1, 0.0]
    status = httpx.get(
        f"{api_gateway_with_admin.url}/api/status", headers={"X-API-Key": "client-key"}, timeout=30
    )
    assert status.json()["force_legacy"] is True


def test_with_redis_down_a_replica_keeps_routing_on_its_last_settings_and_says_stale(
    start_gateway, session_broker, redis_server, admin
):
    gateway = start_gateway(broker=session_broker, redis_url=redis_server.url)
    client = admin(gateway.url)
    promoted = client.post(
        f"{ADMIN}/promote",
        json={"expected_version": 1, "reason": "all in", "celery_percentage": 1.0},
    )
    assert promoted.status_code == 200, promoted.text

    redis_server.stop()
    stale = wait_for(
        lambda: _status(gateway)["migration_source"]["stale"] and _status(gateway),
        timeout=10,
        what="the settings to be reported stale",
    )

    assert stale["migration_source"]["stale_since"] is not None
    assert (stale["celery_percentage"], stale["migration_source"]["version"]) == (1.0, 2)
    assert {_submit(gateway)["backend"] for _ in range(3)} == {"celery"}
    write = client.post(f"{ADMIN}/pause", json={"expected_version": 2, "reason": "while down"})
    assert write.status_code == 503

    redis_server.start()
    wait_for(
        lambda: not _status(gateway)["migration_source"]["stale"],
        timeout=10,
        what="the settings to be fresh again",
    )
    # The restarted Redis lost its data: the replica wrote back version 2, not its env seed.
    assert client.get(ADMIN).json()["version"] == 2
    assert (
        client.post(f"{ADMIN}/pause", json={"expected_version": 2, "reason": "back"}).status_code
        == 200
    )
    assert {_submit(gateway)["backend"] for _ in range(3)} == {"legacy"}


def test_with_storage_down_a_change_is_503_and_nothing_changes(
    start_gateway, session_broker, own_storage, admin
):
    gateway = start_gateway(broker=session_broker, storage_url=own_storage.url)
    client = admin(gateway.url)
    version = client.get(ADMIN).json()["version"]
    own_storage.stop()

    refused = client.post(
        f"{ADMIN}/promote",
        json={"expected_version": version, "reason": "while down", "celery_percentage": 1.0},
    )

    assert refused.status_code == 503, refused.text
    assert "nothing was changed" in refused.json()["error"]["message"]
    assert client.get(ADMIN).json()["version"] == version
    assert client.get(f"{ADMIN}/audit").status_code == 503
