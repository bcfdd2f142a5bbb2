"""Warm single-use sandboxes: each slot keeps the sandbox of its next program ready.

A warm sandbox is a cold run stopped just before the program: its cgroup (`run-<n>`), tmpfs,
uid, rlimits, bwrap namespaces, mounts and seccomp filter are in place and the language's
launcher (warm_python.py, written as the sandbox's main.py) has started the interpreter and
waits on stdin. The hand-over (Runner._run_warm) writes the request's memory limit to its
cgroup, and a header, the code and the program's stdin to the launcher's stdin; the launcher
lowers its RLIMIT_CPU to the run's (counted from then), puts the code in main.py and runs it as
`python3 -I -B main.py` would. After the run the sandbox is torn down like a cold one. Nothing is
reused: every sandbox runs one program.

`WarmPool` prepares a slot's next sandbox as soon as the slot's current program has its sandbox
(the hand-over, or a cold start), so while that program runs. The two exist side by side: each
has its own uid (uids.Seats), cgroup and tmpfs, so the prepared one counts against none of the
running program's limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import subprocess
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING

from crucible_contracts.limits import MIB
from crucible_executor import metrics
from crucible_executor.cgroups import RunCgroup
from crucible_executor.limits import RunLimits
from crucible_executor.sandbox import STARTED_MARKER, Identity

if TYPE_CHECKING:
    from crucible_executor.runner import Runner, Started

log = logging.getLogger(__name__)

# Languages with a launcher; the others (javascript) always start cold.
LAUNCHERS = {"python": "warm_python.py"}
# What a launcher writes to stdout once it waits for its program (after the sandbox's own
# STARTED_MARKER); the executor reads it off, so the program's output starts as in a cold run.
READY_MARKER = b"\x1ecrucible-warm-ready\x1e"


@dataclass
class WarmSandbox:
    """One prepared sandbox of one slot, waiting for its program."""

    slot: int
    language: str
    identity: Identity
    # The limits it was started under (the executor's maxima).
    limits: RunLimits
    cgroup: RunCgroup | None
    started: Started
    # Unmounts its tmpfs, closes its fds, kills and removes its cgroup (LIFO).
    cleanup: contextlib.ExitStack
    prepared_seconds: float = 0.0
    ready_at: float = 0.0
    handed_over: bool = False
    _closed: bool = field(default=False, repr=False)

    def alive(self) -> bool:
        """Still waiting: its sandbox process has not exited."""
        return self.started.proc.poll() is None

    def close_pipes(self) -> None:
        """Close the executor's ends of the pipes, unless a run took them over."""
        if self.handed_over or self._closed:
            return
        self._closed = True
        for fd in (self.started.stdin, self.started.out, self.started.err):
            with contextlib.suppress(OSError):
                os.close(fd)


@functools.cache
def launcher_source(language: str) -> bytes:
    return resources.files("crucible_executor").joinpath(LAUNCHERS[language]).read_bytes()


def handover_payload(code: bytes, stdin: bytes, limits: RunLimits, *, cgroup: bool) -> bytes:
    """What the launcher reads from stdin: a header (the code's length, the run's CPU seconds,
    its RLIMIT_AS bytes where it has no cgroup, else 0), the code, then the program's stdin."""
    address_space = 0 if cgroup else limits.memory_mb * MIB
    header = b"%016d%08d%016d" % (len(code), limits.cpu_seconds, address_space)
    return header + code + stdin


async def read_marker(out: int, err: int, proc: subprocess.Popen, *, within: float) -> bytes:
    """Wait until the sandbox wrote its start marker and the launcher its ready marker; the
    start marker is returned (it begins the run's stdout). OSError when the sandbox ended first
    (with what it wrote to stderr), TimeoutError after `within` seconds."""
    expected = STARTED_MARKER + READY_MARKER
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    os.set_blocking(out, False)
    data = b""
    loop.add_reader(out, readable.set)
    try:
        async with asyncio.timeout(within):
            while len(data) < len(expected):
                await readable.wait()
                readable.clear()
                try:
                    chunk = os.read(out, len(expected) - len(data))
                except BlockingIOError:
                    continue
                if not chunk:
                    break
                data += chunk
    finally:
        loop.remove_reader(out)
    if data != expected:
        os.set_blocking(err, False)
        with contextlib.suppress(OSError):
            data += os.read(err, 4096)
        raise OSError(f"the warm sandbox ended before it was ready (exit {proc.poll()}): {data!r}")
    return STARTED_MARKER


@dataclass(frozen=True)
class Waiting:
    """A prepared sandbox as /health shows it: its slot, uid and cgroup."""

    slot: int
    uid: int | None
    cgroup: str | None


