"""Start-up choice of the sandbox mode: run a real probe program through each candidate."""

from __future__ import annotations

import logging
import os

from crucible_contracts.errors import Unavailable
from crucible_contracts.models import ExecuteRequest
from crucible_contracts.status import Status
from crucible_executor.config import SandboxMode, Settings
from crucible_executor.languages import Language
from crucible_executor.runner import Runner
from crucible_executor.sandbox import mode_is_installed
from crucible_executor.uids import UidClaim

log = logging.getLogger(__name__)

# Passes only where the program starts, runs Python, and sees no network interface but loopback.
PROBE_CODE = (
    "import socket\n"
    "names = [name for _, name in socket.if_nameindex()]\n"
    "print('ok' if names == ['lo'] else f'network not isolated: {names}')\n"
)


async def probe(runner: Runner) -> str | None:
    """None when a program runs isolated in `runner`'s mode, else what went wrong."""
    result = await runner.run(
        ExecuteRequest(eval_id="sandbox-probe", code=PROBE_CODE, language="python", timeout=20)
    )
    if result.status is Status.COMPLETED and result.output == "ok\n":
        return None
    return f"{result.status} {result.reason or ''} {result.output!r} {result.error[-500:]!r}"


async def select_runner(settings: Settings, languages: dict[str, Language]) -> Runner:
    """A Runner in the forced mode, or (auto) bwrap when its probe passes, else unshare.

    Raises Unavailable when no candidate passes: an executor that cannot isolate programs must
    not start.
    """
    if settings.sandbox_mode is SandboxMode.AUTO:
        candidates = [SandboxMode.BWRAP, SandboxMode.UNSHARE]
    else:
        candidates = [settings.sandbox_mode]
    problems: dict[str, str] = {}
    uids = None
    if os.geteuid() == 0:
        uids = UidClaim(
            base=settings.sandbox_uid_base,
            count=settings.executor_slots,
            lock_dir=settings.uid_lock_dir,
        )
    for mode in candidates:
        if not mode_is_installed(mode, settings):
            problems[mode] = "not installed"
            continue
        runner = Runner(settings, mode=mode, languages=languages, uids=uids)
        problem = await probe(runner)
        if problem is None:
            log.info("sandbox mode %s (probe passed); uids %s", mode, uids.uids if uids else "own")
            return runner
        log.warning("sandbox mode %s failed its probe: %s", mode, problem)
        problems[mode] = problem
    raise Unavailable("no sandbox mode works on this host", problems=problems)
