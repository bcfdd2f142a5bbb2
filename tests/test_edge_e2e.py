"""The hardened edge, against real processes: hostile requests, and schemathesis over every
service's OpenAPI document.

The hostile requests are the findings of issue 13, each answered with its exact status in the one
error body. The fuzzing: every operation of the gateway, storage, the queue-service and an executor gets FUZZ_EXAMPLES
generated requests (valid and invalid ones; 3 in `make test`, more in `make fuzz`), sent with
the credentials the fixture configured; a test fails on any 5xx, any status the document does
not list, and any response that does not match its documented schema or content type.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks

from crucible_contracts.ids import new_eval_id
from crucible_runtime.pytest_plugin import (
    ManagedProcess,
    ProcessStarter,
    postgres_database,
    start_redis_server,
)

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "3"))
INTERNAL_KEY = "fuzz-internal-key-0123456789abcdef"
OPERATOR_TOKEN = "fuzz-operator-token-0123456789"
CLIENT_KEY = "fuzz-client-key-0123456789"

# Operations whose answer never ends by design (a Server-Sent Events stream of every event): a
# generated request would wait forever. Their inputs are tested in tests/test_events_e2e.py.
ENDLESS = frozenset({("GET", "/api/events")})

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=os.environ.get("FUZZ_RANDOM") != "1",
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@dataclass
class Edge:
    """The services under fuzzing and the headers each one wants."""

    gateway: ManagedProcess
    storage: ManagedProcess
    queue_service: ManagedProcess
    executor: ManagedProcess
    # Storage again on PostgreSQL, production's database, which refuses what SQLite takes (NUL).
    storage_on_postgres: ManagedProcess

    internal_headers = {"X-Internal-Key": INTERNAL_KEY}
    gateway_headers = {"X-API-Key": CLIENT_KEY, "X-Operator-Token": OPERATOR_TOKEN}


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, postgres_server_url: str) -> Iterator[Edge]:
    starter = ProcessStarter(tmp_path_factory.mktemp("fuzz-logs"))
    run_dir: Path = tmp_path_factory.mktemp("fuzz")
    try:
        redis = start_redis_server(starter)
        env = {
            "INTERNAL_API_KEY": INTERNAL_KEY,
            "REDIS_URL": redis.url,
            "CELERY_BROKER_URL": redis.url.replace("/0", "/2"),
            "CELERY_RESULT_BACKEND": redis.url.replace("/0", "/3"),
            "DEAD_LETTER_REDIS_URL": redis.url.replace("/0", "/2"),
            "DATABASE_URL": f"sqlite:///{run_dir}/crucible.db",
            "LOG_LEVEL": "WARNING",
            # Short deadlines, so that the stalled-request tests take a second each.
            "BODY_IDLE_TIMEOUT_SECONDS": "1",
            "BODY_TIMEOUT_SECONDS": "3",
            "HEADER_TIMEOUT_SECONDS": "2",
        }
        storage = starter.service("crucible_storage.main:create_app", name="storage", env=env)
        executor = starter.service(
            "crucible_executor.main:create_app",
            name="executor",
            env={**env, "EXECUTOR_ID": "executor-fuzz", "SANDBOX_UID_BASE": "64000"},
        )
        queue_service = starter.service(
            "crucible_queue.main:create_app", name="queue-service", env=env
        )
        gateway = starter.service(
            "crucible_gateway.main:create_app",
            name="gateway",
            env={
                **env,
                "STORAGE_SERVICE_URL": storage.url,
                "QUEUE_SERVICE_URL": queue_service.url,
                "LEGACY_EXECUTOR_URL": executor.url,
                "EXECUTOR_SERVICE_URL": executor.url,
                "OPERATOR_TOKEN": OPERATOR_TOKEN,
                "API_KEYS": CLIENT_KEY,
                # Thousands of requests a minute: the rate limit would answer most of them 429.
                "RATE_LIMIT_PER_SECOND": "0",
                "RECONCILE_QUEUED_AFTER_SECONDS": "86400",
                "RECONCILE_CELERY_QUEUED_AFTER_SECONDS": "86400",
                "RECONCILE_RUNNING_GRACE_SECONDS": "86400",
            },
        )
        with postgres_database(postgres_server_url, "crucible_fuzz") as database_url:
            storage_on_postgres = starter.service(
                "crucible_storage.main:create_app",
                name="storage-postgres",
                env={**env, "DATABASE_URL": database_url},
            )
            yield Edge(gateway, storage, queue_service, executor, storage_on_postgres)
            starter.stop_all()  # before the database is dropped
    finally:
        starter.stop_all()


def fuzz(service: ManagedProcess, headers: dict[str, str], name: str) -> None:
    """Send FUZZ_EXAMPLES valid and as many invalid requests to every operation of `service`;
    fail with every operation's first failure (5xx, undocumented status, schema mismatch)."""
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json", headers=headers)
    schema.config.update(base_url=service.url)
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = [
        operation
        for operation in (result.ok() for result in schema.get_all_operations())
        if (operation.method.upper(), operation.path) not in ENDLESS
    ]
    for operation in operations:
        strategies = [operation.as_strategy(mode) for mode in GenerationMode]

        @FUZZ_SETTINGS
        @given(case=st.one_of(strategies))
        def run(case: schemathesis.Case) -> None:
            response = case.call_and_validate(headers=headers, checks=CHECKS, timeout=60)
            statuses[response.status_code] += 1

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup is the latter
            failures.append(f"{operation.label}: {exc}")
    total = sum(statuses.values())
    print(
        f"\nfuzz {name}: {len(operations)} operations, {total} requests, "
        f"statuses {dict(sorted(statuses.items()))}, "
        f"{sum(n for code, n in statuses.items() if code >= 500)} x 5xx, "
        f"{len(failures)} failing operations"
    )
    assert not failures, "\n\n".join(failures)


