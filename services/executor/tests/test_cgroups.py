"""Finding the executor's cgroups on v1 and v2 hosts, and tearing a run's cgroup down for real."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from crucible_executor.cgroups import (
    CGROUP_ROOT,
    CgroupMode,
    CgroupTree,
    CgroupUnavailable,
    RunCgroup,
    create_tree,
    discover,
    favors_dynamic_modifications,
)
from crucible_runtime.pytest_plugin import wait_for

V1_HYBRID_CGROUP = """\
9:name=systemd:/
8:pids:/
4:memory:/jobs/42
2:cpu,cpuacct:/
1:freezer:/
0::/
"""
V1_HYBRID_MOUNTS = """\
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
35 30 0:31 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
37 30 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:17 - cgroup cgroup rw,cpu,cpuacct
38 30 0:34 / /sys/fs/cgroup/freezer rw,nosuid shared:18 - cgroup cgroup rw,freezer
39 30 0:35 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:19 - cgroup2 cgroup2 rw
"""


def test_v1_hierarchies_are_found_under_the_processs_own_cgroup():
    mode, own = discover(proc_cgroup=V1_HYBRID_CGROUP, mountinfo=V1_HYBRID_MOUNTS)
    assert mode is CgroupMode.V1
    assert own == {
        "memory": Path("/sys/fs/cgroup/memory/jobs/42"),
        "pids": Path("/sys/fs/cgroup/pids"),
        "cpu": Path("/sys/fs/cgroup/cpu,cpuacct"),
        "cpuacct": Path("/sys/fs/cgroup/cpu,cpuacct"),
        "freezer": Path("/sys/fs/cgroup/freezer"),
    }


def test_favordynmods_on_any_hierarchy_is_noticed():
    assert not favors_dynamic_modifications(V1_HYBRID_MOUNTS)
    favoring = V1_HYBRID_MOUNTS.replace("cgroup2 cgroup2 rw", "cgroup2 cgroup2 rw,favordynmods")
    assert favors_dynamic_modifications(favoring)


def test_without_memory_or_pids_control_there_is_no_cgroup_mode():
    mounts = "\n".join(line for line in V1_HYBRID_MOUNTS.splitlines() if "pids" not in line)
    with pytest.raises(CgroupUnavailable, match="pids"):
        discover(proc_cgroup=V1_HYBRID_CGROUP, mountinfo=mounts)


def test_v2_is_chosen_where_the_unified_hierarchy_offers_the_controllers(tmp_path):
    own = tmp_path / "system.slice" / "executor.service"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    mountinfo = f"29 23 0:26 / {tmp_path} rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
    mode, found = discover(proc_cgroup="0::/system.slice/executor.service\n", mountinfo=mountinfo)
    assert (mode, found) == (CgroupMode.V2, {"unified": own})


def test_this_machines_runs_get_their_cgroups_below_the_executors_own():
    mode, own = discover()
    tree = create_tree(name=f"crucible-executor-test-{uuid.uuid4().hex[:8]}")
    try:
        assert tree.mode is mode
        assert {key: parent.parent for key, parent in tree.parents.items()} == own
    finally:
        tree.close()
    assert not any(parent.exists() for parent in tree.parents.values())


def test_v2_teardown_kills_every_process_and_removes_the_cgroup():
    # The cgroup2 mount of a v1 host has no controllers, but cgroup.kill and removal are core
    # v2 and work on it; a host with no cgroup2 mount at all cannot run this.
    unified = CGROUP_ROOT / "unified"
    if not (unified / "cgroup.procs").exists():
        pytest.skip("this host has no cgroup2 mount at /sys/fs/cgroup/unified")
    directory = unified / f"crucible-test-{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    cgroup = RunCgroup(CgroupMode.V2, {"unified": directory})
    # A shell and its background child, both moved in before the child exists.
    script = f"echo $$ > {directory}/cgroup.procs; sleep 60 & wait"
    shell = subprocess.Popen(["/bin/sh", "-c", script])
    try:
        wait_for(lambda: len(cgroup.pids()) == 2, timeout=10, what="shell and child in the cgroup")
        cgroup.kill()
        wait_for(lambda: cgroup.pids() == [], timeout=10, what="the cgroup to empty")
        assert shell.wait(10) == -9
        assert cgroup.remove()
        assert not directory.exists()
    finally:
        shell.kill()
        CgroupTree(CgroupMode.V2, {"unified": directory}).close()


def test_a_crashed_executors_cgroups_are_swept_by_the_next_one():
    _, own = discover()
    dead_pid = 2**22 + 7  # above the default pid_max: no process has it
    stale = {key: directory / f"crucible-executor-{dead_pid}" for key, directory in own.items()}
    for directory in stale.values():
        (directory / "run-0").mkdir(parents=True)
    tree = create_tree(name=f"crucible-executor-test-{uuid.uuid4().hex[:8]}")
    tree.close()
    assert not any(directory.exists() for directory in stale.values())
