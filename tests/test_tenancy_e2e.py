"""Two tenants over the whole suite: each sees only its own evaluations on both paths, and a
tenant's in-flight cap frees up as its evaluations end."""

from __future__ import annotations

import pytest

from crucible_contracts.ids import new_eval_id
from crucible_runtime.pytest_plugin import wait_for

pytestmark = pytest.mark.e2e

ACME_KEY = "acme-e2e-key-0123456789abcdef"
GLOBEX_KEY = "globex-e2e-key-0123456789abcdef"
OPERATOR = {"Authorization": "Bearer ops-token-for-the-tenancy-tests"}
SLEEPER = "import time\ntime.sleep(60)"


@pytest.fixture
def tenants(suite, client_for):
    gateway = suite.gateway(
        CELERY_ENABLED="true",
        CELERY_PERCENTAGE="0.5",
        API_KEYS=f"acme:{ACME_KEY},globex:{GLOBEX_KEY}",
        OPERATOR_TOKEN="ops-token-for-the-tenancy-tests",
    )
    acme, globex, operator = client_for(gateway), client_for(gateway), client_for(gateway)
    acme.http.headers["X-API-Key"] = ACME_KEY
    globex.http.headers["X-API-Key"] = GLOBEX_KEY
    operator.http.headers.update(OPERATOR)
    return acme, globex, operator


def test_each_tenant_sees_only_its_own_evaluations_on_both_paths(tenants):
    acme, globex, operator = tenants
    accepted = [acme.submit(f"print({n})", routing_key=f"user-{n}") for n in range(6)]
    assert {entry["backend"] for entry in accepted} == {"legacy", "celery"}

    for entry in accepted:
        done = acme.wait_done(entry["eval_id"])
        assert (done["status"], done["tenant"]) == ("completed", "acme")
        foreign = globex.http.get(f"/api/eval/{entry['eval_id']}")
        unknown = new_eval_id()
        missing = globex.http.get(f"/api/eval/{unknown}")
        assert foreign.status_code == missing.status_code == 404
        assert foreign.text.replace(entry["eval_id"], "?") == missing.text.replace(unknown, "?")

    listed = globex.http.get("/api/evaluations", params={"limit": 500}).json()["items"]
    assert not {entry["eval_id"] for entry in accepted} & {item["eval_id"] for item in listed}
    everyone = operator.http.get("/api/evaluations", params={"limit": 500}).json()["items"]
    assert {entry["eval_id"] for entry in accepted} <= {item["eval_id"] for item in everyone}


def test_a_tenants_in_flight_cap_frees_up_when_an_evaluation_ends(tenants):
    acme, globex, operator = tenants
    capped = operator.http.put("/api/admin/tenants/acme", json={"max_in_flight": 2})
    assert capped.status_code == 200, capped.text
    # Limits come with the key and are kept as long as a key's look-up (at most a second).
    wait_for(
        lambda: acme.http.get("/api/evaluations").status_code == 200,
        what="the gateway to answer acme",
    )
    running: list[str] = []
    try:
        for _ in range(2):
            response = wait_for(
                lambda: (
                    (r := acme.http.post("/api/eval", json={"code": SLEEPER}))
                    and r.status_code == 202
                    and r
                ),
                timeout=5,
                what="a submission under the cap",
            )
            running.append(response.json()["eval_id"])
        refused = wait_for(
            lambda: (
                (r := acme.http.post("/api/eval", json={"code": SLEEPER}))
                and r.status_code == 429
                and r
            ),
            timeout=5,
            what="the cap to refuse a third",
        )
        assert int(refused.headers["Retry-After"]) >= 1
        assert globex.http.post("/api/eval", json={"code": "print(1)"}).status_code == 202

        cancelled = acme.http.post(f"/api/eval/{running[0]}/cancel", params={"terminate": "true"})
        assert cancelled.status_code == 200, cancelled.text

        assert acme.http.post("/api/eval", json={"code": "print(2)"}).status_code == 202
    finally:
        operator.http.put("/api/admin/tenants/acme", json={"max_in_flight": None})
        for eval_id in running:
            acme.http.post(f"/api/eval/{eval_id}/cancel", params={"terminate": "true"})


FAIR_CAP = 20


def test_a_tenants_backlog_does_not_starve_another_tenant(suite, client_for):
    """Acme sends 500 programs at once, globex 10 a moment later. Acme's cap (FAIR_CAP in flight)
    turns away everything past it with 429 before it is dispatched, so globex's work waits behind
    at most FAIR_CAP of acme's on either path, never behind the 500."""
    gateway = suite.gateway(
        CELERY_ENABLED="true",
        CELERY_PERCENTAGE="0.5",
        # Tenants of this test alone: the listing below must see only its own evaluations.
        API_KEYS=f"hoarder:{ACME_KEY}-fair,latecomer:{GLOBEX_KEY}-fair",
        TENANT_MAX_IN_FLIGHT=str(FAIR_CAP),
    )
    acme, globex = client_for(gateway), client_for(gateway)
    acme.http.headers["X-API-Key"] = f"{ACME_KEY}-fair"
    globex.http.headers["X-API-Key"] = f"{GLOBEX_KEY}-fair"
    program = "import time\ntime.sleep(0.2)\nprint('done')"

    answers = [
        acme.http.post("/api/eval-batch", json={"evaluations": [{"code": program}] * 100})
        for _ in range(5)
    ]
    accepted = [
        eval_id for answer in answers for eval_id in answer.json()["error"]["details"]["accepted"]
    ]
    theirs = [globex.submit("print('mine')")["eval_id"] for _ in range(10)]
    views = [globex.wait_done(eval_id) for eval_id in theirs]
    acme_views = [acme.wait_done(eval_id) for eval_id in accepted]

    assert [answer.status_code for answer in answers] == [429] * 5
    assert all(int(answer.headers["Retry-After"]) >= 1 for answer in answers)
    # Each batch stops at the cap, taking only the places acme's own programs freed meanwhile;
    # the rest of the 500 never reached storage, so no queue ever held them ahead of globex.
    listed = acme.http.get("/api/evaluations", params={"limit": 500}).json()["items"]
    assert sorted(item["eval_id"] for item in listed) == sorted(accepted)
    assert len(accepted) < 100
    in_flight = [(view["created_at"], view["completed_at"]) for view in acme_views]
    assert max(sum(c <= t < e for c, e in in_flight) for t, _ in in_flight) <= FAIR_CAP
    assert {view["status"] for view in acme_views} == {"completed"}
    assert {(view["status"], view["output"]) for view in views} == {("completed", "mine\n")}
    assert {view["backend"] for view in views} == {"legacy", "celery"}
