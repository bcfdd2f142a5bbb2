"""When the chosen path cannot take an evaluation, the gateway sends it down the other one."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_queue_service_down_sends_legacy_work_to_celery_and_back(own_suite, client_for):
    client = client_for(own_suite.gateway(CELERY_ENABLED="true", CELERY_PERCENTAGE="0"))
    own_suite.queue_service.stop()

    accepted = client.submit("print('via celery')")
    assert accepted["backend"] == "celery"
    assert accepted["fallback_from"] == "legacy"
    view = client.wait_done(accepted["eval_id"])
    assert (view["status"], view["output"], view["backend"]) == (
        "completed",
        "via celery\n",
        "celery",
    )

    own_suite.starter.restart(own_suite.queue_service)
    accepted = client.submit("print('legacy again')")
    assert (accepted["backend"], accepted["fallback_from"]) == ("legacy", None)
    assert client.wait_done(accepted["eval_id"])["output"] == "legacy again\n"


def test_broker_down_sends_celery_work_to_legacy(own_suite, client_for):
    client = client_for(own_suite.gateway(CELERY_ENABLED="true", CELERY_PERCENTAGE="1.0"))
    own_suite.broker.stop()

    accepted = client.submit("print('via legacy')")
    assert accepted["backend"] == "legacy"
    assert accepted["fallback_from"] == "celery"
    view = client.wait_done(accepted["eval_id"])
    assert (view["status"], view["output"], view["backend"]) == (
        "completed",
        "via legacy\n",
        "legacy",
    )


def test_no_path_at_all_answers_503_and_records_error(own_suite, client_for):
    gateway = own_suite.gateway(CELERY_ENABLED="true", CELERY_PERCENTAGE="0.5")
    client = client_for(gateway)
    own_suite.queue_service.stop()
    own_suite.broker.stop()

    response = client.http.post("/api/eval", json={"code": "print(1)"})
    assert response.status_code == 503
    body = response.json()["error"]
    assert body["code"] == "no_path_available"
    eval_id = body["details"]["eval_id"]
    assert client.get(eval_id)["status"] == "error"
