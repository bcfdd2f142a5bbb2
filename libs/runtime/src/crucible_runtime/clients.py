"""HTTP clients for Crucible's internal services: typed calls, typed errors, no wire details leaking."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlencode

import urllib3
from urllib3 import Timeout
from urllib3.exceptions import HTTPError, ProtocolError

from crucible_contracts.errors import BY_CODE, Busy, CrucibleError, NotFound, Unavailable
from crucible_contracts.models import (
    AuditEntry,
    ComparisonPage,
    ComparisonRecord,
    ComparisonView,
    Deleted,
    EvalTask,
    EvaluationCreate,
    EvaluationPage,
    EvaluationView,
    Event,
    ExecuteRequest,
    ExecuteResult,
    MigrationStats,
    RunCreate,
    RunUpdate,
    RunView,
    StuckRun,
)
from crucible_contracts.names import INTERNAL_KEY_HEADER, Backend, Role
from crucible_contracts.tenancy import (
    TENANT_HEADER,
    KeyIdentity,
    KeyView,
    StoredKeyCreate,
    TenantLimits,
    TenantView,
)


def _scoped(tenant: str | None) -> dict[str, str]:
    """The header that scopes a storage read to one tenant's evaluations (none: all)."""
    return {TENANT_HEADER: tenant} if tenant is not None else {}


class Answered(Protocol):
    """What `raise_for_error` reads of an answer (an `Answer`, or an httpx.Response)."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def is_success(self) -> bool: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


def raise_for_error(response: Answered) -> None:
    """Turn an error answer back into the exception the other service raised."""
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        cls = BY_CODE.get(error["code"], CrucibleError)
        message, details = error["message"], error.get("details") or {}
    except (ValueError, KeyError, TypeError):
        cls, message, details = CrucibleError, response.text[:500], {}
    if response.status_code in (429, 503) and cls is CrucibleError:
        cls = Busy if response.status_code == 429 else Unavailable
    exc = CrucibleError.__new__(cls)
    CrucibleError.__init__(exc, message, **details)
    exc.status_code = response.status_code
    if isinstance(exc, Busy):
        exc.retry_after = float(response.headers.get("Retry-After", details.get("retry_after", 1)))
    raise exc


log = logging.getLogger(__name__)

# Methods whose request may be sent twice with the effect of once (RFC 9110, 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# What a pooled keep-alive connection that the server closed or reset under us raises: the server
# may or may not have received the request, so only a request safe to repeat is sent again.
# Not a connect error or a timeout: those say the service is down or slow, and a retry would only
# double the wait.
STALE_CONNECTION_ERRORS = (ProtocolError,)
# How long a run that found every executor slot taken waits before asking again (doubling).
BUSY_PAUSE_FIRST = 0.01
BUSY_PAUSE_MAX = 0.1
# Connections kept per service and client; more are opened when needed and closed after use.
POOL_SIZE = 16


@dataclass(frozen=True)
class Answer:
    """One answer of an internal service: its status, headers (case-insensitive) and body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


def _query_value(value: Any) -> str:
    """A query parameter as text, the way httpx and FastAPI agree on it (true/false for bools)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def query_pairs(params: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """A request's query as (name, text) pairs, a list or tuple value repeated per item."""
    return [
        (key, _query_value(item))
        for key, value in (params or {}).items()
        for item in (value if isinstance(value, list | tuple) else [value])
    ]


def _target(path: str, params: Mapping[str, Any] | None) -> str:
    return f"{path}?{urlencode(query_pairs(params))}" if params else path


def _timeout(value: float | Timeout | None) -> Timeout | None:
    if value is None or isinstance(value, Timeout):
        return value
    return Timeout(connect=value, read=value)


