"""The shared ASGI middlewares over real HTTP: the internal key is refused before any route runs,
and every request is counted by route template and by the status it was answered with."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from crucible_contracts.errors import NotFound
from crucible_contracts.names import INTERNAL_KEY_HEADER
from crucible_runtime.pytest_plugin import free_port, wait_for
from crucible_runtime.web import install_common

KEY = "internal-test-key"
SERVICE = "middleware-test"


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        if item_id == 404:
            raise NotFound(f"no item {item_id}")
        if item_id == 500:
            raise RuntimeError("a bug in the route")
        return {"item_id": item_id}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    install_common(app, service=SERVICE, internal_api_key=KEY)
    return app


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_app(), port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=20, what="the test server to start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _counts(url: str) -> dict[tuple[str, str], float]:
    """(route, code) -> requests counted for this test's service."""
    text = httpx.get(f"{url}/metrics").text
    counts = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "crucible_http_requests_total" and (
                sample.labels["service"] == SERVICE
            ):
                counts[(sample.labels["route"], sample.labels["code"])] = sample.value
    return counts


def test_a_call_without_the_internal_key_is_refused_with_the_error_body(url):
    for headers in ({}, {INTERNAL_KEY_HEADER: "wrong"}):
        answer = httpx.get(f"{url}/items/1", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "unauthorized"
        assert INTERNAL_KEY_HEADER in answer.json()["error"]["message"]


def test_health_and_metrics_are_open_and_the_key_lets_a_call_through(url):
    assert httpx.get(f"{url}/health").status_code == 200
    assert httpx.get(f"{url}/metrics").status_code == 200
    answer = httpx.get(f"{url}/items/7", headers={INTERNAL_KEY_HEADER: KEY})
    assert answer.status_code == 200
    assert answer.json() == {"item_id": 7}


def test_requests_are_counted_by_route_template_and_status(url):
    before = _counts(url)
    keyed = httpx.Client(headers={INTERNAL_KEY_HEADER: KEY})
    for item in (1, 2, 3):
        assert keyed.get(f"{url}/items/{item}").status_code == 200
    assert keyed.get(f"{url}/items/404").status_code == 404
    assert keyed.get(f"{url}/items/500").status_code == 500
    assert httpx.get(f"{url}/items/1").status_code == 401
    after = _counts(url)

    def added(route: str, code: str) -> float:
        return after.get((route, code), 0) - before.get((route, code), 0)

    assert added("/items/{item_id}", "200") == 3
    assert added("/items/{item_id}", "404") == 1
    assert added("/items/{item_id}", "500") == 1
    # Refused before routing: no route template to name.
    assert added("unmatched", "401") == 1
