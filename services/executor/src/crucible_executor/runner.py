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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from crucible_contracts.limits import MIB
from crucible_contracts.models import ExecuteRequest, ExecuteResult
from crucible_contracts.names import Role
from crucible_contracts.output import encode_stream
from crucible_contracts.status import Status
from crucible_executor.cgroups import CgroupTree, RunCgroup, RunUsage
from crucible_executor.config import SandboxMode, Settings
from crucible_executor.languages import Language, load_languages
from crucible_executor.limits import RunLimits
from crucible_executor.orphans import reap_orphans
from crucible_executor.outcome import Ended, classify, exit_code_of
from crucible_executor.sandbox import (
    STARTED_MARKER,
    Files,
    Identity,
    Launch,
    accounts,
    bwrap_launch,
    bwrap_made_files,
    data_fd,
    identity_for,
    kill_uid,
    mounted_files,
    pids_of_uid,
    tasks_of_uid,
    unshare_launch,
)
from crucible_executor.scratch import RunScratch, Scratch
from crucible_executor.seccomp import compile_filter
from crucible_executor.streams import Captured, consume_output, feed_input
from crucible_executor.uids import Seats, UidClaim, claim_uids
from crucible_executor.warm import (
    LAUNCHERS,
    WarmSandbox,
    handover_payload,
    launcher_source,
    read_marker,
)
from crucible_executor.workdir import make_workdir, remove_tree

log = logging.getLogger(__name__)

# After the sandbox's root process has exited its namespaces are gone, so the pipes reach EOF at
# once; this bound only protects the executor from a pipe held open by something unforeseen.
DRAIN_GRACE_SECONDS = 2.0


@dataclass(frozen=True)
class Started:
    """A sandbox process and the executor's ends of its pipes (stdout's first bytes read)."""

    proc: subprocess.Popen
    stdin: int
    out: int
    err: int
    out_read: bytes = b""