class InternalClient:
    """A pooled, thread-safe client of one internal service; network failures become Unavailable.

    An idempotent request (GET, HEAD, OPTIONS, PUT, DELETE, or one the caller marks
    `idempotent=True`) that meets a connection closed or reset by the server is sent once more,
    on a new connection: after a service drops its kept-alive connections (a restart, an error
    that closed them, its keep-alive timeout racing our next call) the next calls would otherwise
    fail for nothing. Any other request fails at once (`idempotent=False` forces that for a GET).

    The transport is urllib3's connection pool: every evaluation makes several internal calls,
    and measured on a 2-core development machine (a small JSON POST to a local FastAPI service)
    httpx's client cost 0.5 ms of CPU per call against urllib3's 0.2 ms. Bodies are JSON:
    `json=` (a value) or `content=` (already encoded).
    """

    def __init__(self, base_url: str, *, internal_key: str | None = None, timeout: float = 10):
        self.base_url = base_url.rstrip("/")
        self._headers = {"Content-Type": "application/json"}
        if internal_key:
            self._headers[INTERNAL_KEY_HEADER] = internal_key
        self._pool = urllib3.connection_from_url(
            self.base_url,
            maxsize=POOL_SIZE,
            block=False,
            retries=False,
            timeout=_timeout(timeout),
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool | None = None,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | Timeout | None = None,
    ) -> Answer:
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        if json is not None:
            content = _json_bytes(json)
        target = _target(path, params)
        sent_headers = {**self._headers, **headers} if headers else self._headers
        try:
            answer = self._send(
                method,
                target,
                body=content,
                headers=sent_headers,
                timeout=_timeout(timeout),
                retry_stale=idempotent,
            )
        except HTTPError as exc:
            raise Unavailable(f"{self.base_url} unreachable: {exc!r}", url=self.base_url) from exc
        raise_for_error(answer)
        return answer

    def _send(
        self,
        method: str,
        target: str,
        *,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: Timeout | None,
        retry_stale: bool,
    ) -> Answer:
        kwargs: dict[str, Any] = {"body": body, "headers": headers}
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            response = self._pool.urlopen(method, target, **kwargs)
        except STALE_CONNECTION_ERRORS as exc:
            if not retry_stale:
                raise
            # The pool dropped the broken connection: this one goes out on a new one.
            log.info(
                "%s %s%s: connection lost (%r), sent once more", method, self.base_url, target, exc
            )
            response = self._pool.urlopen(method, target, **kwargs)
        return Answer(status_code=response.status, headers=response.headers, content=response.data)

    def close(self) -> None:
        self._pool.close()


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


