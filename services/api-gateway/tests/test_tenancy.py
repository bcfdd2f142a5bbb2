"""Tenants at the gateway: isolation of every evaluation endpoint, scopes, keys and their revocation,
API_KEYS seeding, per-tenant batch and in-flight limits, auth before the body.

Two gateway replicas on one storage (shared by this module's tests; each test uses tenants of its
own), keys required, the broker a Redis database no worker drains (evaluations stay queued).
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from crucible_contracts.errors import MAX_ITEMS
from crucible_contracts.ids import new_eval_id
from crucible_runtime.pytest_plugin import wait_for

CODE = {"code": "print('hello')"}
OPERATOR = {"Authorization": "Bearer alice-operator-token"}
ACME_KEY = "acme-seeded-key-0123456789"
GLOBEX_KEY = "globex-seeded-key-0123456789"
SEEDED = f"acme:{ACME_KEY},globex:{GLOBEX_KEY}"
KEY_CACHE_SECONDS = 1.0
IN_FLIGHT_CAP = 5
PARALLEL_SUBMITS = 20


@pytest.fixture(scope="module")
def replicas(session_processes, storage, queue_service, redis_url):
    """Two gateway replicas of one deployment (one settings document, one storage)."""
    env = {
        "STORAGE_SERVICE_URL": storage.url,
        "QUEUE_SERVICE_URL": queue_service.url,
        "CELERY_BROKER_URL": redis_url.rsplit("/", 1)[0] + "/13",
        "REDIS_URL": redis_url,
        "INTERNAL_API_KEY": "gateway-tests-internal-key",
        "MIGRATION_KEY_PREFIX": f"crucible:migration:test:{uuid.uuid4().hex[:10]}",
        "OPERATOR_TOKEN": "alice:alice-operator-token",
        "API_KEYS": SEEDED,
        "RECONCILE_QUEUED_AFTER_SECONDS": "86400",
        "RECONCILE_CELERY_QUEUED_AFTER_SECONDS": "86400",
        "RECONCILE_RUNNING_GRACE_SECONDS": "86400",
    }
    return [
        session_processes.service(
            "crucible_gateway.main:create_app", name=f"tenant-gw-{n}", env=env
        )
        for n in (1, 2)
    ]


@pytest.fixture
def client():
    """client(replica, key=None, headers=None): an HTTP client of a replica with a key."""
    made: list[httpx.Client] = []

    def make(replica, key: str | None = None, headers: dict | None = None) -> httpx.Client:
        headers = dict(headers or {})
        if key is not None:
            headers["X-API-Key"] = key
        made.append(httpx.Client(base_url=replica.url, headers=headers, timeout=30))
        return made[-1]

    yield make
    for one in made:
        one.close()


def _tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def _new_key(operator: httpx.Client, tenant: str, scopes: list[str] | None = None) -> dict:
    body = {"scopes": scopes} if scopes else None
    response = operator.post(f"/api/admin/tenants/{tenant}/keys", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _shape(response: httpx.Response, eval_id: str) -> tuple[int, str]:
    return response.status_code, response.text.replace(eval_id, "<id>")


def test_another_tenants_evaluation_answers_exactly_like_an_unknown_one(replicas, client):
    acme, globex = client(replicas[0], ACME_KEY), client(replicas[0], GLOBEX_KEY)
    single = acme.post("/api/eval", json=CODE).json()["eval_id"]
    batch = acme.post("/api/eval-batch", json={"evaluations": [CODE, CODE]}).json()
    unknown = new_eval_id()

    for eval_id in [single, *(entry["eval_id"] for entry in batch["evaluations"])]:
        for method, path in [
            ("GET", "/api/eval/{}"),
            ("GET", "/api/eval/{}/comparison"),
            ("POST", "/api/eval/{}/cancel"),
        ]:
            foreign = globex.request(method, path.format(eval_id))
            missing = globex.request(method, path.format(unknown))
            assert foreign.status_code == 404, (path, foreign.text)
            assert _shape(foreign, eval_id) == _shape(missing, unknown), path
        mine = acme.get(f"/api/eval/{eval_id}").json()
        assert (mine["status"], mine["tenant"]) == ("queued", "acme")

    theirs = {item["eval_id"] for item in globex.get("/api/evaluations?limit=500").json()["items"]}
    ours = {item["eval_id"] for item in acme.get("/api/evaluations?limit=500").json()["items"]}
    assert single in ours and single not in theirs
    assert acme.post(f"/api/eval/{single}/cancel").json()["status"] == "cancelled"


def test_a_key_without_the_operator_scope_is_refused_the_operators_views(replicas, client):
    acme = client(replicas[0], ACME_KEY)
    operator = client(replicas[0], headers=OPERATOR)

    for path in [
        "/api/celery/workers",
        "/api/celery/tasks",
        "/api/migration/report",
        "/api/admin/dlq",
        "/api/admin/keys",
        "/api/admin/migration",
    ]:
        refused = acme.get(path)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["error"]["code"] == "forbidden"
    summary = acme.get("/api/queue-status").json()
    assert set(summary) == {"legacy", "celery"} and "waiting" in summary["legacy"]
    assert "dead_letter" in operator.get("/api/queue-status").json()
    assert operator.get("/api/admin/dlq").status_code == 200


def test_a_key_with_the_operator_scope_may_manage_keys(replicas, client):
    operator = client(replicas[0], headers=OPERATOR)
    ops_key = _new_key(operator, _tenant(), ["read", "operator"])["key"]
    ops = client(replicas[1], ops_key)

    created = _new_key(ops, _tenant())

    assert ops.get("/api/admin/keys").status_code == 200
    assert ops.post("/api/eval", json=CODE).status_code == 403  # no submit scope
    assert created["scopes"] == ["submit", "read"]


def test_a_revoked_key_is_refused_within_a_second_on_every_replica(replicas, client):
    operator = client(replicas[0], headers=OPERATOR)
    created = _new_key(operator, _tenant())
    users = [client(replica, created["key"]) for replica in replicas]
    for user in users:
        assert user.get("/api/evaluations").status_code == 200

    revoked = operator.delete(f"/api/admin/keys/{created['key_id']}")
    revoked_at = time.monotonic()

    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    for user in users:
        wait_for(
            lambda user=user: user.get("/api/evaluations").status_code == 401,
            timeout=KEY_CACHE_SECONDS + 0.5,
            what="the revoked key to be refused",
        )
    assert time.monotonic() - revoked_at <= KEY_CACHE_SECONDS + 0.5


def test_keys_are_shown_once_listed_without_the_key_and_audited(
    replicas, client, storage, internal
):
    operator = client(replicas[0], headers=OPERATOR)
    tenant = _tenant()
    created = _new_key(operator, tenant)

    listing = operator.get("/api/admin/keys", params={"tenant": tenant})

    assert created["key"].startswith(created["prefix"])
    assert created["key"] not in listing.text
    (listed,) = listing.json()
    assert listed == {key: value for key, value in created.items() if key != "key"}
    log = internal(storage.url).get("/audit", params={"document": "tenancy", "limit": 500})
    entries = [e for e in log.json() if e["changes"].get("key_id") == [None, created["key_id"]]]
    assert [(e["actor"], e["action"]) for e in entries] == [("alice", "create_key")]
    assert created["key"] not in log.text


def test_api_keys_are_seeded_once_by_every_replica(replicas, client):
    operator = client(replicas[0], headers=OPERATOR)

    for tenant in ("acme", "globex"):
        keys = operator.get("/api/admin/keys", params={"tenant": tenant}).json()
        seeded = [key for key in keys if key["key_id"].startswith("seed-")]
        assert len(seeded) == 1, keys
        assert seeded[0]["scopes"] == ["submit", "read"]
    assert {"acme", "globex"} <= {t["tenant"] for t in operator.get("/api/admin/tenants").json()}


def test_a_tenants_batch_limit_refuses_a_larger_batch(replicas, client):
    operator = client(replicas[0], headers=OPERATOR)
    tenant = _tenant()
    limits = operator.put(f"/api/admin/tenants/{tenant}", json={"max_batch": 2})
    user = client(replicas[0], _new_key(operator, tenant)["key"])

    refused = user.post("/api/eval-batch", json={"evaluations": [CODE] * 3})

    assert limits.status_code == 200, limits.text
    assert refused.status_code == 422
    assert "the limit is 2 per batch" in refused.json()["error"]["message"]
    assert user.post("/api/eval-batch", json={"evaluations": [CODE] * 2}).status_code == 202


def test_parallel_submits_at_the_in_flight_cap_accept_exactly_the_cap(replicas, client):
    operator = client(replicas[0], headers=OPERATOR)
    tenant = _tenant()
    operator.put(f"/api/admin/tenants/{tenant}", json={"max_in_flight": IN_FLIGHT_CAP})
    key = _new_key(operator, tenant)["key"]
    users = [client(replicas[n % 2], key) for n in range(PARALLEL_SUBMITS)]

    with ThreadPoolExecutor(PARALLEL_SUBMITS) as pool:
        answers = list(pool.map(lambda user: user.post("/api/eval", json=CODE), users))

    codes = sorted(answer.status_code for answer in answers)
    assert codes == [202] * IN_FLIGHT_CAP + [429] * (PARALLEL_SUBMITS - IN_FLIGHT_CAP), codes
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["details"]["limit"] == IN_FLIGHT_CAP


def test_a_batch_that_reaches_the_in_flight_cap_says_which_items_exist(replicas, client):
    operator = client(replicas[0], headers=OPERATOR)
    tenant = _tenant()
    # More than an error body lists of anything the client sent (MAX_ITEMS): every one of these
    # exists, so every one is named.
    cap = MAX_ITEMS + 10
    operator.put(f"/api/admin/tenants/{tenant}", json={"max_in_flight": cap})
    user = client(replicas[0], _new_key(operator, tenant)["key"])

    refused = user.post("/api/eval-batch", json={"evaluations": [CODE] * (cap + 1)})

    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    accepted = refused.json()["error"]["details"]["accepted"]
    assert len(set(accepted)) == cap
    assert {user.get(f"/api/eval/{eval_id}").status_code for eval_id in accepted} == {200}
    listed = user.get("/api/evaluations", params={"limit": 500}).json()["items"]
    assert {item["eval_id"] for item in listed} == set(accepted)


@pytest.mark.parametrize(
    ("path", "headers", "code"),
    [
        ("/api/admin/migration", {}, 401),
        ("/api/admin/tenants/x/keys", {}, 401),
        ("/api/admin/tenants/x", {"X-API-Key": ACME_KEY}, 403),
        ("/api/eval", {}, 401),
        ("/api/eval", {"X-API-Key": "not-a-key"}, 401),
    ],
)
def test_credentials_are_checked_before_the_body_is_read(replicas, path, headers, code):
    method = "PUT" if path in ("/api/admin/migration", "/api/admin/tenants/x") else "POST"
    response = httpx.request(
        method,
        f"{replicas[0].url}{path}",
        content=b"{not json",
        headers={"Content-Type": "application/json", **headers},
        timeout=10,
    )

    assert response.status_code == code, response.text


def test_without_keys_everything_is_the_default_tenant(api):
    eval_id = api.post("/api/eval", json=CODE).json()["eval_id"]

    assert api.get(f"/api/eval/{eval_id}").json()["tenant"] == "default"
    assert api.get("/api/celery/workers").status_code == 200


@pytest.mark.parametrize(
    ("api_keys", "seeded", "required"),
    [
        ("", (), False),
        ("key-one, key-two", (("default", "key-one"), ("default", "key-two")), True),
        ("acme:k1,globex:k:2", (("acme", "k1"), ("globex", "k:2")), True),
    ],
)
def test_api_keys_name_tenant_and_key(api_keys, seeded, required):
    from crucible_gateway.config import Settings

    settings = Settings(api_keys=api_keys)

    assert (settings.seeded_keys, settings.keys_required) == (seeded, required)
