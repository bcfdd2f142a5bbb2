"""Tenants at storage: reads scoped to a tenant, keys kept by hash, the in-flight cap held atomically.

Every test runs against a real storage process on SQLite and on PostgreSQL (`shared_storage`).
"""

from __future__ import annotations

import secrets
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select, text

from crucible_contracts.errors import Busy, Conflict, NotFound
from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import ComparisonOutcome, ComparisonRecord, RunCreate, RunUpdate
from crucible_contracts.names import Backend, Role
from crucible_contracts.status import Status
from crucible_contracts.tenancy import Scope, StoredKeyCreate, TenantLimits, key_hash
from crucible_storage import migrate
from crucible_storage.db import Database
from crucible_storage.tables import ApiKeyRecord

IN_FLIGHT_CAP = 5
PARALLEL_CREATES = 20


def _tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def _stored_key(tenant: str, key: str, scopes: tuple[Scope, ...] = (Scope.SUBMIT, Scope.READ)):
    return StoredKeyCreate(
        key_id=uuid.uuid4().hex[:16],
        tenant=tenant,
        scopes=list(scopes),
        key_hash=key_hash(key),
        prefix=key[:8],
    )


@pytest.fixture
def http(shared_storage) -> httpx.Client:
    with httpx.Client(base_url=shared_storage.url, timeout=30) as client:
        yield client


def _error_shape(response: httpx.Response, eval_id: str) -> tuple[int, str]:
    """Status and body with the eval_id blanked, to compare two answers about different ids."""
    return response.status_code, response.text.replace(eval_id, "<id>")


def test_another_tenants_evaluation_answers_exactly_like_an_unknown_one(
    shared_client, new_evaluation, http
) -> None:
    owner, other = _tenant(), _tenant()
    mine = shared_client.create_evaluation(new_evaluation(tenant=owner)).eval_id
    shared_client.add_run(mine, RunCreate(role=Role.SHADOW, backend=Backend.CELERY))
    shared_client.record_comparison(mine, ComparisonRecord(outcome=ComparisonOutcome.MATCH))
    unknown = new_eval_id()
    cancel = {"status": "cancelled", "reason": "test"}
    requests = [
        ("GET", "/evaluations/{}", None),
        ("GET", "/evaluations/{}/events", None),
        ("GET", "/evaluations/{}/comparison", None),
        ("PATCH", "/evaluations/{}/runs/primary", cancel),
    ]

    for method, template, body in requests:
        foreign = http.request(
            method, template.format(mine), json=body, headers={"X-Tenant": other}
        )
        missing = http.request(
            method, template.format(unknown), json=body, headers={"X-Tenant": other}
        )
        assert foreign.status_code == 404, (template, foreign.text)
        assert _error_shape(foreign, mine) == _error_shape(missing, unknown), template
        if method == "GET":
            own = http.get(template.format(mine), headers={"X-Tenant": owner})
            assert own.status_code == 200, (template, own.text)

    assert shared_client.get_evaluation(mine).status is Status.QUEUED  # the cancel did nothing
    assert shared_client.get_evaluation(mine, tenant=owner).tenant == owner


def test_a_listing_scoped_to_a_tenant_holds_its_evaluations_only(
    shared_client, new_evaluation
) -> None:
    first, second = _tenant(), _tenant()
    ours = {shared_client.create_evaluation(new_evaluation(tenant=first)).eval_id for _ in range(3)}
    theirs = shared_client.create_evaluation(new_evaluation(tenant=second)).eval_id

    page = shared_client.list_evaluations(tenant=first, limit=50)
    everything = shared_client.list_evaluations(limit=500)

    assert {item.eval_id for item in page.items} == ours
    assert page.total == 3
    assert theirs in {item.eval_id for item in everything.items}


def test_parallel_creates_at_the_in_flight_cap_accept_exactly_the_cap(
    shared_storage, new_evaluation
) -> None:
    tenant = _tenant()
    bodies = [
        new_evaluation(tenant=tenant, max_in_flight=IN_FLIGHT_CAP).model_dump(mode="json")
        for _ in range(PARALLEL_CREATES)
    ]

    def create(body: dict) -> httpx.Response:
        return httpx.post(f"{shared_storage.url}/evaluations", json=body, timeout=30)

    with ThreadPoolExecutor(PARALLEL_CREATES) as pool:
        answers = list(pool.map(create, bodies))

    codes = sorted(answer.status_code for answer in answers)
    assert codes == [201] * IN_FLIGHT_CAP + [429] * (PARALLEL_CREATES - IN_FLIGHT_CAP), codes
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["details"]["limit"] == IN_FLIGHT_CAP


