"""Cgroups on the host's layout: limits, OOM reports, kill-all, stats, the sweep.

The same tests run on this hybrid host and, through ../shared/tools/cgroup-v2-guest.sh
(tests/cgroup_v2_tier.sh), on a pure cgroup v2 kernel; where the layouts differ the
test reads the layout's own files. Each test's cgroups are checked for removal by the
leak check, and explicitly where the test is about removal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

import fastcontain
from fastcontain import cgroups
from fastcontain.errors import CgroupError, ConfigError

from .util import LIMIT

pytestmark = pytest.mark.privileged

LAYOUT = cgroups.Host.detect().layout


def until(cond: Callable[[], object], what: str, limit: float = LIMIT) -> None:
    """Poll cond (a bound on a wait, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def limit_file(c: fastcontain.Container, v1: tuple[str, str], v2: str) -> str:
    """The content of a limit's file in the container's cgroup, on this host's layout."""
    dirs = c._cgroup.dirs  # type: ignore[union-attr]
    return read(os.path.join(dirs["unified"], v2) if LAYOUT == "v2" else os.path.join(dirs[v1[0]], v1[1]))


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone before open, or between open and read
        return False


def test_the_layout_is_the_one_the_tier_expects():
    # tests/cgroup_v2_tier.sh sets it, so the v2 tier cannot pass on another layout
    expected = os.environ.get("FASTCONTAIN_EXPECT_CGROUP_LAYOUT")
    if expected is None:
        assert LAYOUT in ("v2", "hybrid", "v1")
    else:
        assert LAYOUT == expected


def test_each_container_is_born_in_its_own_cgroup_and_it_is_removed(capsys: pytest.CaptureFixture[str]):
    with fastcontain.Container.create("busybox", ["sh", "-c", "cat /proc/self/cgroup"]) as c:
        assert c._child is not None and c._cgroup is not None
        assert c._child.clone_method == "clone3+cgroup"  # CLONE_INTO_CGROUP: no cgroup.procs write
        with capsys.disabled():
            print(f"\n  cgroup layout {LAYOUT}: clone_method={c._child.clone_method} into {c._cgroup.dirs['unified']}")
        mgr = cgroups.manager()
        unified = c._cgroup.dirs["unified"]
        assert unified == os.path.join(mgr.host.mount("unified"), mgr.parent, c.id)
        assert read(os.path.join(unified, "cgroup.procs")).split() == [str(c.pid)]
        if LAYOUT == "hybrid":  # no limit: no v1 controller joined (each attach costs an RCU grace period)
            assert set(c._cgroup.dirs) == {"unified"}
        c.start()
        assert c.wait(LIMIT) == 0
        # its cgroup namespace is rooted at its own cgroup
        assert c.logs().decode().splitlines()[-1] == "0::/"
        dirs = list(c._cgroup.dirs.values())
    assert dirs and not any(os.path.exists(d) for d in dirs)


def test_run_without_limits_is_born_in_its_cgroup_too():
    seen = []
    real = cgroups.Manager.create

    def spy(self, cid, res=cgroups.Resources(), owner=None):  # type: ignore[no-untyped-def]
        cg = real(self, cid, res, owner)
        seen.append((cg.fd is not None, dict(cg.dirs)))
        return cg

    mp = pytest.MonkeyPatch()
    mp.setattr(cgroups.Manager, "create", spy)
    try:
        r = fastcontain.run("busybox", ["cat", "/proc/self/cgroup"], capture_output=True, text=True)
    finally:
        mp.undo()
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "0::/"
    (had_fd, dirs), = seen
    fastcontain.teardown.flush()  # run() removes its cgroup on the teardown worker
    assert had_fd and not any(os.path.exists(d) for d in dirs.values())


def test_fork_bomb_stays_within_pids_limit():
    bomb = "b() { b | b & }; b; sleep 60"
    with fastcontain.Container.create("busybox", ["sh", "-c", bomb], pids_limit=16) as c:
        c.start()
        assert limit_file(c, ("pids", "pids.max"), "pids.max") == "16"
        events = limit_file  # pids.events counts the forks refused at the limit
        until(lambda: "max 0" not in events(c, ("pids", "pids.events"), "pids.events"), "the bomb to hit the limit")
        for _ in range(20):
            assert 0 < c.stats()["pids_current"] <= 16  # type: ignore[operator]
            time.sleep(0.01)
        c.kill()
        assert c.wait(LIMIT) == -signal.SIGKILL
        until(lambda: c._cgroup.procs() == [], "every process of the bomb to die")  # type: ignore[union-attr]


def test_kill_takes_every_process_of_a_forking_payload():
    # No pid namespace: killing the first process alone would leave its detached
    # grandchildren running (reparented to the host's init). The cgroup takes them all.
    payload = "for i in 1 2 3 4; do (sleep 300 &); done; sleep 300"
    namespaces = ("mount", "uts", "ipc", "net", "cgroup")
    with fastcontain.Container.create("busybox", ["sh", "-c", payload], namespaces=namespaces) as c:
        c.start()
        cg = c._cgroup
        assert cg is not None
        until(lambda: len(cg.procs()) == 5, "the payload to fork its four sleepers")
        pids = cg.procs()
        c.kill()
        assert c.wait(LIMIT) == -signal.SIGKILL
        until(lambda: not any(alive(p) for p in pids), "every process to die")
        until(lambda: cg.procs() == [], "the cgroup to empty")


def test_remove_takes_every_process_too():
    payload = "for i in 1 2 3; do (sleep 300 &); done; sleep 300"
    c = fastcontain.Container.create("busybox", ["sh", "-c", payload], namespaces=("mount", "uts", "ipc", "net"))
    try:
        c.start()
        assert c._cgroup is not None
        until(lambda: len(c._cgroup.procs()) == 4, "the payload to fork")  # type: ignore[union-attr]
        pids = c._cgroup.procs()
        dirs = list(c._cgroup.dirs.values())
    finally:
        c.remove(force=True)
    until(lambda: not any(alive(p) for p in pids), "every process to die")
    assert not any(os.path.exists(d) for d in dirs)


def test_run_timeout_kills_the_forked_processes():
    script = "(sleep 300 &); echo $(cat /proc/self/stat | cut -d' ' -f4); sleep 300"
    seen: list[list[int]] = []
    real = cgroups.Cgroup.kill

    def spy(self):  # type: ignore[no-untyped-def]
        seen.append(self.procs())
        real(self)

    mp = pytest.MonkeyPatch()
    mp.setattr(cgroups.Cgroup, "kill", spy)
    try:
        with pytest.raises(fastcontain.TimeoutExpired):
            fastcontain.run("busybox", ["sh", "-c", script], timeout=1.5, namespaces=("mount", "uts", "ipc", "net"))
    finally:
        mp.undo()
    assert seen and len(seen[0]) >= 2  # the shell and the detached sleep
    until(lambda: not any(alive(p) for p in seen[0]), "the detached sleep to die")


def test_memory_hog_is_oom_killed_and_reported_as_such():
    # tail of /dev/zero waits for a newline that never comes, growing its buffer.
    with fastcontain.Container.create("busybox", ["tail", "/dev/zero"], memory="32m") as c:
        assert limit_file(c, ("memory", "memory.limit_in_bytes"), "memory.max") == str(32 << 20)
        c.start()
        assert c.wait(LIMIT) == -signal.SIGKILL
        assert c.oom_killed
        s = c.stats()
        assert s["oom_kills"] == 1 and s["memory_peak"] is not None and s["memory_peak"] >= 24 << 20
    assert c.oom_killed  # kept after removal
    r = fastcontain.run("busybox", ["tail", "/dev/zero"], memory="32m", timeout=LIMIT)
    assert (r.returncode, r.oom_killed) == (-signal.SIGKILL, True)
    with pytest.raises(fastcontain.CalledProcessError) as info:
        fastcontain.run("busybox", ["tail", "/dev/zero"], memory="32m", timeout=LIMIT, check=True)
    assert info.value.oom_killed and "OOM killer" in str(info.value)


def test_a_sigkill_is_not_taken_for_an_oom_kill():
    with fastcontain.Container.create("busybox", ["sleep", "60"], memory="32m") as c:
        c.start()
        c.kill()
        assert c.wait(LIMIT) == -signal.SIGKILL  # what docker would call 137
        assert not c.oom_killed and c.stats()["oom_kills"] == 0


def test_cpuset_cpus_shows_in_cpus_allowed_list():
    if 1 not in cgroups.online_cpus():
        pytest.skip("CPU 1 is not available to this process (needs 2 CPUs)")
    with fastcontain.Container.create("busybox", ["grep", "Cpus_allowed_list", "/proc/self/status"], cpuset_cpus="1") as c:
        assert limit_file(c, ("cpuset", "cpuset.cpus"), "cpuset.cpus") == "1"
        c.start()
        assert c.wait(LIMIT) == 0
        assert c.logs().split() == [b"Cpus_allowed_list:", b"1"]


def test_cpus_is_a_quota_and_a_busy_loop_gets_about_half_a_cpu():
    with fastcontain.Container.create("busybox", ["sh", "-c", "while :; do :; done"], cpus=0.5) as c:
        if LAYOUT == "v2":
            assert limit_file(c, ("", ""), "cpu.max") == "50000 100000"
        else:
            assert limit_file(c, ("cpu", "cpu.cfs_quota_us"), "") == "50000"
            assert limit_file(c, ("cpu", "cpu.cfs_period_us"), "") == "100000"
        c.start()
        time.sleep(0.3)  # past the start-up
        cpu0, t0 = c.stats()["cpu_usage_us"], time.monotonic()
        time.sleep(2.0)
        cpu1, t1 = c.stats()["cpu_usage_us"], time.monotonic()
        assert cpu0 is not None and cpu1 is not None
        share = (cpu1 - cpu0) / 1e6 / (t1 - t0)
        # A generous band: the quota caps it at 0.5 (an unlimited loop takes ~1.0), and
        # on a shared machine it may get less; it must have run at all.
        assert 0.15 < share < 0.75, f"the busy loop got {share:.2f} CPUs"


def test_stats_are_a_dict_at_once():
    with fastcontain.Container.create("busybox", ["sleep", "60"], memory="64m", pids_limit=10) as c:
        c.start()
        t = time.perf_counter()
        s = c.stats()
        took = time.perf_counter() - t
        assert set(s) == {"cpu_usage_us", "memory_current", "memory_peak", "pids_current", "oom_kills",
                          "io_read_bytes", "io_write_bytes"}
        assert s["pids_current"] == 1 and s["oom_kills"] == 0
        assert s["memory_current"] and s["memory_peak"] and s["memory_peak"] >= s["memory_current"] > 0
        assert s["cpu_usage_us"] is not None and s["cpu_usage_us"] > 0
        assert took < 1.0  # no sampling interval (docker-py waits for two samples)
    with pytest.raises(fastcontain.ContainerError):
        c.stats()


def test_every_limit_reaches_its_file():
    opts = dict(memory="64m", memory_reservation="32m", cpu_shares=512, cpu_period=50000, cpu_quota=20000,
                pids_limit=30, cpuset_mems="0")
    expect_v1 = {("memory", "memory.limit_in_bytes"): str(64 << 20),
                 ("memory", "memory.soft_limit_in_bytes"): str(32 << 20),
                 ("cpu", "cpu.shares"): "512", ("cpu", "cpu.cfs_period_us"): "50000",
                 ("cpu", "cpu.cfs_quota_us"): "20000", ("pids", "pids.max"): "30", ("cpuset", "cpuset.mems"): "0"}
    expect_v2 = {"memory.max": str(64 << 20), "memory.low": str(32 << 20), "cpu.weight": "20",
                 "cpu.max": "20000 50000", "pids.max": "30", "cpuset.mems": "0"}
    with fastcontain.Container.create("busybox", ["true"], **opts) as c:
        if LAYOUT == "v2":
            got = {f: limit_file(c, ("", ""), f) for f in expect_v2}
            assert got == expect_v2
        else:
            got = {k: limit_file(c, k, "") for k in expect_v1}
            assert got == expect_v1
        c.start()
        assert c.wait(LIMIT) == 0


def test_block_io_limits_where_the_host_has_them():
    devices = ("vda", "sda", "nvme0n1", "nullb0")  # nullb0: the v2 guest's null_blk
    dev = next((f"/dev/{d}" for d in devices if os.path.exists(f"/dev/{d}")), None)
    if dev is None:
        pytest.skip(f"no block device ({', '.join(devices)}) to limit")
    st = os.stat(dev)
    number = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    with fastcontain.Container.create("busybox", ["true"], device_read_bps=[(dev, "1m")],
                                      device_write_bps=[f"{dev}:2m"]) as c:
        if LAYOUT == "v2":
            line = next(l for l in limit_file(c, ("", ""), "io.max").splitlines() if l.startswith(number))
            assert "rbps=1048576" in line and "wbps=2097152" in line
        else:
            assert limit_file(c, ("blkio", "blkio.throttle.read_bps_device"), "") == f"{number} 1048576"
            assert limit_file(c, ("blkio", "blkio.throttle.write_bps_device"), "") == f"{number} 2097152"
        c.start()
        assert c.wait(LIMIT) == 0
    # The weight: the kernel's blkio.weight / io.weight, else BFQ's (as runc falls back), else an error.
    try:
        c = fastcontain.Container.create("busybox", ["true"], blkio_weight=300)
    except CgroupError as e:
        assert "blkio_weight" in str(e) and ("weight" in str(e))
        return
    with c:
        key = "unified" if LAYOUT == "v2" else "blkio"
        d = c._cgroup.dirs[key]  # type: ignore[union-attr]
        files = [f for f in ("blkio.weight", "blkio.bfq.weight", "io.weight", "io.bfq.weight") if os.path.exists(os.path.join(d, f))]
        assert any(read(os.path.join(d, f)).split()[-1] in ("300", "2930") for f in files), files


def test_bad_limits_fail_before_anything_exists():
    with pytest.raises(ConfigError) as info:
        fastcontain.Container.create("busybox", ["true"], memory="1k")
    assert info.value.field == "memory"
    with pytest.raises(ConfigError):
        fastcontain.run("busybox", ["true"], cpuset_cpus="4095")


def test_a_failed_limit_write_leaves_no_cgroup():
    # cpuset.mems of a node this machine does not have: the kernel refuses the write.
    with pytest.raises(CgroupError) as info:
        fastcontain.run("busybox", ["true"], cpuset_mems="63")
    assert "cpuset.mems" in str(info.value) and "'63'" in str(info.value)
    mgr = cgroups.manager()
    for key in mgr.host.keys:
        base = os.path.join(mgr.host.mount(key), mgr.parent)
        assert not os.path.isdir(base) or [e for e in os.listdir(base) if os.path.isdir(os.path.join(base, e))] == []


def test_a_cgroup_directory_that_cannot_be_made_or_given_its_device_filter_leaves_nothing():
    mgr = cgroups.manager()
    cid = "00000000fc0ffee0"
    first = mgr.create(cid)
    try:
        with pytest.raises(CgroupError, match=r"creating the cgroup .*00000000fc0ffee0 failed") as info:
            mgr.create(cid)  # the same id again: EEXIST
        assert info.value.errno == 17
    finally:
        first.remove()
    assert not any(os.path.exists(d) for d in first.dirs.values())
    if mgr.device_backend == "bpf":
        # a descriptor that is no BPF program: the attach fails, and the directory goes again
        from fastcontain import _native

        d = os.path.join(mgr.parent_dir("unified"), cid)
        r, w = os.pipe()
        try:
            fd, failed = _native.make_cgroup_dir(d, None, r)
        finally:
            os.close(r)
            os.close(w)
        assert fd == -1 and failed is not None and failed[0] == "attach" and failed[1] > 0
        assert not os.path.exists(d)


CRASH = """
import os, sys, fastcontain
c = fastcontain.Container.create("busybox", ["sleep", "300"], memory="64m")
c.start()
print(c.pid, *c._cgroup.dirs.values(), flush=True)
os.kill(os.getpid(), 9)  # a crash: nothing is torn down
"""


def test_a_cgroup_left_by_a_crash_is_swept_when_fastcontain_next_starts():
    r = subprocess.run([sys.executable, "-c", CRASH], capture_output=True, text=True, timeout=LIMIT)
    assert r.returncode == -signal.SIGKILL, r.stderr
    pid, *dirs = r.stdout.split()
    try:
        assert dirs and all(os.path.isdir(d) for d in dirs) and alive(int(pid))  # left behind, still running
        nxt = subprocess.run([sys.executable, "-c", "import fastcontain; fastcontain.run('busybox', ['true'], check=True)"],
                             capture_output=True, text=True, timeout=LIMIT)
        assert nxt.returncode == 0, nxt.stderr
        assert not any(os.path.exists(d) for d in dirs)
        until(lambda: not alive(int(pid)), "the orphaned container to be killed")
    finally:
        for d in dirs:  # if the sweep failed: do not leave it on the host
            if os.path.isdir(d):
                cg = cgroups.Cgroup(cgroups.manager(), os.path.basename(d))
                cg.dirs = {"x": d}
                cg.remove()


def test_the_sweep_leaves_live_and_young_cgroups_alone(tmp_path: Path):
    mgr = cgroups.manager()
    with fastcontain.Container.create("busybox", ["sleep", "60"]) as c:
        from fastcontain import state
        assert mgr.sweep(state.owner_alive) == []  # its owner (this process) holds its state lock
        assert c._cgroup is not None and all(os.path.isdir(d) for d in c._cgroup.dirs.values())
        # without an owner record, a young cgroup is spared, an old one is not
        young = cgroups.Cgroup(mgr, "0123456789abcdef")
        young.dirs = {"unified": os.path.join(mgr.parent_dir("unified"), "0123456789abcdef")}
        os.mkdir(young.dirs["unified"])
        try:
            assert mgr.sweep(state.owner_alive) == []
            assert mgr.sweep(state.owner_alive, min_age=0) == ["0123456789abcdef"]
            assert not os.path.exists(young.dirs["unified"])
        finally:
            young.remove()


@pytest.fixture
def legacy_v1() -> Iterator[cgroups.Manager]:
    """This process's manager as on a legacy v1 host: this host's v1 controllers and no
    cgroup2 mount, so there is no CLONE_INTO_CGROUP and no cgroup.kill. The freezer,
    cpuacct and devices parents it makes are removed again (the others are the session's)."""
    host = cgroups.manager().host
    if not {"freezer", "cpuacct", "memory", "pids", "devices"} <= set(host.v1):
        pytest.skip("needs the v1 freezer, cpuacct, memory, pids and devices controllers (a hybrid or v1 host)")
    saved = cgroups._manager
    mgr = cgroups.Manager(host=cgroups.Host("v1", None, host.v1))
    made = [c for c in ("freezer", "cpuacct", "devices") if not os.path.isdir(os.path.join(host.v1[c], mgr.parent))]
    cgroups._manager = mgr
    try:
        yield mgr
    finally:
        cgroups._manager = saved
        for c in made:
            os.rmdir(os.path.join(host.v1[c], mgr.parent))


def test_legacy_v1_places_the_pid_before_exec_and_kills_through_the_freezer(legacy_v1: cgroups.Manager):
    payload = "for i in 1 2 3; do (sleep 300 &); done; exec sleep 300"
    with fastcontain.Container.create("busybox", ["sh", "-c", payload], memory="64m",
                                      namespaces=("mount", "uts", "ipc", "net", "cgroup")) as c:
        cg = c._cgroup
        assert c._child is not None and cg is not None
        assert c._child.clone_method == "clone3" and cg.fd is None  # no cgroup2: attached by writes
        # v1 has no device programs: the default device rules are the devices controller's
        assert list(cg.dirs) == ["freezer", "cpuacct", "memory", "pids", "devices"]
        assert read(os.path.join(cg.dirs["devices"], "devices.list")).splitlines()[0] == "c *:* m"
        with open(f"/proc/{c.pid}/cgroup") as f:
            lines = f.read().splitlines()
        for key in cg.dirs:  # the pid is in every controller's cgroup before it runs
            assert any(line.split(":")[1] == key and line.endswith(f"/{legacy_v1.parent}/{c.id}") for line in lines), lines
        c.start()
        until(lambda: len(cg.procs()) == 4, "the payload to fork")
        pids = cg.procs()
        s = c.stats()
        assert s["pids_current"] == 4 and s["memory_current"] and s["cpu_usage_us"] is not None
        c.kill()  # freeze, SIGKILL each, thaw
        assert c.wait(LIMIT) == -signal.SIGKILL
        until(lambda: not any(alive(p) for p in pids), "every process to die")
        assert read(os.path.join(cg.dirs["freezer"], "freezer.state")) == "THAWED"
        dirs = list(cg.dirs.values())
    assert not any(os.path.exists(d) for d in dirs)


def test_the_cli_takes_dockers_limits_and_says_when_the_oom_killer_struck():
    cli = [sys.executable, "-m", "fastcontain", "run"]
    r = subprocess.run([*cli, "-m", "32m", "busybox", "tail", "/dev/zero"], capture_output=True, text=True, timeout=LIMIT)
    assert r.returncode == 128 + signal.SIGKILL and "OOM killer" in r.stderr, r.stderr
    r = subprocess.run([*cli, "--cpus", "0.5", "--pids-limit", "8", "--cpuset-cpus", "0", "busybox", "sh", "-c",
                        "grep Cpus_allowed_list /proc/self/status"], capture_output=True, text=True, timeout=LIMIT)
    assert r.returncode == 0 and r.stdout.split() == ["Cpus_allowed_list:", "0"] and r.stderr == "", r.stderr
