"""Per-tenant request rate limits: the limiter over a real Redis, and real gateways answering 429
with Retry-After and the RateLimit-* headers, one limit shared by every replica."""

from __future__ import annotations

import asyncio
import time
import uuid
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.requests import Request

from crucible_gateway.ratelimit import Decision, RateLimiter, rate_item
from crucible_gateway.ratelimit_middleware import rate_of, tenant_of
from crucible_runtime.pytest_plugin import free_port


def _limiter(redis_url: str, *, window_seconds: int = 2) -> RateLimiter:
    prefix = f"crucible:ratelimit:test:{uuid.uuid4().hex[:10]}"
    return RateLimiter(redis_url, window_seconds=window_seconds, key_prefix=prefix)


def _hits(limiter: RateLimiter, *calls: tuple[str, float]) -> list[Decision | None]:
    """One hit per (tenant, rate), in order, in one event loop (the limiter's Redis client is
    bound to the loop it first ran in)."""

    async def run() -> list[Decision | None]:
        return [await limiter.hit(tenant, rate) for tenant, rate in calls]

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("per_second", "window", "expected"),
    [
        (50, 2, (100, 2)),
        (1, 3, (3, 3)),
        (0.2, 1, (1, 5)),
        (0.5, 4, (2, 4)),
        (2.5, 2, (5, 2)),
        (0, 2, None),
        (-1, 2, None),
    ],
)
def test_rate_item_spends_rate_times_window_at_once(per_second, window, expected):
    item = rate_item(per_second, window)
    assert (None if item is None else (item.amount, item.get_expiry())) == expected


def test_a_tenant_past_its_rate_is_refused_until_its_oldest_request_leaves(redis_url):
    limiter = _limiter(redis_url, window_seconds=2)
    decisions = _hits(limiter, *[("acme", 2.0)] * 5)

    assert [d.allowed for d in decisions] == [True, True, True, True, False]
    assert [d.remaining for d in decisions] == [3, 2, 1, 0, 0]
    assert {d.limit for d in decisions} == {4}
    refused = decisions[-1]
    assert 0 < refused.reset <= 2
    assert refused.headers()["Retry-After"] in {"1", "2"}
    assert "Retry-After" not in decisions[0].headers()


def test_another_tenant_is_not_affected_by_a_tenant_that_spent_its_rate(redis_url):
    limiter = _limiter(redis_url)
    decisions = _hits(limiter, *[("acme", 1.0)] * 3, ("globex", 1.0), ("globex", 1.0))

    assert [d.allowed for d in decisions] == [True, True, False, True, True]
    assert [d.remaining for d in decisions[3:]] == [1, 0]


def test_a_rate_of_zero_sets_no_limit(redis_url):
    assert _hits(_limiter(redis_url), *[("acme", 0.0)] * 3) == [None, None, None]


def test_an_unreachable_redis_lets_requests_through_counted_and_without_asking_again():
    limiter = RateLimiter(
        f"redis://127.0.0.1:{free_port()}/0",
        window_seconds=2,
        key_prefix="crucible:ratelimit:down",
        quiet_seconds=60,
    )
    before = REGISTRY.get_sample_value("crucible_gateway_rate_limit_unchecked_total") or 0

    decisions = _hits(limiter, ("acme", 1.0), ("acme", 1.0), ("acme", 1.0))

    assert decisions == [None, None, None]
    assert REGISTRY.get_sample_value("crucible_gateway_rate_limit_unchecked_total") == before + 3


def _request(principal: object | None) -> Request:
    state = {} if principal is None else {"principal": principal}
    return Request({"type": "http", "method": "GET", "path": "/api/x", "state": state})


@pytest.mark.parametrize(
    ("principal", "tenant", "rate"),
    [
        (None, "default", 50.0),
        (
            SimpleNamespace(tenant="acme", limits=SimpleNamespace(requests_per_second=None)),
            "acme",
            50.0,
        ),
        (
            SimpleNamespace(tenant="acme", limits=SimpleNamespace(requests_per_second=5.0)),
            "acme",
            5.0,
        ),
        (
            SimpleNamespace(tenant="acme", limits=SimpleNamespace(requests_per_second=0.0)),
            "acme",
            0.0,
        ),
    ],
)
def test_identity_and_rate_come_from_the_principal_or_the_defaults(principal, tenant, rate):
    request = _request(principal)
    assert (tenant_of(request), rate_of(request, 50.0)) == (tenant, rate)


