"""The submit and read path on the event loop: the async clients of storage and the queue-service
over real processes, and the rate limit's one round trip per request."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid

import pytest
import redis

from crucible_contracts.errors import Conflict, NotFound, Unavailable
from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import EvalTask, EvaluationCreate, EvaluationView, Program
from crucible_contracts.names import Backend, Role, task_id_for
from crucible_contracts.tenancy import key_hash
from crucible_gateway.paths import CeleryPath, LegacyPath
from crucible_gateway.paths.celery_client import ENQUEUED_AT_HEADER, CeleryDispatcher
from crucible_gateway.ratelimit import RateLimiter
from crucible_runtime.async_clients import (
    MAX_CONNECTIONS,
    AsyncQueueServiceClient,
    AsyncStorageClient,
)
from crucible_runtime.clients import QueueServiceClient
from crucible_runtime.pytest_plugin import free_port

INTERNAL_KEY = "gateway-tests-internal-key"
SCRIPT_COMMANDS = {"lindex", "lpush", "ltrim", "expire", "lrange"}


def _new(backend: Backend = Backend.LEGACY, tenant: str = "default") -> EvaluationCreate:
    return EvaluationCreate(
        eval_id=new_eval_id(),
        code="print(1)",
        language="python",
        timeout=5,
        backend=backend,
        tenant=tenant,
    )


def test_an_evaluation_created_through_the_async_client_reads_back_as_storage_has_it(
    storage, storage_client
):
    created = _new(tenant="acme")

    async def run() -> tuple[EvaluationView, bytes]:
        client = AsyncStorageClient(storage.url, internal_key=INTERNAL_KEY)
        try:
            view = await client.create_evaluation(created)
            return view, await client.evaluation_json(created.eval_id, tenant="acme")
        finally:
            await client.aclose()

    view, raw = asyncio.run(run())

    assert view.eval_id == created.eval_id
    assert EvaluationView.model_validate_json(raw) == storage_client(storage).get_evaluation(
        created.eval_id
    )


def test_another_tenants_evaluation_is_not_found_and_a_dead_service_unavailable(storage):
    created = _new(tenant="acme")

    async def run() -> list[type[Exception]]:
        client = AsyncStorageClient(storage.url, internal_key=INTERNAL_KEY)
        dead = AsyncStorageClient(f"http://127.0.0.1:{free_port()}", timeout=2)
        errors: list[type[Exception]] = []
        await client.create_evaluation(created)
        for call in (
            client.evaluation_json(created.eval_id, tenant="globex"),
            dead.evaluation_json(created.eval_id),
        ):
            try:
                await call
            except (NotFound, Unavailable) as exc:
                errors.append(type(exc))
        await client.aclose()
        return errors

    assert asyncio.run(run()) == [NotFound, Unavailable]


def test_more_concurrent_calls_than_connections_all_get_their_answer(storage):
    """Past MAX_CONNECTIONS in flight, calls wait for a connection instead of opening more."""
    created = _new()

    async def run() -> set[bytes]:
        client = AsyncStorageClient(storage.url, internal_key=INTERNAL_KEY)
        await client.create_evaluation(created)
        calls = [client.evaluation_json(created.eval_id) for _ in range(MAX_CONNECTIONS + 50)]
        answers = await asyncio.gather(*calls)
        await client.aclose()
        return {EvaluationView.model_validate_json(answer).eval_id.encode() for answer in answers}

    assert asyncio.run(run()) == {created.eval_id.encode()}


def test_an_unknown_key_identifies_as_none(storage):
    async def run() -> object:
        client = AsyncStorageClient(storage.url, internal_key=INTERNAL_KEY)
        try:
            return await client.identify_key(key_hash(uuid.uuid4().hex))
        finally:
            await client.aclose()

    assert asyncio.run(run()) is None


def test_a_kept_alive_connection_of_a_restarted_service_is_not_reused(
    own_storage, processes, storage_client
):
    """A restart closes the pooled connection; the next call, even a POST that is never sent
    twice, goes out on a new one instead of failing."""
    first, second = _new(), _new()

    async def run() -> None:
        client = AsyncStorageClient(own_storage.url, internal_key=INTERNAL_KEY)
        await client.create_evaluation(first)
        await asyncio.to_thread(processes.restart, own_storage)
        await client.create_evaluation(second)
        await client.aclose()

    asyncio.run(run())

    sync = storage_client(own_storage)
    assert {sync.get_evaluation(e.eval_id).eval_id for e in (first, second)} == {
        first.eval_id,
        second.eval_id,
    }


def test_the_legacy_path_submits_on_the_loop_and_a_second_copy_is_a_conflict(own_queue_service):
    task = EvalTask(
        eval_id=new_eval_id(),
        backend=Backend.LEGACY,
        program=Program(code="print(1)", language="python", timeout=5),
    )
    sync = QueueServiceClient(own_queue_service.url, internal_key=INTERNAL_KEY)

    async def run() -> type[Exception] | None:
        client = AsyncQueueServiceClient(own_queue_service.url, internal_key=INTERNAL_KEY)
        path = LegacyPath(sync, async_client=client)
        await path.submit_async(task)
        try:
            await path.submit_async(task)
        except Conflict as exc:
            return type(exc)
        finally:
            await client.aclose()
        return None

    assert asyncio.run(run()) is Conflict
    assert sync.state_of(task_id_for(task.eval_id, task.role)) == "queued"
    sync.close()


def _celery_task(**fields: object) -> EvalTask:
    program = Program(code="print('é' * 3000)", language="python", timeout=7)
    return EvalTask(eval_id=new_eval_id(), backend=Backend.CELERY, program=program, **fields)


def _decoded(message: bytes) -> dict:
    decoded = json.loads(message)
    decoded["body"] = json.loads(base64.b64decode(decoded["body"]))
    for name in ("delivery_tag", "reply_to"):  # unique per message / per publisher
        decoded["properties"].pop(name)
    decoded["headers"].pop(ENQUEUED_AT_HEADER)  # the time of each publish
    return decoded


@pytest.mark.parametrize(
    "fields",
    [{}, {"priority": True}, {"role": Role.SHADOW}],
    ids=["default", "priority", "shadow"],
)
def test_the_async_publish_pushes_the_message_send_task_pushes(redis_server, broker_redis, fields):
    """The submit route's publish from the loop is send_task's message, on the same queue."""
    dispatcher = CeleryDispatcher(redis_server.url, connect_timeout=1.0)
    task = _celery_task(**fields)
    queue = dispatcher.submit(task)
    by_kombu = broker_redis.rpop(queue.value)

    asyncio.run(CeleryPath(dispatcher).submit_async(task))
    by_us = broker_redis.rpop(queue.value)
    dispatcher.close()

    assert by_us is not None and broker_redis.llen(queue.value) == 0
    assert _decoded(by_us) == _decoded(by_kombu)


def test_the_async_publish_to_a_dead_broker_is_unavailable():
    dispatcher = CeleryDispatcher(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=1.0)

    async def publish() -> type[Exception] | None:
        try:
            await dispatcher.submit_async(_celery_task())
        except Unavailable as exc:
            return type(exc)
        return None

    assert asyncio.run(publish()) is Unavailable
    dispatcher.close()


def test_each_rate_limit_hit_is_one_round_trip_to_redis(redis_server):
    """The hit and the window's state come back from one script call."""
    limiter = RateLimiter(
        redis_server.url, window_seconds=2, key_prefix=f"crucible:ratelimit:test:{uuid.uuid4()}"
    )
    observer = redis.Redis.from_url(redis_server.url)

    async def hits(count: int) -> list[bool]:
        decisions = [await limiter.hit("acme", 2.0) for _ in range(count)]
        await limiter.close()
        return [decision.allowed for decision in decisions]

    asyncio.run(hits(1))  # loads the script
    observer.config_resetstat()
    limiter = RateLimiter(
        redis_server.url, window_seconds=2, key_prefix=f"crucible:ratelimit:test:{uuid.uuid4()}"
    )
    allowed = asyncio.run(hits(5))
    stats = observer.info("commandstats")
    observer.close()

    assert allowed == [True, True, True, True, False]
    called = {name.removeprefix("cmdstat_"): stat["calls"] for name, stat in stats.items()}
    # What the script runs inside Redis is counted too; the client sent one EVALSHA per hit.
    assert called.pop("evalsha") == 5
    assert set(called) <= {"config|resetstat", *SCRIPT_COMMANDS}


def test_storage_json_passes_through_the_read_route_unchanged(api):
    accepted = api.post("/api/eval", json={"code": "print(1)"})
    assert accepted.status_code == 202, accepted.text

    read = api.get(f"/api/eval/{accepted.json()['eval_id']}")

    assert read.status_code == 200
    assert read.headers["content-type"] == "application/json"
    view = EvaluationView.model_validate_json(read.content)
    assert json.loads(read.content) == view.model_dump(mode="json")
