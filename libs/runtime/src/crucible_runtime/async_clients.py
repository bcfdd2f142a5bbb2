"""Async pooled clients of the internal services, for routes on the event loop: the calls of a
request's hot path (submit, read, key look-up), with the errors and the retry rule of `clients`.

A sync client called from an async route costs a hop to the threadpool and back per call, and
httpx's async client (anyio streams, httpcore's state machine) costs more than that hop again;
both cost more than the call itself on loopback. These speak plain HTTP/1.1 on asyncio streams
instead, with a pool of kept-alive connections: a request is one write and a read of the head
and of a Content-Length (or chunked) body. Only what the internal services answer is supported
(no redirects, no TLS, no proxies). Each client belongs to the event loop that first used it:
a service makes them in `create_app` and closes them in its lifespan.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from crucible_contracts.errors import NotFound, Unavailable
from crucible_contracts.models import (
    EvalTask,
    EvaluationCreate,
    EvaluationView,
    RunCreate,
    RunUpdate,
    RunView,
)
from crucible_contracts.names import INTERNAL_KEY_HEADER, Role
from crucible_contracts.tenancy import TENANT_HEADER, KeyIdentity
from crucible_runtime.clients import IDEMPOTENT_METHODS, raise_for_error

log = logging.getLogger(__name__)

# Idle connections kept to one service; more in flight at once are opened and closed after use.
MAX_KEEPALIVE = 64
# Requests in flight to one service at once; more wait their turn, within their timeout. The
# sync clients were held to about this many by the threadpool (40 threads) they ran in, and
# storage stops answering past ~50 requests at once (its pool of 15 database connections runs
# dry and its threads wait 30 s): a flood of clients must queue here, not there.
MAX_CONNECTIONS = 32
# What a kept-alive connection the server closed or reset under us raises, before or while the
# answer is read (`clients.STALE_CONNECTION_ERRORS` in asyncio's terms).
_STALE = (ConnectionError, asyncio.IncompleteReadError)
_NO_BODY_STATUSES = frozenset({204, 304})


class _Refused(Exception):
    """The service's answer broke HTTP/1.1 as this client reads it."""


@dataclass(frozen=True)
class Reply:
    """An answer of an internal service: status, headers (lower-case names) and body."""

    status_code: int
    content: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return jsonlib.loads(self.content)


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def usable(self) -> bool:
        """False once the server closed it while it sat in the pool."""
        return not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


