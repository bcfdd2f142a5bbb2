"""The edge of every service: a body cap and body read deadlines, enforced while the body streams.

`BodyGuard` is an ASGI middleware, the outermost of each app (`crucible_runtime.web`):

- a request whose `Content-Length` is over `max_body_bytes` is answered 413 before one byte of
  its body is read; a body without a length (chunked) is counted as it arrives and answered 413
  as soon as it passes the cap, so no service ever holds more than `max_body_bytes` of it;
- a body whose next chunk does not arrive within `body_idle_timeout` seconds, or that is not
  complete within `body_timeout` seconds of the request head, is answered 408, and the
  connection is closed.

Both answers are the one error body (`crucible_contracts.errors`). The request head (its size and
how long it may take to arrive) is bounded by the server itself: `crucible_runtime.serve`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crucible_contracts.errors import CrucibleError, PayloadTooLarge, RequestTimeout
from crucible_contracts.limits import MIB
from crucible_contracts.settings import ServiceSettings


@dataclass(frozen=True)
class EdgeLimits:
    """The bounds `BodyGuard` enforces; each service reads them from its settings."""

    max_body_bytes: int = 16 * MIB
    body_idle_timeout: float = 10.0
    body_timeout: float = 60.0
    # Larger caps for named paths (e.g. the gateway's batch endpoint); exact path match.
    max_body_bytes_by_path: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, settings: ServiceSettings, by_path: dict[str, int] | None = None) -> EdgeLimits:
        """The limits a service's settings name; `by_path` maps a path to a larger cap."""
        return cls(
            max_body_bytes=settings.max_body_bytes,
            body_idle_timeout=settings.body_idle_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
            max_body_bytes_by_path=tuple((by_path or {}).items()),
        )

    def cap_for(self, path: str) -> int:
        return dict(self.max_body_bytes_by_path).get(path, self.max_body_bytes)


class _Rejected(Exception):
    """Raised into the app from `receive` when the body broke a bound; `BodyGuard` answers it."""

    def __init__(self, error: CrucibleError) -> None:
        super().__init__(error.message)
        self.error = error


class BodyGuard:
    """ASGI middleware: see the module docstring."""

    def __init__(self, app: ASGIApp, limits: EdgeLimits | None = None) -> None:
        self.app = app
        self.limits = limits or EdgeLimits()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.limits.cap_for(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            await _answer(send, _too_large(cap))
            return
        await _GuardedRequest(self.app, self.limits, cap).run(scope, receive, send)


class _GuardedRequest:
    """One request under the guard: counts its body, times its chunks, answers a broken bound."""

    def __init__(self, app: ASGIApp, limits: EdgeLimits, cap: int) -> None:
        self.app, self.limits, self.cap = app, limits, cap
        self.received = 0
        self.deadline = time.monotonic() + limits.body_timeout
        self.body_done = False
        self.rejected: CrucibleError | None = None
        self.started = False

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def guarded_receive() -> Message:
            return await self._receive(receive)

        async def guarded_send(message: Message) -> None:
            if self.rejected is not None:
                return  # the app's own answer to the failure it was handed; ours goes instead
            if message["type"] == "http.response.start":
                self.started = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            # What the app raised because its body was refused is answered below; nothing else.
            if self.rejected is None:
                raise
        if self.rejected is not None and not self.started:
            await _answer(send, self.rejected)

    async def _receive(self, receive: Receive) -> Message:
        if self.rejected is not None:
            raise _Rejected(self.rejected)
        if self.body_done:
            return await receive()  # after the body: only a disconnect is left to wait for
        wait = min(self.limits.body_idle_timeout, self.deadline - time.monotonic())
        with anyio.move_on_after(max(wait, 0)) as scope:
            message = await receive()
        if scope.cancelled_caught:
            self.rejected = RequestTimeout(
                "the request body did not arrive in time: at most "
                f"{self.limits.body_idle_timeout:g} s between chunks and "
                f"{self.limits.body_timeout:g} s in all",
                idle_timeout_seconds=self.limits.body_idle_timeout,
                timeout_seconds=self.limits.body_timeout,
            )
            raise _Rejected(self.rejected)
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.cap:
                self.rejected = _too_large(self.cap)
                raise _Rejected(self.rejected)
            self.body_done = not message.get("more_body", False)
        return message


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before we see it
    return None


def _too_large(cap: int) -> PayloadTooLarge:
    size = f"{cap // MIB} MiB" if cap % MIB == 0 else f"{cap} bytes"
    return PayloadTooLarge(f"the request body is over the limit of {size}", limit=cap)


async def _answer(send: Send, error: CrucibleError) -> None:
    """Send `error` as the one error body and ask the server to close the connection: whatever
    is left of the request body is not worth reading."""
    body = json.dumps(error.body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
