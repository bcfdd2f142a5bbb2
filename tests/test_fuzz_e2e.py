"""Fuzzing as a test: schemathesis over every service's OpenAPI document, against real processes.

Every operation of the gateway, storage, the queue-service and an executor gets FUZZ_EXAMPLES
generated requests (valid and invalid ones; 3 in `make test`, more in `make fuzz`), sent with
the credentials the fixture configured; a test fails on any 5xx, any status the document does
not list, and any response that does not match its documented schema or content type.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks

from crucible_runtime.pytest_plugin import ManagedProcess, ProcessStarter, start_redis_server

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "3"))
INTERNAL_KEY = "fuzz-internal-key-0123456789abcdef"
OPERATOR_TOKEN = "fuzz-operator-token-0123456789"
CLIENT_KEY = "fuzz-client-key-0123456789"

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

    internal_headers = {"X-Internal-Key": INTERNAL_KEY}
    gateway_headers = {"X-API-Key": CLIENT_KEY, "X-Operator-Token": OPERATOR_TOKEN}


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
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
                "RECONCILE_QUEUED_AFTER_SECONDS": "86400",
                "RECONCILE_CELERY_QUEUED_AFTER_SECONDS": "86400",
                "RECONCILE_RUNNING_GRACE_SECONDS": "86400",
            },
        )
        yield Edge(gateway, storage, queue_service, executor)
    finally:
        starter.stop_all()


def fuzz(service: ManagedProcess, headers: dict[str, str], name: str) -> None:
    """Send FUZZ_EXAMPLES valid and as many invalid requests to every operation of `service`;
    fail with every operation's first failure (5xx, undocumented status, schema mismatch)."""
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json", headers=headers)
    schema.config.update(base_url=service.url)
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        strategies = [operation.as_strategy(mode) for mode in GenerationMode]

        @FUZZ_SETTINGS
        @given(case=st.one_of(strategies))
        def run(case: schemathesis.Case) -> None:
            response = case.call_and_validate(headers=headers, checks=CHECKS, timeout=60)
            statuses[response.status_code] += 1

        try:
            run()
        except Exception as exc:
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


def test_queue_service_answers_every_generated_request_as_documented(edge: Edge) -> None:
    fuzz(edge.queue_service, edge.internal_headers, "queue-service")


def test_executor_answers_every_generated_request_as_documented(edge: Edge) -> None:
    fuzz(edge.executor, edge.internal_headers, "executor")