class AsyncInternalClient:
    """`clients.InternalClient` on the event loop: network failures and timeouts become
    Unavailable, an error answer the exception the service raised, and an idempotent request
    (or one marked `idempotent=True`) that meets a kept-alive connection closed or reset by the
    server is sent once more, on a new connection. A pooled connection the server closed while
    idle is dropped before use, whatever the method."""

    def __init__(
        self, base_url: str, *, internal_key: str | None = None, timeout: float = 10
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"an internal service URL is http://host[:port], not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._host = parts.hostname
        self._port = parts.port or 80
        self._prefix = parts.path.rstrip("/")
        fixed = f"Host: {parts.netloc}\r\nAccept: application/json\r\n"
        if internal_key:
            fixed += f"{INTERNAL_KEY_HEADER}: {_header_value(internal_key)}\r\n"
        self._fixed = fixed
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        idempotent: bool | None = None,
    ) -> Reply:
        """Send one request (`json` is encoded here; `content` is sent as JSON already encoded);
        the answer, or the exception an error answer stands for."""
        if idempotent is None:
            idempotent = method.upper() in IDEMPOTENT_METHODS
        if json is not None:
            content = jsonlib.dumps(json, separators=(",", ":")).encode()
        data = self._encode(method, path, content, headers, params)
        try:
            async with asyncio.timeout(self.timeout), self._slots:
                reply = await self._exchange(data, method=method, retry_stale=idempotent)
        except (
            OSError,
            TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            _Refused,
        ) as exc:
            raise Unavailable(f"{self.base_url} unreachable: {exc!r}", url=self.base_url) from exc
        if not 200 <= reply.status_code < 300:
            raise_for_error(
                httpx.Response(reply.status_code, headers=reply.headers, content=reply.content)
            )
        return reply

    def _encode(
        self,
        method: str,
        path: str,
        content: bytes | None,
        headers: dict[str, str] | None,
        params: dict[str, Any] | None,
    ) -> bytes:
        target = self._prefix + path
        if params:
            target += "?" + urlencode(params)
        head = f"{method} {_header_value(target)} HTTP/1.1\r\n{self._fixed}"
        if content is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(content)}\r\n"
        elif method in ("POST", "PUT", "PATCH"):
            head += "Content-Length: 0\r\n"
        for name, value in (headers or {}).items():
            head += f"{_header_value(name)}: {_header_value(value)}\r\n"
        data = (head + "\r\n").encode("latin-1")
        return data + content if content else data

    async def _exchange(self, data: bytes, *, method: str, retry_stale: bool) -> Reply:
        connection, reused = await self._checkout()
        try:
            connection.writer.write(data)
            reply, keep = await read_reply(connection.reader, method=method)
        except _STALE as exc:
            connection.close()
            if not (reused and retry_stale):
                raise
            log.info("%s %s: connection lost (%r), sent once more", method, self.base_url, exc)
            connection, _ = await self._checkout(fresh=True)
            try:
                connection.writer.write(data)
                reply, keep = await read_reply(connection.reader, method=method)
            except BaseException:
                connection.close()
                raise
        except BaseException:
            # Cancelled or timed out mid-answer: the connection's state is unknown.
            connection.close()
            raise
        if keep and len(self._idle) < MAX_KEEPALIVE:
            self._idle.append(connection)
        else:
            connection.close()
        return reply

    async def _checkout(self, *, fresh: bool = False) -> tuple[_Connection, bool]:
        while self._idle and not fresh:
            connection = self._idle.pop()
            if connection.usable():
                return connection, True
            connection.close()
        reader, writer = await asyncio.open_connection(self._host, self._port)
        return _Connection(reader, writer), False

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def _header_value(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("a header value or a path may not hold a line break")
    return value


async def read_reply(reader: asyncio.StreamReader, *, method: str) -> tuple[Reply, bool]:
    """The answer on `reader` and whether its connection may be used again."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        version, status_text = lines[0].split(" ", 2)[:2]
        status = int(status_text)
    except ValueError as exc:
        raise _Refused(f"not an HTTP status line: {lines[0][:100]!r}") from exc
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    keep = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
    if method == "HEAD" or status in _NO_BODY_STATUSES or status < 200:
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body, keep = await reader.read(), False
    return Reply(status, body, headers), keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            # Trailers (none expected) end with an empty line.
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _scoped(tenant: str | None) -> dict[str, str] | None:
    return {TENANT_HEADER: tenant} if tenant is not None else None


class AsyncStorageClient(AsyncInternalClient):
    """The storage calls of the gateway's hot path (`clients.StorageClient` has them all)."""

    async def create_evaluation(self, evaluation: EvaluationCreate) -> EvaluationView:
        response = await self.request(
            "POST", "/evaluations", content=evaluation.model_dump_json().encode()
        )
        return EvaluationView.model_validate_json(response.content)

    async def evaluation_json(self, eval_id: str, *, tenant: str | None = None) -> bytes:
        """The evaluation as storage's JSON (an `EvaluationView`), unparsed, for a caller that
        only passes it on; NotFound when unknown or (with `tenant`) another tenant's."""
        response = await self.request("GET", f"/evaluations/{eval_id}", headers=_scoped(tenant))
        return response.content

    async def get_evaluation(self, eval_id: str, *, tenant: str | None = None) -> EvaluationView:
        return EvaluationView.model_validate_json(
            await self.evaluation_json(eval_id, tenant=tenant)
        )

    async def add_run(self, eval_id: str, run: RunCreate) -> RunView:
        response = await self.request(
            "POST", f"/evaluations/{eval_id}/runs", content=run.model_dump_json().encode()
        )
        return RunView.model_validate_json(response.content)

    async def update_run(self, eval_id: str, role: Role, update: RunUpdate) -> RunView:
        body = update.model_dump_json(exclude_none=True).encode()
        response = await self.request("PATCH", f"/evaluations/{eval_id}/runs/{role}", content=body)
        return RunView.model_validate_json(response.content)

    async def identify_key(self, key_hash: str) -> KeyIdentity | None:
        """The active key of this SHA-256 with its tenant's limits; None when unknown or revoked."""
        try:
            response = await self.request("GET", f"/keys/by-hash/{key_hash}")
        except NotFound:
            return None
        return KeyIdentity.model_validate_json(response.content)


class AsyncQueueServiceClient(AsyncInternalClient):
    """The queue-service's hand-over of a task (`clients.QueueServiceClient.submit`)."""

    async def submit(self, task: EvalTask) -> None:
        """Append `task` to the deque. Conflict while the queue holds that run already, Busy
        when it is full, Unavailable when unreachable."""
        await self.request("POST", "/tasks", content=task.model_dump_json().encode())