class WarmPool:
    """The next sandbox of each slot, prepared in the background on the event loop.

    `refill(slot)` starts preparing (at start-up, and once the slot's program has its sandbox:
    the run calls it through `Execution.on_start`); `take(slot)` hands the slot's sandbox to a
    run, waiting for one still being prepared (it is as far along as a cold start would be),
    else None: the run starts cold. A sandbox that waited `max_idle` seconds or whose process
    died is discarded and replaced; after a failed preparation the slot runs cold and tries
    again `retry` seconds later. `close()` tears all down.
    """

    def __init__(
        self,
        runner: Runner,
        slots: int,
        *,
        executor_id: str = "executor",
        language: str = "python",
    ) -> None:
        settings = runner.settings
        self.runner = runner
        self.slots = slots
        self.executor_id = executor_id
        self.language = language
        self.enabled = language in runner.warm_languages
        self.max_idle = settings.warm_max_idle_seconds
        self.retry = settings.warm_retry_seconds
        self.prepare_timeout = settings.warm_prepare_timeout_seconds
        self._ready: dict[int, WarmSandbox] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._preparing: dict[int, asyncio.Event] = {}
        # When a slot whose preparation failed may try again (loop time).
        self._retry_at: dict[int, float] = {}
        # Teardowns of discarded sandboxes still under way (threads: cancelling does not stop
        # them); the executor's shutdown waits for them.
        self._discarding: set[asyncio.Future[None]] = set()
        self._closed = False

    @property
    def ready_count(self) -> int:
        return len(self._ready)

    @property
    def preparing_count(self) -> int:
        return len(self._preparing)

    def ready(self, slot: int) -> bool:
        return slot in self._ready

    def waiting(self) -> list[Waiting]:
        """The prepared sandboxes, by slot."""
        return [
            Waiting(
                slot=slot,
                uid=sandbox.identity.uid if sandbox.identity.dedicated else None,
                cgroup=sandbox.cgroup.name if sandbox.cgroup is not None else None,
            )
            for slot, sandbox in sorted(self._ready.items())
        ]

    def start(self) -> None:
        for slot in range(self.slots):
            self.refill(slot)

    def refill(self, slot: int) -> None:
        """Prepare the slot's next sandbox in the background (unless one is ready or under way)."""
        if not self.enabled or self._closed:
            return
        previous = self._tasks.get(slot)
        if previous is not None and not previous.done():
            return
        self._tasks[slot] = asyncio.create_task(self._keep(slot), name=f"warm-slot-{slot}")

    async def take(self, slot: int) -> WarmSandbox | None:
        """The slot's warm sandbox for a run (waiting for one being prepared), else None.

        Either way the slot's background task ends here; the run calls `refill` once its
        program has its sandbox."""
        if not self.enabled:
            return None
        preparing = self._preparing.get(slot)
        if slot not in self._ready and preparing is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(preparing.wait(), self.prepare_timeout)
        sandbox = self._ready.pop(slot, None)
        self._gauge()
        task = self._tasks.pop(slot, None)
        if task is not None:
            task.cancel()  # its watch of the idle sandbox (the run's now), or its retry wait
            if sandbox is None:
                await asyncio.gather(task, return_exceptions=True)
        return sandbox

    async def close(self) -> None:
        """Stop preparing and tear every waiting sandbox down (executor shutdown)."""
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*map(asyncio.shield, self._discarding), return_exceptions=True)
        waiting = list(self._ready.values())
        self._ready.clear()
        for sandbox in waiting:
            await asyncio.to_thread(self.runner.discard, sandbox)
        self._gauge()

    async def _keep(self, slot: int) -> None:
        """Prepare the slot's sandbox, then watch it until a run takes it (this task is then
        cancelled), it dies, or it has waited too long (then prepare another)."""
        loop = asyncio.get_running_loop()
        while not self._closed:
            if (wait := self._retry_at.get(slot, 0) - loop.time()) > 0:
                await asyncio.sleep(wait)
            sandbox = await self._prepare(slot)
            if sandbox is None:
                self._retry_at[slot] = loop.time() + self.retry
                continue
            reason = await self._watch(sandbox)
            if self._ready.get(slot) is not sandbox:
                return  # taken while the watch woke up: it is the run's
            del self._ready[slot]
            self._gauge()
            metrics.WARM_DISCARDED.labels(self.executor_id, reason).inc()
            log.info("warm sandbox of slot %d discarded (%s); preparing another", slot, reason)
            discarding = asyncio.ensure_future(asyncio.to_thread(self.runner.discard, sandbox))
            self._discarding.add(discarding)
            discarding.add_done_callback(self._discarding.discard)

    async def _prepare(self, slot: int) -> WarmSandbox | None:
        settled = self._preparing[slot] = asyncio.Event()
        try:
            sandbox = await self.runner.prepare(slot, self.language)
        except Exception as exc:  # any failure leaves the slot cold, not broken
            metrics.WARM_DISCARDED.labels(self.executor_id, "failed").inc()
            log.warning("could not prepare a warm sandbox for slot %d: %s", slot, exc)
            return None
        finally:
            settled.set()
            self._preparing.pop(slot, None)
        self._retry_at.pop(slot, None)
        metrics.WARM_PREPARE_SECONDS.labels(self.executor_id).observe(sandbox.prepared_seconds)
        self._ready[slot] = sandbox
        self._gauge()
        return sandbox

    async def _watch(self, sandbox: WarmSandbox) -> str:
        """Until the sandbox's process exits ("died") or it has waited max_idle ("idle")."""
        loop = asyncio.get_running_loop()
        exited = asyncio.Event()
        pidfd = os.pidfd_open(sandbox.started.proc.pid)
        loop.add_reader(pidfd, exited.set)
        try:
            await asyncio.wait_for(exited.wait(), self.max_idle)
            return "died"
        except TimeoutError:
            return "idle"
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)

    def _gauge(self) -> None:
        metrics.WARM_READY.labels(self.executor_id).set(len(self._ready))