class StorageClient(InternalClient):
    def create_evaluation(self, evaluation: EvaluationCreate) -> EvaluationView:
        response = self.request(
            "POST", "/evaluations", content=evaluation.model_dump_json().encode()
        )
        return EvaluationView.model_validate_json(response.content)

    def get_evaluation(self, eval_id: str, *, tenant: str | None = None) -> EvaluationView:
        """The evaluation; NotFound when unknown or (with `tenant`) another tenant's."""
        response = self.request("GET", f"/evaluations/{eval_id}", headers=_scoped(tenant))
        return EvaluationView.model_validate_json(response.content)

    def list_evaluations(self, *, tenant: str | None = None, **filters: Any) -> EvaluationPage:
        params = {key: value for key, value in filters.items() if value is not None}
        response = self.request("GET", "/evaluations", params=params, headers=_scoped(tenant))
        return EvaluationPage.model_validate_json(response.content)

    def add_run(self, eval_id: str, run: RunCreate) -> RunView:
        response = self.request("POST", f"/evaluations/{eval_id}/runs", json=run.model_dump())
        return RunView.model_validate_json(response.content)

    def update_run(
        self, eval_id: str, role: Role, update: RunUpdate, *, tenant: str | None = None
    ) -> RunView:
        response = self.request(
            "PATCH",
            f"/evaluations/{eval_id}/runs/{role}",
            content=update.model_dump_json(exclude_none=True).encode(),
            headers=_scoped(tenant),
        )
        return RunView.model_validate_json(response.content)

    def replay_run(self, eval_id: str, role: Role) -> RunView:
        """Send a run that ended `error` back to `queued` (result cleared, attempts kept, `replays`
        counted). Conflict unless it is `error`, or once it was replayed MAX_REPLAYS times."""
        response = self.request("POST", f"/evaluations/{eval_id}/runs/{role}/replay")
        return RunView.model_validate_json(response.content)

    def stuck_runs(
        self,
        *,
        queued_before: datetime,
        running_before: datetime,
        backend: Backend | None = None,
        limit: int = 100,
    ) -> list[StuckRun]:
        """Runs `queued` since before `queued_before` or `running` since before `running_before`
        (optionally of one backend), the oldest first; limit 1..500. Datetimes need a time zone."""
        params: dict[str, Any] = {
            "queued_before": queued_before.isoformat(),
            "running_before": running_before.isoformat(),
            "limit": limit,
        }
        if backend is not None:
            params["backend"] = backend.value
        response = self.request("GET", "/runs/stuck", params=params)
        return [StuckRun.model_validate(item) for item in response.json()]

    def events(self, eval_id: str, *, tenant: str | None = None) -> list[Event]:
        response = self.request("GET", f"/evaluations/{eval_id}/events", headers=_scoped(tenant))
        return [Event.model_validate(item) for item in response.json()]

    def delete_older_than(self, seconds: float) -> int:
        response = self.request("DELETE", "/evaluations", params={"older_than_seconds": seconds})
        return Deleted.model_validate_json(response.content).deleted

    def record_comparison(
        self, eval_id: str, record: ComparisonRecord
    ) -> tuple[ComparisonView, bool]:
        """Record the comparison of `eval_id` once: (it, True) when this call recorded it, else
        (the comparison recorded first, unchanged, False)."""
        response = self.request(
            "PUT", f"/evaluations/{eval_id}/comparison", json=record.model_dump(mode="json")
        )
        return ComparisonView.model_validate_json(response.content), response.status_code == 201

    def get_comparison(self, eval_id: str, *, tenant: str | None = None) -> ComparisonView:
        """The recorded comparison; NotFound when there is none (yet)."""
        response = self.request(
            "GET", f"/evaluations/{eval_id}/comparison", headers=_scoped(tenant)
        )
        return ComparisonView.model_validate_json(response.content)

    def pending_comparisons(self, *, limit: int = 100) -> list[EvaluationView]:
        """Evaluations with a shadow run, an ended primary and no comparison: those whose shadow
        ended too first, then the others; oldest first within each (limit 1..500)."""
        response = self.request("GET", "/comparisons/pending", params={"limit": limit})
        return [EvaluationView.model_validate(item) for item in response.json()]

    def comparisons(
        self, *, outcomes: Sequence[str] = (), limit: int = 50, offset: int = 0
    ) -> ComparisonPage:
        """Recorded comparisons of `outcomes` (all when empty), those that did not agree first,
        newest first within each (limit 1..500)."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if outcomes:
            params["outcome"] = list(outcomes)
        response = self.request("GET", "/comparisons", params=params)
        return ComparisonPage.model_validate_json(response.content)

    def stats(
        self, *, since: datetime, until: datetime | None = None, samples: int = 5
    ) -> MigrationStats:
        """Per-path statistics of the runs created and comparisons recorded in [since, until);
        `until` defaults to storage's now. Datetimes must carry a time zone (else InvalidInput)."""
        params: dict[str, Any] = {"since": since.isoformat(), "samples": samples}
        if until is not None:
            params["until"] = until.isoformat()
        response = self.request("GET", "/stats", params=params)
        return MigrationStats.model_validate_json(response.content)

    def ping(self) -> None:
        """Returns when storage and its database answer, raises Unavailable when not."""
        self.request("GET", "/health")

    def record_audit(self, entry: AuditEntry) -> tuple[AuditEntry, bool]:
        """Record one audit entry: (it, True) when this call recorded it, else (the entry of the
        same audit_id recorded first, False). Safe to call again after a lost answer."""
        response = self.request(
            "POST", "/audit", json=entry.model_dump(mode="json"), idempotent=True
        )
        return AuditEntry.model_validate_json(response.content), response.status_code == 201

    def audit(
        self, *, document: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[AuditEntry]:
        """Audit entries newest first, of one settings `document` or of all (limit 1..500,
        offset 0..1,000,000)."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if document is not None:
            params["document"] = document
        response = self.request("GET", "/audit", params=params)
        return [AuditEntry.model_validate(item) for item in response.json()]

    # --- tenants and keys ---------------------------------------------------------------------

    def put_tenant(self, tenant: str, limits: TenantLimits) -> TenantView:
        response = self.request("PUT", f"/tenants/{tenant}", json=limits.model_dump(mode="json"))
        return TenantView.model_validate_json(response.content)

    def tenants(self) -> list[TenantView]:
        return [TenantView.model_validate(item) for item in self.request("GET", "/tenants").json()]

    def create_key(self, key: StoredKeyCreate) -> tuple[KeyView, bool]:
        """Record a key by its hash: (it, True), or (the key of that hash recorded first, False)."""
        response = self.request("POST", "/keys", json=key.model_dump(mode="json"))
        return KeyView.model_validate_json(response.content), response.status_code == 201

    def keys(
        self, *, tenant: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[KeyView]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if tenant is not None:
            params["tenant"] = tenant
        response = self.request("GET", "/keys", params=params)
        return [KeyView.model_validate(item) for item in response.json()]

    def revoke_key(self, key_id: str) -> KeyView:
        return KeyView.model_validate_json(self.request("DELETE", f"/keys/{key_id}").content)

    def identify_key(self, key_hash: str) -> KeyIdentity | None:
        """The active key of this SHA-256 with its tenant's limits; None when unknown or revoked."""
        try:
            response = self.request("GET", f"/keys/by-hash/{key_hash}")
        except NotFound:
            return None
        return KeyIdentity.model_validate_json(response.content)


class QueueServiceClient(InternalClient):
    """The legacy queue-service's HTTP API in the contract's terms: the one client of it.

    The gateway hands tasks over and takes them back through it, its leader asks where a run is,
    and the queue-worker's lease client (`crucible_queue.client`) extends it. The queue-service's
    own wire format stays in the queue-service.
    """

    def submit(self, task: EvalTask) -> None:
        """Append `task` to the deque. Conflict while the queue holds that run already (queued or
        processing: it dedupes by task id), Busy when it is full, Unavailable when unreachable."""
        self.request("POST", "/tasks", json=task.model_dump(mode="json"))

    def cancel(self, task_id: str) -> None:
        """Take a still-queued task out of the deque. NotFound when not queued, Conflict when
        the queue-worker is already processing it."""
        self.request("DELETE", f"/tasks/{task_id}")

    def state_of(self, task_id: str) -> str | None:
        """`queued`, `processing`, `completed`, `failed` or `cancelled`; None when the queue does
        not know the task (its deque was lost in a restart, or it forgot the task long ago)."""
        try:
            response = self.request("GET", f"/tasks/{task_id}")
        except NotFound:
            return None
        return str(response.json()["state"])

    def status(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The queue-service's own report of its depth (queued, processing, ...)."""
        kwargs = {} if timeout is None else {"timeout": timeout}
        return self.request("GET", "/status", **kwargs).json()

    def ping(self, *, timeout: float | None = None) -> None:
        """Returns when the queue-service answers, raises Unavailable when not."""
        kwargs = {} if timeout is None else {"timeout": timeout}
        self.request("GET", "/health", **kwargs)


class ExecutorPool:
    """Executor instances tried in an order fixed per run, skipping those that answer busy or
    cannot be reached.

    Every attempt of one run (eval_id, role) asks the instances in the same order (rendezvous
    hashing: highest hash of run and URL first), so a retry after a lost consumer, a redelivered
    message or the reconciler reaches the instance that ran it first, and that instance joins
    the run still going or hands back its kept result: the program runs once. Runs of different
    evaluations spread evenly over the instances, and adding or removing one moves only the runs
    that ranked it first. `execute` returns the first instance's result; it raises Busy when
    every live instance is at capacity and Unavailable when none can be reached. An unreachable
    instance is skipped for `down_cooldown` seconds, unless every instance is down.

    A consumer may hold more runs than the executors have slots, so that one run's calls to
    storage overlap another's program. A run that finds every slot taken waits for one here, up to
    `busy_wait` seconds (asking again after 10 ms, then 20, 40, up to 100 ms, with jitter): a slot
    frees within a program's time, and a wait in place costs far less than the busy retry the
    consumer would otherwise schedule (a storage write and a new delivery). Only then Busy.
    """

    def __init__(
        self,
        urls: list[str],
        *,
        internal_key: str | None = None,
        down_cooldown: float = 5.0,
        connect_timeout: float = 2.0,
        busy_wait: float = 0.0,
    ) -> None:
        if not urls:
            raise ValueError("an executor pool needs at least one URL")
        self.clients = [InternalClient(url, internal_key=internal_key) for url in urls]
        self._connect_timeout = connect_timeout
        self._busy_wait = busy_wait
        self._down_until: dict[str, float] = {}
        self._down_cooldown = down_cooldown

    def preference(self, eval_id: str, role: Role) -> list[InternalClient]:
        """The instances in the order every attempt of this run tries them."""

        def rank(client: InternalClient) -> bytes:
            return hashlib.blake2b(f"{eval_id}/{role}@{client.base_url}".encode()).digest()

        return sorted(self.clients, key=rank, reverse=True)

    def _rotation(self, eval_id: str, role: Role) -> list[InternalClient]:
        ordered = self.preference(eval_id, role)
        now = time.monotonic()
        live = [c for c in ordered if self._down_until.get(c.base_url, 0) <= now]
        return live or ordered

    def execute(self, request: ExecuteRequest) -> ExecuteResult:
        body = request.model_dump_json().encode()
        deadline = time.monotonic() + self._busy_wait
        pause = BUSY_PAUSE_FIRST
        while True:
            try:
                return self._execute_once(request, body)
            except Busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                time.sleep(min(left, pause * random.uniform(0.5, 1.0)))  # noqa: S311 -- jitter
                pause = min(pause * 2, BUSY_PAUSE_MAX)

    def _execute_once(self, request: ExecuteRequest, body: bytes) -> ExecuteResult:
        timeout = Timeout(connect=self._connect_timeout, read=request.timeout + 30)
        busy: list[Busy] = []
        down: list[Unavailable] = []
        for client in self._rotation(request.eval_id, request.role):
            try:
                # Idempotent per (eval_id, role): a repeat joins the run or returns its result.
                response = client.request(
                    "POST",
                    "/execute",
                    content=body,
                    timeout=timeout,
                    idempotent=True,
                )
            except Busy as exc:
                busy.append(exc)
                continue
            except Unavailable as exc:
                self._down_until[client.base_url] = time.monotonic() + self._down_cooldown
                down.append(exc)
                continue
            return ExecuteResult.model_validate_json(response.content)
        if busy:
            retry_after = min(exc.retry_after for exc in busy)
            raise Busy("every executor is at capacity", retry_after=retry_after)
        raise Unavailable("no executor could be reached", errors=[str(e) for e in down])

    def kill(self, eval_id: str, role: Role | None = None) -> bool:
        """Ask every instance to end the program of `eval_id` (of `role` only, when given: the
        other role's run goes on); True when one of them was running it."""
        killed = False
        params = {"role": role.value} if role is not None else {}
        for client in self.clients:
            try:
                response = client.request(
                    "POST", f"/kill/{eval_id}", params=params, idempotent=True
                )
                killed = killed or bool(response.json().get("killed"))
            except CrucibleError:
                continue
        return killed

    def close(self) -> None:
        for client in self.clients:
            client.close()


def execute_request_for(task: EvalTask) -> ExecuteRequest:
    return ExecuteRequest.of(eval_id=task.eval_id, role=task.role, program=task.program)