# --- over real gateways ------------------------------------------------------------------------


@pytest.fixture
def limited_gateways(start_gateway, session_broker):
    """start(n): n gateways on one state Redis and one rate-limit key, 1 request/s over 3 s
    (3 at once) for the one tenant of local mode."""

    def start(count: int, **extra: str) -> list[str]:
        env = {
            "RATE_LIMIT_PER_SECOND": "1",
            "RATE_LIMIT_WINDOW_SECONDS": "3",
            "RATE_LIMIT_KEY_PREFIX": f"crucible:ratelimit:test:{uuid.uuid4().hex[:10]}",
            **extra,
        }
        return [start_gateway(broker=session_broker, **env).url for _ in range(count)]

    return start


def _get(url: str, path: str = "/api/evaluations?limit=1") -> httpx.Response:
    return httpx.get(url + path, timeout=10)


def test_gateway_answers_429_with_retry_after_and_ratelimit_headers(limited_gateways):
    (url,) = limited_gateways(1)

    allowed = [_get(url) for _ in range(3)]
    refused = _get(url)

    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert [r.headers["RateLimit-Remaining"] for r in allowed] == ["2", "1", "0"]
    assert {r.headers["RateLimit-Limit"] for r in allowed} == {"3"}
    assert all("Retry-After" not in r.headers for r in allowed)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.json()["error"]["details"]["limit"] == 3
    assert refused.headers["RateLimit-Limit"] == "3"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert len(refused.headers.get_list("Retry-After")) == 1
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 3
    assert refused.headers["RateLimit-Reset"] == refused.headers["Retry-After"]
    # Waiting what Retry-After says is the behaviour under test, so this sleep is the client's.
    time.sleep(retry_after)
    assert _get(url).status_code == 200


def test_health_metrics_and_the_admin_api_are_not_rate_limited(limited_gateways, admin):
    (url,) = limited_gateways(1)
    assert [_get(url).status_code for _ in range(4)][-1] == 429

    answers = {
        "/health": _get(url, "/health"),
        "/metrics": _get(url, "/metrics"),
        "/api/admin/migration": admin(url).get("/api/admin/migration"),
    }

    assert {path: r.status_code for path, r in answers.items()} == dict.fromkeys(answers, 200)
    assert all("RateLimit-Limit" not in r.headers for r in answers.values())


def test_two_gateways_on_one_redis_share_the_limit(limited_gateways):
    first, second = limited_gateways(2)

    answers = [_get(first), _get(second), _get(first), _get(second), _get(first)]

    assert [r.status_code for r in answers] == [200, 200, 200, 429, 429]
    assert [r.headers["RateLimit-Remaining"] for r in answers] == ["2", "1", "0", "0", "0"]


def test_a_request_refused_by_auth_is_not_counted(limited_gateways):
    (url,) = limited_gateways(1, api_keys="client-key")

    anonymous = [_get(url) for _ in range(5)]
    with httpx.Client(base_url=url, headers={"X-API-Key": "client-key"}, timeout=10) as client:
        keyed = [client.get("/api/evaluations?limit=1") for _ in range(4)]

    assert {r.status_code for r in anonymous} == {401}
    assert all("RateLimit-Limit" not in r.headers for r in anonymous)
    assert [r.status_code for r in keyed] == [200, 200, 200, 429]


def test_a_gateway_whose_redis_is_down_lets_requests_through(limited_gateways, redis_server):
    (url,) = limited_gateways(1, redis_url=redis_server.url)
    assert _get(url).headers["RateLimit-Remaining"] == "2"
    redis_server.stop()

    answers = [_get(url) for _ in range(5)]

    assert [r.status_code for r in answers] == [200] * 5
    assert all("RateLimit-Limit" not in r.headers for r in answers)
