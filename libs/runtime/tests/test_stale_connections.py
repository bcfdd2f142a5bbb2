"""An internal client sends an idempotent request once more when the server closed or reset the
kept-alive connection it was sent on, and never repeats a request that is not idempotent."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from crucible_contracts.errors import Unavailable
from crucible_runtime.clients import InternalClient

BODY = b'{"ok": true}'


class DroppingServer:
    """A real HTTP/1.1 server on loopback: it answers the first request of each connection and
    keeps the connection alive, then takes the second request on it and drops the connection
    without an answer (closes it, or resets it with `reset`), as a service does whose
    keep-alive timeout races the client's next call, or that closed its connections after an
    error. With `answer_first=False` it drops every request. `requests` lists (connection number, method, path) of every request it received."""

    def __init__(self, *, reset: bool, answer_first: bool = True) -> None:
        self.reset = reset
        self.answer_first = answer_first
        self.requests: list[tuple[int, str, str]] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._server.close()

    def _accept(self) -> None:
        for number in range(1, 1_000):
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        with conn, conn.makefile("rb") as stream:
            for index in range(2):
                request = _read_request(stream)
                if request is None:
                    return
                self.requests.append((number, *request))
                if index == 0 and self.answer_first:
                    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    conn.sendall(head + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY)
                    continue
                if self.reset:
                    # Linger 0: close sends RST instead of FIN (the client reads ECONNRESET).
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return


def _read_request(stream) -> tuple[str, str] | None:
    line = stream.readline()
    if not line:
        return None
    method, path, _ = line.decode().split(" ", 2)
    length = 0
    while (header := stream.readline()) not in (b"\r\n", b""):
        name, _, value = header.decode().partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    stream.read(length)
    return method, path


@pytest.fixture(params=["closed", "reset"])
def dropping_server(request: pytest.FixtureRequest) -> Iterator[DroppingServer]:
    server = DroppingServer(reset=request.param == "reset")
    yield server
    server.close()


@pytest.fixture
def client(dropping_server: DroppingServer) -> Iterator[InternalClient]:
    made = InternalClient(dropping_server.url, timeout=5)
    yield made
    made.close()


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_an_idempotent_request_on_a_dropped_connection_is_sent_once_more(
    dropping_server, client, method
):
    client.request(method, "/thing")

    second = client.request(method, "/thing")

    assert second.json() == {"ok": True}
    assert dropping_server.requests == [
        (1, method, "/thing"),
        (1, method, "/thing"),
        (2, method, "/thing"),
    ]


def test_a_post_on_a_dropped_connection_is_not_sent_again(dropping_server, client):
    client.request("POST", "/tasks", json={"n": 1})

    with pytest.raises(Unavailable):
        client.request("POST", "/tasks", json={"n": 2})

    assert dropping_server.requests == [(1, "POST", "/tasks"), (1, "POST", "/tasks")]


def test_a_post_the_caller_marks_idempotent_is_sent_once_more(dropping_server, client):
    client.request("POST", "/execute", json={}, idempotent=True)

    second = client.request("POST", "/execute", json={}, idempotent=True)

    assert second.is_success
    assert [number for number, _, _ in dropping_server.requests] == [1, 1, 2]


def test_a_get_the_caller_marks_not_idempotent_is_not_sent_again(dropping_server, client):
    client.request("GET", "/tasks/next", idempotent=False)

    with pytest.raises(Unavailable):
        client.request("GET", "/tasks/next", idempotent=False)

    assert len(dropping_server.requests) == 2


def test_a_request_dropped_again_on_its_new_connection_fails_after_one_repeat():
    server = DroppingServer(reset=False, answer_first=False)
    try:
        with (
            contextlib.closing(InternalClient(server.url, timeout=5)) as one,
            pytest.raises(Unavailable),
        ):
            one.request("GET", "/thing")
    finally:
        server.close()

    assert server.requests == [(1, "GET", "/thing"), (2, "GET", "/thing")]
