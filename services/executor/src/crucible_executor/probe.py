"""Start-up choice of the sandbox mode: run a real probe program through each candidate."""

from __future__ import annotations

import logging
import os

from crucible_contracts.errors import Unavailable
from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import ExecuteRequest
from crucible_contracts.status import Status
from crucible_executor.cgroups import CgroupTree, CgroupUnavailable, create_tree
from crucible_executor.config import SandboxMode, Settings
from crucible_executor.languages import Language
from crucible_executor.orphans import adopt_orphans
from crucible_executor.runner import Runner
from crucible_executor.sandbox import mode_is_installed
from crucible_executor.scratch import Scratch
from crucible_executor.uids import claim_uids

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
        ExecuteRequest(eval_id=new_eval_id(), code=PROBE_CODE, language="python", timeout=20)
    )
    if result.status is Status.COMPLETED and result.output == "ok\n":
        return None
    return f"{result.status} {result.reason or ''} {result.output!r} {result.error[-500:]!r}"


async def select_runner(settings: Settings, languages: dict[str, Language]) -> Runner:
    """A Runner in the configured mode whose probe passes, with a cgroup per run where it can.

    `auto` means bwrap: the weaker unshare fallback runs only when asked for by name, and then
    /health says degraded. Raises Unavailable when the sandbox cannot isolate programs, and in
    production also when runs cannot get a cgroup: an executor must not run weaker than it says.
    """
    mode = SandboxMode.BWRAP if settings.sandbox_mode is SandboxMode.AUTO else settings.sandbox_mode
    if not mode_is_installed(mode, settings):
        raise Unavailable(
            f"no sandbox mode works on this host: {mode} is not installed (install bubblewrap, "
            "or ask for the weaker fallback by name with SANDBOX_MODE=unshare)",
            problems={mode: "not installed"},
        )
    adopt_orphans()  # the sandboxes' inits that bwrap leaves behind are the executor's to reap
    cgroups = cgroup_tree(settings)
    uids = None
    if os.geteuid() == 0:
        uids = claim_uids(settings)
    scratch = scratch_space(settings)
    runner = Runner(
        settings, mode=mode, languages=languages, uids=uids, cgroups=cgroups, scratch=scratch
    )
    problem = await probe(runner)
    if problem is not None:
        runner.close()
        raise Unavailable("no sandbox mode works on this host", problems={mode: problem})
    log.info(
        "sandbox mode %s (probe passed); cgroups %s; scratch %s; uids %s",
        mode,
        cgroups.mode if cgroups else "none",
        scratch.base if scratch else "bwrap tmpfs",
        uids.uids if uids else "own",
    )
    return runner


def scratch_space(settings: Settings) -> Scratch | None:
    """Per-run tmpfs mounts where the executor may mount, else None (bwrap's own tmpfs)."""
    try:
        return Scratch.create(
            settings.scratch_root, size_mb=settings.scratch_mb, inodes=settings.scratch_inodes
        )
    except OSError as exc:
        log.warning("runs get bwrap's tmpfs, bounded in bytes but not in inodes: %s", exc)
        return None


def cgroup_tree(settings: Settings) -> CgroupTree | None:
    """The executor's cgroup tree, or None (with a warning) where it may run without one."""
    if settings.cgroup_mode == "none":
        problem = "CGROUP_MODE=none"
    else:
        try:
            tree = create_tree(cpu_weight=settings.run_cpu_weight)
        except CgroupUnavailable as exc:
            problem = str(exc)
        else:
            if not tree.favordynmods:
                log.warning(
                    "no cgroup hierarchy is mounted with favordynmods: moving each run into its "
                    "cgroup waits for an RCU grace period (about 10 ms per run; docs/sandbox.md)"
                )
            return tree
    if settings.environment == "production":
        raise Unavailable(f"runs cannot get a cgroup of their own: {problem}")
    log.warning("no cgroup per run (%s): a run's total memory is not bounded", problem)
    return None