def test_an_evaluation_that_ends_frees_its_place_under_the_cap(
    shared_client, new_evaluation
) -> None:
    tenant = _tenant()
    first = shared_client.create_evaluation(new_evaluation(tenant=tenant, max_in_flight=1))
    with pytest.raises(Busy):
        shared_client.create_evaluation(new_evaluation(tenant=tenant, max_in_flight=1))
    # Another tenant has a cap of its own.
    shared_client.create_evaluation(new_evaluation(tenant=_tenant(), max_in_flight=1))

    shared_client.update_run(first.eval_id, Role.PRIMARY, RunUpdate(status=Status.CANCELLED))

    assert shared_client.create_evaluation(new_evaluation(tenant=tenant, max_in_flight=1))


def test_keys_are_stored_by_hash_only_and_looked_up_by_it(
    shared_client, shared_database_url
) -> None:
    tenant, key = _tenant(), f"cru_{secrets.token_urlsafe(32)}"

    created, fresh = shared_client.create_key(_stored_key(tenant, key))
    again, second = shared_client.create_key(_stored_key(tenant, key))
    identity = shared_client.identify_key(key_hash(key))

    assert fresh and not second and again.key_id == created.key_id
    assert identity is not None and identity.tenant == tenant
    assert set(identity.scopes) == {Scope.SUBMIT, Scope.READ}
    database = Database(shared_database_url)
    try:
        with database.reader() as session:
            row = session.scalar(select(ApiKeyRecord).where(ApiKeyRecord.key_id == created.key_id))
            stored = [str(value) for value in vars(row).values()]
    finally:
        database.dispose()
    assert row.key_hash == key_hash(key)
    assert not any(key in value for value in stored)


def test_a_key_of_one_tenant_cannot_be_seeded_into_another(shared_client) -> None:
    key = f"cru_{secrets.token_urlsafe(32)}"
    shared_client.create_key(_stored_key(_tenant(), key))

    with pytest.raises(Conflict):
        shared_client.create_key(_stored_key(_tenant(), key))


def test_a_revoked_key_is_no_longer_found(shared_client) -> None:
    tenant, key = _tenant(), f"cru_{secrets.token_urlsafe(32)}"
    created, _ = shared_client.create_key(_stored_key(tenant, key))

    revoked = shared_client.revoke_key(created.key_id)
    again = shared_client.revoke_key(created.key_id)

    assert revoked.revoked_at is not None and again.revoked_at == revoked.revoked_at
    assert shared_client.identify_key(key_hash(key)) is None
    assert [k.revoked_at for k in shared_client.keys(tenant=tenant)] == [revoked.revoked_at]
    with pytest.raises(NotFound):
        shared_client.revoke_key("no-such-key")


def test_a_tenants_limits_come_with_its_keys(shared_client) -> None:
    tenant, key = _tenant(), f"cru_{secrets.token_urlsafe(32)}"
    shared_client.create_key(_stored_key(tenant, key))
    limits = TenantLimits(requests_per_second=2.5, max_in_flight=7, max_batch=None)

    view = shared_client.put_tenant(tenant, limits)

    assert view.limits == limits
    assert tenant in {t.tenant for t in shared_client.tenants()}
    assert shared_client.identify_key(key_hash(key)).limits == limits


def test_0005_gives_existing_evaluations_the_default_tenant(database_url) -> None:
    database = Database(database_url)
    try:
        migrate.upgrade(database, "0004_audit")
        with database.write_engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO evaluations (eval_id, code, language, timeout, priority, created_at)"
                    " VALUES ('e1', 'print(1)', 'python', 5, false, '2030-01-02 03:04:05')"
                )
            )

        migrate.upgrade(database)

        with database.engine.connect() as connection:
            tenant = connection.execute(
                text("SELECT tenant FROM evaluations WHERE eval_id = 'e1'")
            ).scalar_one()
        assert tenant == "default"
    finally:
        database.dispose()
