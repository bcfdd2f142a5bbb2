"""Run a service's app under uvicorn with the edge's bounds on the request head.

    python -m crucible_runtime.serve crucible_storage.main:create_app --host 0.0.0.0 --port 8082

The app is a `create_app` factory, as with `uvicorn --factory`. The server is uvicorn's h11
protocol (httptools bounds neither the size nor the arrival time of a request head) with:

- `MAX_HEADER_BYTES`: h11 refuses a head that grows past it (`h11_max_incomplete_event_size`);
  the answer is 431 in the one error body, and the connection is closed;
- `HEADER_TIMEOUT_SECONDS`: a head not complete this long after the connection opened or its
  previous response ended answers 408 and the connection is closed (uvicorn's keep-alive
  timer only covers a connection that sends nothing at all after a response);
- `KEEP_ALIVE_TIMEOUT_SECONDS`: uvicorn's keep-alive timeout.

Bodies are bounded inside the app (`crucible_runtime.edge.BodyGuard`).
"""

from __future__ import annotations

import argparse
import asyncio
import json

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from crucible_contracts.errors import (
    CrucibleError,
    HeaderTooLarge,
    MalformedRequest,
    RequestTimeout,
)
from crucible_contracts.settings import ServerSettings

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class EdgeH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request head and errors in the one body."""

    header_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._head_too_large(data):
            return
        super().data_received(data)
        self._watch_head()

    def _head_too_large(self, data: bytes) -> bool:
        """h11 bounds only a head still incomplete after a read; one that arrives whole in a
        single read is measured here, so that every head over the cap answers 431."""
        limit = self.conn._max_incomplete_event_size
        buffered = self.conn.trailing_data[0] + data
        end = buffered.find(b"\r\n\r\n", 0, limit + 4)
        if end != -1 or len(buffered) <= limit:
            return False
        self._cancel_head_timer()
        self._write_error(_head_over(limit))
        return True

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._cancel_head_timer()
        buffered, _ = self.conn.trailing_data
        if len(buffered) > self.conn._max_incomplete_event_size:
            error: CrucibleError = _head_over(self.conn._max_incomplete_event_size)
        else:
            error = MalformedRequest("the request is not valid HTTP/1.1")
        self._write_error(error)

    # --- the head's deadline -------------------------------------------------------------------

    def _watch_head(self) -> None:
        """Armed while a request head is awaited on an open connection, disarmed otherwise."""
        waiting = self.conn.their_state is h11.IDLE and self.conn.our_state is h11.IDLE
        if waiting and not self.transport.is_closing():
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)
        else:
            self._cancel_head_timer()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        buffered, _ = self.conn.trailing_data
        if not buffered:
            # Nothing of a next request: an idle connection, closed without a word.
            self.transport.close()
            return
        self._write_error(
            RequestTimeout(
                f"the request head did not arrive within {self.header_timeout:g} s",
                timeout_seconds=self.header_timeout,
            )
        )

    def _write_error(self, error: CrucibleError) -> None:
        """Answer `error` in the one error body and close: h11 cannot answer a request it never
        parsed, so the response is written as bytes."""
        body = json.dumps(error.body()).encode()
        head = (
            b"HTTP/1.1 %d %s\r\n" % (error.status_code, _REASONS.get(error.status_code, b"Error"))
            + b"content-type: application/json\r\n"
            + b"content-length: %d\r\n" % len(body)
            + b"connection: close\r\n\r\n"
        )
        if not self.transport.is_closing():
            self.transport.write(head + body)
            self.transport.close()


def _head_over(limit: int) -> HeaderTooLarge:
    return HeaderTooLarge(f"the request head is over the limit of {limit} bytes", limit=limit)


def config(app: str, *, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    """The uvicorn configuration every Crucible service runs with (see the module docstring)."""
    settings = ServerSettings()
    protocol = type(
        "EdgeH11Protocol", (EdgeH11Protocol,), {"header_timeout": settings.header_timeout_seconds}
    )
    return uvicorn.Config(
        app,
        factory=True,
        host=host,
        port=port,
        log_level=log_level,
        http=protocol,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_keep_alive=int(max(1, settings.keep_alive_timeout_seconds)),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m crucible_runtime.serve")
    parser.add_argument("app", help="module:create_app, a factory of the FastAPI app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    uvicorn.Server(config(args.app, host=args.host, port=args.port, log_level=args.log_level)).run()


if __name__ == "__main__":
    main()