def test_gateway_answers_every_generated_request_as_documented(edge: Edge) -> None:
    fuzz(edge.gateway, edge.gateway_headers, "api-gateway")


def test_storage_answers_every_generated_request_as_documented(edge: Edge) -> None:
    fuzz(edge.storage, edge.internal_headers, "storage")


def test_storage_on_postgresql_answers_every_generated_request_as_documented(edge: Edge) -> None:
    fuzz(edge.storage_on_postgres, edge.internal_headers, "storage (PostgreSQL)")


def test_queue_service_answers_every_generated_request_as_documented(edge: Edge) -> None:
    fuzz(edge.queue_service, edge.internal_headers, "queue-service")


def test_executor_answers_every_generated_request_as_documented(edge: Edge) -> None:
    fuzz(edge.executor, edge.internal_headers, "executor")


# --- hostile requests ----------------------------------------------------------------------------

MIB = 1024 * 1024


def _raw(
    service: ManagedProcess, head: bytes, body_chunks=(), *, pause: float = 0
) -> tuple[int, dict]:
    """Send a request as bytes (a server may stop reading early: that is the point), then read
    the answer; (status, JSON body)."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock:
        try:
            sock.sendall(head)
            for chunk in body_chunks:
                time.sleep(pause)
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused mid-send; its answer is already on the wire
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    status_line, _, rest = answer.partition(b"\r\n")
    _, _, body = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(body)


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    return body["error"]


@pytest.fixture(scope="module")
def gateway(edge: Edge) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=edge.gateway.url, headers=edge.gateway_headers, timeout=30
    ) as client:
        yield client


@pytest.fixture(scope="module")
def storage(edge: Edge) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=edge.storage.url, headers=edge.internal_headers, timeout=30
    ) as client:
        yield client


@pytest.mark.parametrize(
    "path",
    [
        "/api/evaluations?offset=9223372036854775808",
        "/api/evaluations?offset=1000000001",
        "/api/admin/dlq?offset=9223372036854775808",
        "/api/admin/migration/audit?offset=9223372036854775808",
        "/api/evaluations?limit=9223372036854775808",
    ],
)
def test_an_out_of_range_number_in_a_gateway_query_is_a_422(
    gateway: httpx.Client, path: str
) -> None:
    error = _error(gateway.get(path), 422, "invalid_input")
    assert error["details"]["field"] in {"query.offset", "query.limit"}


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/evaluations?offset=9223372036854775808", "query.offset"),
        ("DELETE", "/evaluations?older_than_seconds=1e300", "query.older_than_seconds"),
        ("DELETE", "/evaluations?older_than_seconds=inf", "query.older_than_seconds"),
        ("GET", "/audit?offset=9223372036854775808", "query.offset"),
        ("GET", "/stats?since=0001-01-01T00:00:00%2B14:00", "query.since"),
        (
            "GET",
            "/runs/stuck?queued_before=9999-12-31T23:59:59-14:00&running_before=2024-01-01T00:00:00Z",
            "query.queued_before",
        ),
    ],
)
def test_an_out_of_range_number_in_a_storage_query_is_a_422(
    storage: httpx.Client, method: str, path: str, field: str
) -> None:
    error = _error(storage.request(method, path), 422, "invalid_input")
    assert error["details"]["field"] == field


def test_an_unpaired_surrogate_at_storage_is_a_422_naming_the_field(storage: httpx.Client) -> None:
    body = {
        "eval_id": "1" * 32,
        "backend": "legacy",
        "program": {"code": "\ud800", "language": "python", "timeout": 5},
    }
    response = storage.post(
        "/evaluations", content=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    error = _error(response, 422, "invalid_input")
    assert error["details"]["field"] == "program.code"


def test_a_huge_memory_mb_at_storage_is_a_422(storage: httpx.Client) -> None:
    body = {
        "eval_id": "0" * 32,
        "backend": "legacy",
        "program": {"code": "print(1)", "language": "python", "timeout": 5, "memory_mb": 2**63},
    }
    error = _error(storage.post("/evaluations", json=body), 422, "invalid_input")
    assert error["details"]["field"] == "program.memory_mb"


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"timeout": "30"}, "timeout"), ({"priority": "yes"}, "priority"), ({"code": 1}, "code")],
)
def test_no_type_is_coerced(gateway: httpx.Client, fields: dict, field: str) -> None:
    error = _error(
        gateway.post("/api/eval", json={"code": "print(1)", **fields}), 422, "invalid_input"
    )
    assert error["details"]["field"] == field


def test_a_megabyte_field_gets_a_small_422(gateway: httpx.Client) -> None:
    response = gateway.post("/api/eval", json={"code": "print(1)", "language": "x" * MIB})
    error = _error(response, 422, "invalid_input")
    assert error["details"]["field"] == "language"
    assert len(response.content) < 2000
    assert "[truncated]" in error["message"]


def test_a_megabyte_unknown_field_name_gets_a_small_422(gateway: httpx.Client) -> None:
    response = gateway.post("/api/eval", json={"code": "print(1)", "y" * MIB: 1})
    _error(response, 422, "invalid_input")
    assert len(response.content) < 4000


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"code": "print(1)"', "not valid JSON"),
        (b'{"code": "\xff\xfe print(1)"}', "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
    ids=["invalid-json", "invalid-utf8", "deep-nesting"],
)
def test_an_unparsable_body_is_a_422_like_every_input_error(
    gateway: httpx.Client, body: bytes, message: str
) -> None:
    response = gateway.post("/api/eval", content=body, headers={"Content-Type": "application/json"})
    error = _error(response, 422, "invalid_input")
    assert error["details"]["field"] == "body"
    assert message in error["message"]


def test_a_16_mib_header_is_a_431(edge: Edge) -> None:
    head = _head("GET", "/api/evaluations", edge.gateway_headers)[:-2]
    status, body = _raw(edge.gateway, head, [b"X-Filler: ", b"a" * 16 * MIB, b"\r\n\r\n"])
    assert status == 431
    assert body["error"]["code"] == "header_too_large"


def test_a_header_over_the_cap_in_one_read_is_a_431(edge: Edge) -> None:
    response = httpx.get(f"{edge.storage.url}/health", headers={"X-Filler": "a" * 20_000})
    _error(response, 431, "header_too_large")


def test_a_64_mib_body_from_an_authenticated_client_is_a_413_before_it_is_read(edge: Edge) -> None:
    headers = {
        **edge.gateway_headers,
        "Content-Type": "application/json",
        "Content-Length": str(64 * MIB),
    }
    status, body = _raw(
        edge.gateway, _head("POST", "/api/eval", headers), [b"[" + b"0," * (32 * MIB)]
    )
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"


def test_a_64_mib_chunked_body_is_a_413_once_it_passes_the_cap(edge: Edge) -> None:
    headers = {
        **edge.gateway_headers,
        "Content-Type": "application/json",
        "Transfer-Encoding": "chunked",
    }
    chunk = b"%x\r\n%s\r\n" % (MIB, b" " * MIB)
    status, body = _raw(edge.gateway, _head("POST", "/api/eval", headers), [chunk] * 64)
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"


def test_a_body_that_stalls_is_a_408(edge: Edge) -> None:
    headers = {**edge.gateway_headers, "Content-Type": "application/json", "Content-Length": "100"}
    status, body = _raw(edge.gateway, _head("POST", "/api/eval", headers), [b'{"code": '])
    assert status == 408
    assert body["error"]["code"] == "request_timeout"


def test_a_head_that_stalls_is_a_408(edge: Edge) -> None:
    status, body = _raw(edge.storage, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert status == 408
    assert body["error"]["code"] == "request_timeout"


def test_a_body_that_trickles_past_the_whole_body_deadline_is_a_408(edge: Edge) -> None:
    # A byte every 0.4 s never trips the 1 s idle deadline; the 3 s deadline of the whole body ends it.
    headers = {**edge.gateway_headers, "Content-Type": "application/json", "Content-Length": "100"}
    status, body = _raw(edge.gateway, _head("POST", "/api/eval", headers), [b" "] * 12, pause=0.4)
    assert status == 408
    assert body["error"]["code"] == "request_timeout"


@pytest.mark.parametrize("service", ["gateway", "storage", "queue_service", "executor"])
def test_every_operation_documents_the_edge_errors_in_the_one_error_body(
    edge: Edge, service: str
) -> None:
    process: ManagedProcess = getattr(edge, service)
    headers = edge.gateway_headers if service == "gateway" else edge.internal_headers
    document = httpx.get(f"{process.url}/openapi.json", headers=headers).json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for code in ("408", "413", "422"):
                content = operation["responses"][code]["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/ErrorBody"}, (
                    method,
                    path,
                )


@pytest.mark.parametrize(
    "change",
    [
        {"guard": {"window_seconds": 1e308}},
        {"ramp": {"hold_seconds": 1e308}},
        {"comparison": {"shadow_grace_seconds": 1e308}},
        {"celery_percentage": "0.5"},
        {"celery_enabled": "true"},
    ],
    ids=["guard-window", "ramp-hold", "shadow-grace", "coerced-share", "coerced-bool"],
)
def test_an_unbounded_or_coerced_admin_change_is_a_422(gateway: httpx.Client, change: dict) -> None:
    version = gateway.get("/api/admin/migration").json()["version"]
    body = {"expected_version": version, "reason": "hostile", **change}
    _error(gateway.put("/api/admin/migration", json=body), 422, "invalid_input")
    assert gateway.get("/api/admin/migration").json()["version"] == version


@pytest.fixture(scope="module")
def storage_on_postgres(edge: Edge) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=edge.storage_on_postgres.url, headers=edge.internal_headers, timeout=30
    ) as client:
        yield client


def _creation(**program: object) -> dict:
    return {
        "eval_id": new_eval_id(),
        "program": {"code": "print(1)", "language": "python", "timeout": 5, **program},
        "backend": "legacy",
    }


def test_a_nul_in_a_name_postgresql_keeps_as_text_is_a_422(storage_on_postgres) -> None:
    response = storage_on_postgres.post("/evaluations", json=_creation(language="py\x00"))

    _error(response, 422, "invalid_input")
    assert response.json()["error"]["details"]["field"] == "program.language"


def test_a_nul_in_a_runs_reason_is_kept_as_a_replacement_character(storage_on_postgres) -> None:
    # A reason may quote what a program printed; the run's end must be recorded all the same.
    created = storage_on_postgres.post("/evaluations", json=_creation())
    eval_id = created.json()["eval_id"]
    for status, reason in (("running", None), ("error", "gave up: it printed a\x00b")):
        update = {"status": status, **({"reason": reason} if reason else {})}
        answer = storage_on_postgres.patch(f"/evaluations/{eval_id}/runs/primary", json=update)
        assert answer.status_code == 200, answer.text

    view = storage_on_postgres.get(f"/evaluations/{eval_id}").json()
    assert (view["status"], view["reason"]) == ("error", "gave up: it printed a\ufffdb")


def test_the_in_flight_cap_of_storage_is_documented(edge: Edge) -> None:
    document = httpx.get(
        f"{edge.storage.url}/openapi.json", headers=edge.internal_headers, timeout=10
    ).json()
    assert "429" in document["paths"]["/evaluations"]["post"]["responses"]