@dataclass
class Execution:
    """One run as POST /kill sees it: which eval and role, and the process group to end."""

    eval_id: str
    role: Role = Role.PRIMARY
    slot: int = 0
    pid: int | None = None
    killed: bool = False
    timed_out: bool = False
    # The program was handed to a warm sandbox (warm.py) rather than started cold.
    warm: bool = False
    # Where the run's callers wait for its result (slots.py); None when run directly.
    answer: asyncio.Future[ExecuteResult] | None = None
    # A warm sandbox's teardown still under way when `Runner.run` returned (defer_teardown).
    teardown: asyncio.Future[None] | None = None
    # Called once the program has its sandbox (handed over, or a cold one spawned): from then
    # on the slot may prepare the sandbox of its next program (warm.py).
    on_start: Callable[[], None] | None = None

    def deliver(self, result: ExecuteResult) -> None:
        """Answer the run's callers now (the slot stays taken until the run's task ends)."""
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(result)

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
        cgroups: CgroupTree | None = None,
        scratch: Scratch | None = None,
    ) -> None:
        """`uids` (uids.SEATS_PER_SLOT per slot: each sandbox borrows one, see uids.Seats) are
        claimed here when running as root and none are given. With
        `cgroups`, each run gets a cgroup of its own below it; without, RLIMIT_AS bounds memory
        per process and the host is not protected from a run's total (development only). With
        `scratch`, each run writes to a tmpfs of its own (bounded in inodes too)."""
        if mode is SandboxMode.AUTO:
            raise ValueError("a Runner needs a concrete sandbox mode; resolve auto first")
        self.settings = settings
        self.mode = mode
        self.cgroups = cgroups
        self.scratch = scratch
        self.languages = languages if languages is not None else load_languages()
        # The same filter for every run: compiled once (bwrap installs it; unshare cannot).
        self.seccomp_program = (
            compile_filter(settings.seccomp_deny, errno_name=settings.seccomp_errno)
            if mode is SandboxMode.BWRAP
            else None
        )
        if uids is None and os.geteuid() == 0:
            uids = claim_uids(settings)
        self.uids = uids
        self.seats = Seats(uids.uids) if uids is not None else None

    def close(self) -> None:
        """Remove the executor's cgroup tree and scratch directory (on shutdown)."""
        if self.cgroups is not None:
            self.cgroups.close()
        if self.scratch is not None:
            self.scratch.close()
        reap_orphans()

    @property
    def warm_languages(self) -> list[str]:
        """Languages whose programs can be handed to a warm sandbox (bwrap, a launcher, enabled)."""
        if not self.settings.warm_sandboxes or self.mode is not SandboxMode.BWRAP:
            return []
        return [
            name for name in LAUNCHERS if name in self.languages and self.languages[name].available
        ]

    async def run(
        self,
        request: ExecuteRequest,
        *,
        slot: int = 0,
        execution: Execution | None = None,
        warm: WarmSandbox | None = None,
        defer_teardown: bool = False,
    ) -> ExecuteResult:
        """Run `request.code` to its end; the request is assumed valid (see service.validate).

        With `warm` (a sandbox `prepare` made for this slot), the program is handed to it; one
        of another language, or that has died, is torn down and the run starts cold. With
        `defer_teardown`, a warm sandbox's teardown is left running in `execution.teardown`
        (the caller awaits it before the slot is used again) and the result returns first.

        Never raises for what the program does: time, memory, crashes and kills are results. A
        sandbox that cannot be started is a result with status error.
        """
        execution = execution or Execution(eval_id=request.eval_id, role=request.role, slot=slot)
        limits = RunLimits.for_run(
            self.settings, timeout=request.timeout, memory_mb=request.memory_mb
        )
        started = time.monotonic()
        if warm is not None:
            if warm.language == request.language and warm.slot == slot and warm.alive():
                result = await self._run_warm(
                    request, warm, limits, execution, started, defer_teardown=defer_teardown
                )
                if result is not None:
                    return result
            else:
                await asyncio.to_thread(self.discard, warm)
        return await self._run_cold(request, slot, limits, execution, started)

    async def _run_cold(
        self,
        request: ExecuteRequest,
        slot: int,
        limits: RunLimits,
        execution: Execution,
        started: float,
    ) -> ExecuteResult:
        language = self.languages[request.language]
        try:
            identity = await self._identity()
        except OSError as exc:
            return self._sandbox_failed(request, f"could not start the sandbox: {exc}", started)
        cgroup: RunCgroup | None = None
        try:
            if self.cgroups is not None:
                cgroup = self.cgroups.run(limits.cgroup())
            async with self._staged(request, language, limits, identity, cgroup) as launch:
                ended, out, err = await self._execute(launch, request, limits, execution, cgroup)
        except (OSError, subprocess.SubprocessError) as exc:
            log.exception("sandbox for eval %s could not be started", request.eval_id)
            return self._sandbox_failed(request, f"could not start the sandbox: {exc}", started)
        finally:
            await asyncio.to_thread(self._clean_up, identity, cgroup)
        return self._collect(request, ended, out, err, limits, started)

    # --- warm sandboxes (warm.py) -----------------------------------------------------------------

    async def prepare(self, slot: int, language_name: str = "python") -> WarmSandbox:
        """A sandbox for `slot`, complete but for its program: cgroup joined, rlimits, uid, bwrap,
        seccomp, mounts, and the language's launcher waiting on stdin. Raises OSError (or
        TimeoutError) when it cannot be made; nothing of it is left then."""
        began = time.monotonic()
        language = self.languages[language_name]
        # The executor's maxima; the hand-over lowers what the request asks for.
        limits = RunLimits.for_run(self.settings, timeout=self.settings.max_timeout)
        assert self.seccomp_program is not None
        identity = await self._identity()
        cleanup = contextlib.ExitStack()
        sandbox: WarmSandbox | None = None
        cgroup: RunCgroup | None = None
        try:
            try:
                if self.cgroups is not None:
                    cgroup = self.cgroups.run(limits.cgroup())
            finally:  # from here on the teardown gives the uid back
                cleanup.callback(self._clean_up, identity, cgroup)
            extra_nproc = 0
            if not identity.dedicated:
                extra_nproc = await asyncio.to_thread(tasks_of_uid, identity.uid)
            files = self._files(cleanup, launcher_source(language_name), language, limits, identity)
            launch = bwrap_launch(
                self.settings,
                limits=limits,
                language=language,
                identity=identity,
                files=files,
                seccomp_fd=_closing(cleanup, data_fd(self.seccomp_program)),
                cgroup=cgroup is not None,
                extra_nproc=extra_nproc,
            )
            proc, stdin_w, out_r, err_r = await self._start(launch, cgroup)
            sandbox = WarmSandbox(
                slot=slot,
                language=language_name,
                identity=identity,
                limits=limits,
                cgroup=cgroup,
                started=Started(proc, stdin_w, out_r, err_r),
                cleanup=cleanup,
            )
            marker = await read_marker(
                out_r, err_r, proc, within=self.settings.warm_prepare_timeout_seconds
            )
            sandbox.started = Started(proc, stdin_w, out_r, err_r, out_read=marker)
        except BaseException:
            if sandbox is not None:
                await asyncio.shield(asyncio.to_thread(self.discard, sandbox))
            else:
                await asyncio.shield(asyncio.to_thread(cleanup.close))
            raise
        sandbox.prepared_seconds = time.monotonic() - began
        sandbox.ready_at = time.monotonic()
        return sandbox

    def discard(self, sandbox: WarmSandbox) -> None:
        """Tear down a warm sandbox that will not run a program: processes, cgroup, tmpfs, fds."""
        sandbox.close_pipes()
        proc = sandbox.started.proc
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        sandbox.cleanup.close()

    async def _run_warm(
        self,
        request: ExecuteRequest,
        warm: WarmSandbox,
        limits: RunLimits,
        execution: Execution,
        started: float,
        *,
        defer_teardown: bool = False,
    ) -> ExecuteResult | None:
        """Hand the program to `warm` and run it to its end; None when the hand-over itself
        failed (the sandbox is gone then, and the caller runs the program cold)."""
        try:
            self._hand_over(warm, limits)  # at most a write: no thread hop on this path
        except OSError as exc:
            log.warning(
                "the warm sandbox of slot %d failed its hand-over (%s): cold", warm.slot, exc
            )
            await asyncio.to_thread(self.discard, warm)
            return None
        execution.warm = True
        warm.handed_over = True
        try:
            payload = handover_payload(
                request.code.encode(),
                (request.stdin or "").encode(),
                limits,
                cgroup=warm.cgroup is not None,
            )
            ended, out, err = await self._supervise(
                warm.started, payload, limits, execution, warm.cgroup
            )
        except (OSError, subprocess.SubprocessError) as exc:
            log.exception("warm sandbox for eval %s failed", request.eval_id)
            return self._sandbox_failed(request, f"could not run the sandbox: {exc}", started)
        finally:
            teardown = asyncio.ensure_future(asyncio.to_thread(self.discard, warm))
            if defer_teardown:
                execution.teardown = teardown
            else:
                await asyncio.shield(teardown)
        return self._collect(request, ended, out, err, limits, started)

    def _hand_over(self, warm: WarmSandbox, limits: RunLimits) -> None:
        """What the request asks for, applied to the waiting sandbox before it gets the code:
        the cgroup's memory limit (the rlimits travel with the code: warm_python.py). The cgroup
        keeps its name `run-<n>` (cgroup v2 cannot rename one) and keeps counting CPU from the
        sandbox's start, as a cold run's counts the interpreter's start-up: outcomes compare it
        with RLIMIT_CPU alike (outcome.py)."""
        cgroup = warm.cgroup
        if cgroup is not None and limits.memory_mb != warm.limits.memory_mb:
            cgroup.limit_memory(limits.memory_mb * MIB)

    # --- private steps ---------------------------------------------------------------------------

    async def _identity(self) -> Identity:
        """The uid a new sandbox runs as: one lent by the seats (root), else the executor's.

        Every uid is lent only while a finished sandbox is still being torn down; OSError when
        none comes back within two teardowns' time (a uid retired with processes it kept)."""
        if self.seats is None:
            return identity_for(None)
        within = 2 * self.settings.kill_reap_timeout_seconds + 1
        try:
            return identity_for(await asyncio.wait_for(self.seats.take(), within))
        except TimeoutError:
            raise OSError(f"no sandbox uid came back within {within:g}s") from None

    def _clean_up(self, identity: Identity, cgroup: RunCgroup | None) -> None:
        """Kill whatever the sandbox left and remove its cgroup (the namespaces normally took
        every process with them already; without a cgroup, kill every process of its dedicated
        uid), then give its uid back: only with no process of it left, else the uid is retired."""
        removed = cgroup is None or cgroup.remove(within=self.settings.kill_reap_timeout_seconds)
        if not removed:
            log.error("the cgroup of a finished run could not be removed: %s", cgroup.dirs)
        if not identity.dedicated or self.seats is None:
            reap_orphans()
            return
        killed = cgroup is None or not removed
        if killed:
            leftovers = kill_uid(identity.uid)
            if leftovers:
                # Usually the sandbox's init, still exiting after bwrap itself was reaped.
                log.debug("killed %d leftover processes of uid %d", leftovers, identity.uid)
        # The sandbox's init, orphaned by bwrap, counts against the uid until it is reaped.
        reap_orphans(uid=identity.uid, within=self.settings.kill_reap_timeout_seconds)
        if killed and pids_of_uid(identity.uid):
            log.error("uid %d still has processes: not lent again", identity.uid)
            return
        self.seats.give_back(identity.uid)

    @contextlib.asynccontextmanager
    async def _staged(
        self,
        request: ExecuteRequest,
        language: Language,
        limits: RunLimits,
        identity: Identity,
        cgroup: RunCgroup | None,
    ) -> AsyncIterator[Launch]:
        """Put the code where the sandbox will find it, and build the command; clean up after."""
        extra_nproc = 0
        if not identity.dedicated:
            extra_nproc = await asyncio.to_thread(tasks_of_uid, identity.uid)
        code = request.code.encode()
        with contextlib.ExitStack() as cleanup:
            if self.mode is SandboxMode.BWRAP:
                assert self.seccomp_program is not None
                files = self._files(cleanup, code, language, limits, identity)
                seccomp_fd = _closing(cleanup, data_fd(self.seccomp_program))
                yield bwrap_launch(
                    self.settings,
                    limits=limits,
                    language=language,
                    identity=identity,
                    files=files,
                    seccomp_fd=seccomp_fd,
                    cgroup=cgroup is not None,
                    extra_nproc=extra_nproc,
                )
            else:
                yield unshare_launch(
                    self.settings,
                    limits=limits,
                    language=language,
                    identity=identity,
                    workdir=self._workdir(cleanup, code, language, identity),
                    cgroup=cgroup is not None,
                    extra_nproc=extra_nproc,
                )

    def _files(
        self,
        cleanup: contextlib.ExitStack,
        code: bytes,
        language: Language,
        limits: RunLimits,
        identity: Identity,
    ) -> Files:
        """The run's own tmpfs where the executor can mount one, else bwrap-made tmpfs."""
        if self.scratch is not None:
            return mounted_files(self._scratch(cleanup, code, language, identity))
        passwd, group = accounts(identity)
        code_fd = _closing(cleanup, os.memfd_create("crucible-code", os.MFD_CLOEXEC))
        os.write(code_fd, code)
        os.lseek(code_fd, 0, os.SEEK_SET)
        return bwrap_made_files(
            limits,
            language,
            code_fd=code_fd,
            passwd_fd=_closing(cleanup, data_fd(passwd)),
            group_fd=_closing(cleanup, data_fd(group)),
        )

    def _workdir(
        self, cleanup: contextlib.ExitStack, code: bytes, language: Language, identity: Identity
    ) -> str:
        """The unshare fallback's working directory: the run's tmpfs, else a host temp dir."""
        if self.scratch is not None:
            return str(self._scratch(cleanup, code, language, identity).home)
        workdir = make_workdir(language.file, code, identity)
        cleanup.callback(remove_tree, workdir)
        return workdir

    def _scratch(
        self, cleanup: contextlib.ExitStack, code: bytes, language: Language, identity: Identity
    ) -> RunScratch:
        assert self.scratch is not None
        passwd, group = accounts(identity)
        run = self.scratch.prepare(
            uid=identity.uid,
            gid=identity.gid,
            file_name=language.file,
            code=code,
            passwd=passwd,
            group=group,
        )
        cleanup.callback(self.scratch.release, run)
        return run

    async def _execute(
        self,
        launch: Launch,
        request: ExecuteRequest,
        limits: RunLimits,
        execution: Execution,
        cgroup: RunCgroup | None,
    ) -> tuple[Ended, Captured, Captured]:
        proc, stdin_w, out_r, err_r = await self._start(launch, cgroup)
        return await self._supervise(
            Started(proc, stdin_w, out_r, err_r),
            (request.stdin or "").encode(),
            limits,
            execution,
            cgroup,
        )

    async def _start(
        self, launch: Launch, cgroup: RunCgroup | None
    ) -> tuple[subprocess.Popen, int, int, int]:
        """Spawn `launch` in `cgroup` with fresh pipes: the process and stdin, stdout, stderr."""
        stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        join = cgroup.open_for_join() if cgroup is not None else []
        try:
            proc = await self._spawn(launch, stdin_r, out_w, err_w, join)
        except BaseException:
            for fd in (stdin_w, out_r, err_r):
                os.close(fd)
            raise
        finally:
            for fd in (stdin_r, out_w, err_w):
                os.close(fd)
        return proc, stdin_w, out_r, err_r

    async def _supervise(
        self,
        started: Started,
        stdin: bytes,
        limits: RunLimits,
        execution: Execution,
        cgroup: RunCgroup | None,
    ) -> tuple[Ended, Captured, Captured]:
        """Feed stdin, read the output with its cap, wait under the wall clock, say how it ended.

        `started.out_read` holds what was already read of stdout (a warm sandbox's marker)."""
        proc, stdin_w, out_r, err_r = started.proc, started.stdin, started.out, started.err
        execution.pid = proc.pid
        if execution.killed:  # /kill arrived while it was being spawned
            execution.kill()
        out = Captured(cap=limits.max_output_bytes + len(STARTED_MARKER))
        out.add(started.out_read)
        err = Captured(cap=limits.max_output_bytes)
        feeding = asyncio.create_task(feed_input(stdin_w, stdin))
        readers = asyncio.gather(consume_output(out_r, out), consume_output(err_r, err))
        if execution.on_start is not None:
            execution.on_start()
        try:
            wait_status, usage = await self._wait(proc, limits.timeout, execution)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(readers), DRAIN_GRACE_SECONDS)
        finally:
            feeding.cancel()
            readers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await readers
        counted = cgroup.usage() if cgroup is not None else None
        ended = Ended(
            started=bytes(out.data[: len(STARTED_MARKER)]) == STARTED_MARKER,
            exit_code=exit_code_of(wait_status),
            killed=execution.killed,
            timed_out=execution.timed_out,
            cpu_seconds=_cpu_seconds(counted, usage),
            oom_kills=counted.oom_kills if counted is not None else 0,
        )
        return ended, out, err

    async def _spawn(
        self, launch: Launch, stdin: int, stdout: int, stderr: int, join: list[int]
    ) -> subprocess.Popen:
        """fork+exec in a thread (fork of a large process is not free); a cancelled spawn is reaped.

        The child enters the run's cgroup (`join`: its cgroup.procs fds) while still root, before
        anything of the program exists, then drops to the sandbox's uid and execs.
        """
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
                preexec_fn=_enter(join, user=launch.user, group=launch.group),
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
        started: float,
    ) -> ExecuteResult:
        outcome = classify(ended, limits=limits)
        marker = len(STARTED_MARKER) if ended.started else 0
        # The program's bytes, as they are: text, plus base64 when they are not UTF-8.
        output, output_base64 = encode_stream(bytes(out.data[marker:]))
        error, error_base64 = encode_stream(bytes(err.data))
        return self._result(
            request,
            status=outcome.status,
            exit_code=outcome.exit_code,
            reason=outcome.reason,
            output=output,
            error=error,
            output_base64=output_base64,
            error_base64=error_base64,
            output_truncated=out.total - marker > limits.max_output_bytes,
            error_truncated=err.total > limits.max_output_bytes,
            started=started,
        )

    def _sandbox_failed(self, request: ExecuteRequest, what: str, started: float) -> ExecuteResult:
        """The result of a run the sandbox failed (not the program): status error."""
        return self._result(
            request,
            status=Status.ERROR,
            reason="sandbox_failed",
            error=f"the executor {what}",
            started=started,
        )

    def _result(self, request: ExecuteRequest, *, started: float, **fields: Any) -> ExecuteResult:
        return ExecuteResult(
            eval_id=request.eval_id,
            executor_id=self.settings.executor_id,
            runtime_ms=round((time.monotonic() - started) * 1000, 3),
            **fields,
        )


def _enter(join: list[int], *, user: int | None, group: int | None) -> Callable[[], None]:
    """What the child does between fork and exec: join the run's cgroup, then drop privileges.

    Runs in the forked child, so it only makes system calls (no locks, no allocation to speak
    of). Joining first matters: as the sandbox's uid the child could no longer move itself.
    """

    def enter() -> None:
        for fd in join:
            os.write(fd, b"0")
        if user is not None and group is not None:
            os.setgroups([])
            os.setgid(group)
            os.setuid(user)

    return enter


def _cpu_seconds(counted: RunUsage | None, usage: resource.struct_rusage) -> float:
    """CPU time of the whole run: the cgroup's count, else what the reaped tree reported."""
    if counted is not None:
        return counted.cpu_seconds
    return usage.ru_utime + usage.ru_stime


def _closing(cleanup: contextlib.ExitStack, fd: int) -> int:
    cleanup.callback(os.close, fd)
    return fd
