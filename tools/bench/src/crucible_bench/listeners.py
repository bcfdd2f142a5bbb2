"""Operators following the gateway's live events (`GET /api/events`), held in a process of their own.

The listeners take every event, unfiltered, and count the bytes they receive (they need not
read the messages to load the gateway as a console would). They run in a child process, on
asyncio and httpx, so that their reading costs the driver's submitting threads nothing: the
submit latency measured beside them is the gateway's, not the driver's.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as EventType
from typing import Any

import httpx

from crucible_bench.api import OPERATOR_HEADER

OPEN_TIMEOUT = 30.0


@dataclass
class Held:
    """What the listeners saw, filled in when they are let go."""

    count: int
    pid: int | None = None
    figures: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def listening(base_url: str, *, operator_token: str, count: int) -> Iterator[Held]:
    """`count` listeners of /api/events, every one answered 200 before this yields; let go on
    exit, when `Held.figures` says what they received. RuntimeError if they could not open."""
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    results = context.Queue()
    child = context.Process(
        target=_hold,
        args=(base_url, operator_token, count, ready, stop, results),
        name="event-listeners",
        daemon=True,
    )
    child.start()
    held = Held(count=count, pid=child.pid)
    try:
        if not ready.wait(OPEN_TIMEOUT):
            raise RuntimeError(f"{count} event listeners did not open within {OPEN_TIMEOUT:g}s")
        yield held
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            held.figures = results.get(timeout=OPEN_TIMEOUT)
        child.join(5)
        if child.is_alive():
            child.kill()
    if held.figures.get("error"):
        raise RuntimeError(f"event listeners: {held.figures['error']}")


def summary(received: list[int], statuses: list[int | None], open_at_end: int) -> dict[str, Any]:
    """The figures of the listeners' run: answers, bytes each received, those still open."""
    codes: dict[str, int] = {}
    for status in statuses:
        codes[str(status)] = codes.get(str(status), 0) + 1
    return {
        "listeners": len(statuses),
        "status_codes": dict(sorted(codes.items())),
        "open_at_end": open_at_end,
        "bytes_total": sum(received),
        "bytes_min": min(received, default=0),
        "bytes_median": statistics.median(received) if received else 0,
    }


def _hold(
    base_url: str,
    operator_token: str,
    count: int,
    ready: EventType,
    stop: EventType,
    results: Any,
) -> None:
    try:
        figures = asyncio.run(_listen(base_url, operator_token, count, ready, stop))
    except Exception as exc:  # reported to the parent, which raises it
        figures = {"error": repr(exc)}
        ready.set()
    results.put(figures)


async def _listen(
    base_url: str, operator_token: str, count: int, ready: EventType, stop: EventType
) -> dict[str, Any]:
    received = [0] * count
    statuses: list[int | None] = [None] * count
    opened = asyncio.Semaphore(0)
    client = httpx.AsyncClient(
        base_url=base_url,
        headers={OPERATOR_HEADER: operator_token},
        timeout=httpx.Timeout(OPEN_TIMEOUT, read=None),
        limits=httpx.Limits(max_connections=count, max_keepalive_connections=0),
    )

    async def one(index: int) -> None:
        try:
            async with client.stream("GET", "/api/events") as response:
                statuses[index] = response.status_code
                opened.release()
                async for chunk in response.aiter_raw():
                    received[index] += len(chunk)
        finally:
            if statuses[index] is None:
                opened.release()

    async with client:
        tasks = [asyncio.create_task(one(index)) for index in range(count)]
        for _ in range(count):
            await opened.acquire()
        if any(status != 200 for status in statuses):
            raise RuntimeError(f"listeners answered {sorted(set(map(str, statuses)))}")
        ready.set()
        await asyncio.to_thread(stop.wait)
        open_at_end = sum(1 for task in tasks if not task.done())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return summary(received, statuses, open_at_end)
