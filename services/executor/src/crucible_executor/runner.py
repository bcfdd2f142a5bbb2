"""Runs one program in the sandbox to its end: stage the code, spawn, feed stdin, read output with
a cap, wait under the wall-clock timer, and turn what happened into an ExecuteResult."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from crucible_contracts.models import ExecuteRequest, ExecuteResult
from crucible_contracts.names import Role
from crucible_contracts.status import Status
from crucible_executor.config import SandboxMode, Settings
from crucible_executor.languages import Language, load_languages
from crucible_executor.limits import RunLimits
from crucible_executor.outcome import Ended, classify, exit_code_of
from crucible_executor.sandbox import (
    STARTED_MARKER,
    Identity,
    Launch,
    bwrap_launch,
    identity_for,
    kill_uid,
    tasks_of_uid,
    unshare_launch,
)
from crucible_executor.streams import Captured, consume_output, feed_input
from crucible_executor.uids import UidClaim
from crucible_executor.workdir import make_workdir, remove_tree

log = logging.getLogger(__name__)

# After the sandbox's root process has exited its namespaces are gone, so the pipes reach EOF at
# once; this bound only protects the executor from a pipe held open by something unforeseen.
DRAIN_GRACE_SECONDS = 2.0


@dataclass
class Execution:
    """One run as POST /kill sees it: which eval and role, and the process group to end."""

    eval_id: str
    role: Role = Role.PRIMARY
    slot: int = 0
    pid: int | None = None
    killed: bool = False
    timed_out: bool = False

    def kill(self) -> None:
        """End the program now; its result will say failed/killed."""
        self.killed = True
        self._kill_group()

    def time_out(self) -> None:
        self.timed_out = True
        self._kill_group()

    def _kill_group(self) -> None:
        # pid is cleared as soon as the process is reaped, so a recycled pid is never signalled.
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)


class Runner:
    """Runs programs in one sandbox mode under the limits of `settings`."""

    def __init__(
        self,
        settings: Settings,
        *,
        mode: SandboxMode,
        languages: dict[str, Language] | None = None,
        uids: UidClaim | None = None,
    ) -> None:
        """`uids` (one per slot) is claimed here when running as root and none is given."""
        if mode is SandboxMode.AUTO:
            raise ValueError("a Runner needs a concrete sandbox mode; resolve auto first")
        self.settings = settings
        self.mode = mode
        self.languages = languages if languages is not None else load_languages()
        if uids is None and os.geteuid() == 0:
            uids = UidClaim(
                base=settings.sandbox_uid_base,
                count=settings.executor_slots,
                lock_dir=settings.uid_lock_dir,
            )
        self.uids = uids

    async def run(
        self, request: ExecuteRequest, *, slot: int = 0, execution: Execution | None = None
    ) -> ExecuteResult:
        """Run `request.code` to its end; the request is assumed valid (see service.validate).

        Never raises for what the program does: time, memory, crashes and kills are results. A
        sandbox that cannot be started is a result with status error.
        """
        execution = execution or Execution(eval_id=request.eval_id, role=request.role, slot=slot)
        language = self.languages[request.language]
        limits = RunLimits.for_run(
            self.settings, timeout=request.timeout, memory_mb=request.memory_mb
        )
        identity = identity_for(slot, self.uids.uids if self.uids else None)
        started = time.monotonic()
        try:
            async with self._staged(request, language, limits, identity) as launch:
                ended, out, err = await self._execute(launch, request, limits, execution)
        except OSError as exc:
            log.exception("sandbox for eval %s could not be started", request.eval_id)
            return self._result(
                request,
                status=Status.ERROR,
                reason="sandbox_failed",
                error=f"the executor could not start the sandbox: {exc}",
                started=started,
            )
        finally:
            if identity.dedicated:
                # Belt and braces: the namespaces already took every process with them.
                leftovers = await asyncio.to_thread(kill_uid, identity.uid)
                if leftovers:
                    # Usually the sandbox's init, still exiting after bwrap itself was reaped.
                    log.debug("killed %d leftover processes of uid %d", leftovers, identity.uid)
        return self._collect(request, ended, out, err, limits, language, started)

    # --- private steps ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _staged(
        self, request: ExecuteRequest, language: Language, limits: RunLimits, identity: Identity
    ) -> AsyncIterator[Launch]:
        """Put the code where the sandbox will find it, and build the command; clean up after."""
        extra_nproc = 0
        if not identity.dedicated:
            extra_nproc = await asyncio.to_thread(tasks_of_uid, identity.uid)
        code = request.code.encode()
        if self.mode is SandboxMode.BWRAP:
            code_fd = os.memfd_create("crucible-code", os.MFD_CLOEXEC)
            try:
                os.write(code_fd, code)
                os.lseek(code_fd, 0, os.SEEK_SET)
                yield bwrap_launch(
                    self.settings,
                    limits=limits,
                    language=language,
                    identity=identity,
                    code_fd=code_fd,
                    extra_nproc=extra_nproc,
                )
            finally:
                os.close(code_fd)
            return
        workdir = await asyncio.to_thread(make_workdir, language.file, code, identity)
        try:
            yield unshare_launch(
                self.settings,
                limits=limits,
                language=language,
                identity=identity,
                workdir=workdir,
                extra_nproc=extra_nproc,
            )
        finally:
            await asyncio.to_thread(remove_tree, workdir)

    async def _execute(
        self, launch: Launch, request: ExecuteRequest, limits: RunLimits, execution: Execution
    ) -> tuple[Ended, Captured, Captured]:
        stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            proc = await self._spawn(launch, stdin_r, out_w, err_w)
        except BaseException:
            for fd in (stdin_w, out_r, err_r):
                os.close(fd)
            raise
        finally:
            for fd in (stdin_r, out_w, err_w):
                os.close(fd)
        execution.pid = proc.pid
        if execution.killed:  # /kill arrived while it was being spawned
            execution.kill()
        out = Captured(cap=limits.max_output_bytes + len(STARTED_MARKER))
        err = Captured(cap=limits.max_output_bytes)
        feeding = asyncio.create_task(feed_input(stdin_w, (request.stdin or "").encode()))
        readers = asyncio.gather(consume_output(out_r, out), consume_output(err_r, err))
        try:
            wait_status, usage = await self._wait(proc, limits.timeout, execution)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(readers), DRAIN_GRACE_SECONDS)
        finally:
            feeding.cancel()
            readers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await readers
        ended = Ended(
            started=bytes(out.data[: len(STARTED_MARKER)]) == STARTED_MARKER,
            exit_code=exit_code_of(wait_status),
            killed=execution.killed,
            timed_out=execution.timed_out,
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            peak_rss_kib=usage.ru_maxrss,
            stderr_tail=err.tail.decode("utf-8", errors="replace"),
        )
        return ended, out, err

    async def _spawn(
        self, launch: Launch, stdin: int, stdout: int, stderr: int
    ) -> subprocess.Popen:
        """fork+exec in a thread (fork of a large process is not free); a cancelled spawn is reaped."""
        kwargs = {}
        if launch.user is not None:
            kwargs = {"user": launch.user, "group": launch.group, "extra_groups": []}
        spawning = asyncio.ensure_future(
            asyncio.to_thread(
                subprocess.Popen,
                launch.argv,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                env=launch.env,
                cwd=launch.cwd,
                pass_fds=launch.pass_fds,
                start_new_session=True,
                **kwargs,
            )
        )
        try:
            return await asyncio.shield(spawning)
        except asyncio.CancelledError:
            proc = await spawning
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise

    async def _wait(
        self, proc: subprocess.Popen, limit_seconds: float, execution: Execution
    ) -> tuple[int, resource.struct_rusage]:
        """Wait for the sandbox to exit, SIGKILLing its group after `limit_seconds`; reap it with
        its rusage (the CPU time and peak RSS of the whole tree it reaped)."""
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(proc.pid)
        exited = asyncio.Event()
        loop.add_reader(pidfd, exited.set)
        try:
            try:
                await asyncio.wait_for(exited.wait(), limit_seconds)
            except TimeoutError:
                execution.time_out()
                await exited.wait()
            # The pidfd said it has exited: this reaps a zombie and does not block.
            _, wait_status, usage = os.wait4(proc.pid, 0)  # noqa: ASYNC222
        except asyncio.CancelledError:
            execution.kill()
            os.wait4(proc.pid, 0)  # noqa: ASYNC222 -- SIGKILLed: returns at once
            proc.returncode = -signal.SIGKILL
            raise
        finally:
            execution.pid = None
            loop.remove_reader(pidfd)
            os.close(pidfd)
        proc.returncode = os.waitstatus_to_exitcode(wait_status)  # Popen must not reap it again
        return wait_status, usage

    def _collect(
        self,
        request: ExecuteRequest,
        ended: Ended,
        out: Captured,
        err: Captured,
        limits: RunLimits,
        language: Language,
        started: float,
    ) -> ExecuteResult:
        outcome = classify(ended, limits=limits, memory_errors=language.memory_errors)
        marker = len(STARTED_MARKER) if ended.started else 0
        return self._result(
            request,
            status=outcome.status,
            exit_code=outcome.exit_code,
            reason=outcome.reason,
            output=bytes(out.data[marker:]).decode("utf-8", errors="replace"),
            error=bytes(err.data).decode("utf-8", errors="replace"),
            output_truncated=out.total - marker > limits.max_output_bytes,
            error_truncated=err.total > limits.max_output_bytes,
            started=started,
        )

    def _result(self, request: ExecuteRequest, *, started: float, **fields) -> ExecuteResult:
        return ExecuteResult(
            eval_id=request.eval_id,
            executor_id=self.settings.executor_id,
            runtime_ms=round((time.monotonic() - started) * 1000, 3),
            **fields,
        )
