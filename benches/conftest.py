"""Runners for the benches: the same busybox root filesystem and the same command
through the floor program (benches/floor.c: the same kernel work and nothing else),
fastcontain, crun, runc, bubblewrap, and a plain subprocess without namespaces.

Each runner checks every run it times (exit status 0) and, once, that it really is
isolated (the probe), recording both in benchmark.extra_info. Runners whose binary is
missing are skipped with the reason. `runner` is one of them per test; `runners` all of
them at once (the interleaved benches, bench_ratios.py), the missing ones named. The
session ends with report.py's tables: each runner's median as a ratio to the floor's
and to fastcontain's, the per-step breakdown of the floor and of fastcontain, and (with
--benchmark-json) a picture of each runner's latency distribution beside the JSON.
`pytest benches --benchmark-disable` runs each one once: the benches double as tests,
each inside the same leak check as the privileged tests.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

import pytest

# The leak check and session folders are shared with tests/ (tests/harness.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import floor as _floor  # noqa: E402
import harness  # noqa: E402
import report  # noqa: E402
from harness import pytest_unconfigure  # noqa: E402, F401 (hook: the session's folders go)

# What the probe prints: its pid, then the ids of its pid and net namespaces.
PROBE = "echo $$; readlink /proc/self/ns/pid; readlink /proc/self/ns/net"
# mount, pid, uts, ipc, net and cgroup: fastcontain's default set, in OCI's names
OCI_NAMESPACES = ("mount", "pid", "uts", "ipc", "network", "cgroup")
RUNNERS = ("floor", "fastcontain", "fastcontain-pool", "fastcontain-pool-bridge", "crun", "runc", "bwrap", "subprocess")
CLONE_NEWNS = 0x00020000
HYBRID_V2 = "/sys/fs/cgroup/unified"

def pytest_configure(config: pytest.Config) -> None:
    # Every runner's state on a tmpfs, as on a usual host (/run): see harness.tmpfs_dir.
    harness.start_session(harness.tmpfs_dir())


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    # The benches are named bench_*.py; pyproject's pytest settings look for test_*.py.
    # A file named on the command line is collected by pytest itself (not twice).
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    harness.skip_unless_root()


@dataclass
class Runner:
    name: str
    run: Callable[[], None]  # one /bin/true; raises unless it exited 0
    probe: Callable[[], str]  # PROBE's output
    isolated: bool  # whether it is meant to have its own namespaces
    notes: dict[str, object] = field(default_factory=dict)
    # per-step nanoseconds of the runs so far, for runners that can tell (floor, fastcontain)
    steps: list[dict[str, int]] = field(default_factory=list)
    # run at the end of each bench, inside its leak check (a pool's ready slots go; the
    # floor's servers finish their last teardown)
    finish: Callable[[], None] | None = None
    pool: object = None  # a Pool runner's pool (its hits and misses)
    # waits for what the runner defers past its answer (fastcontain's background teardown,
    # a pool's refill, the floor's teardown), so the interleaved benches charge it to
    # nobody (latency) or to this runner (throughput), never to the next runner
    settle: Callable[[], None] | None = None

    def check(self) -> dict[str, object]:
        """Run the probe once; assert the isolation is what the runner claims."""
        pid, pid_ns, net_ns = self.probe().split()
        info: dict[str, object] = {
            "runner": self.name,
            "pid_inside": int(pid),
            "pid_ns_isolated": pid_ns != os.readlink("/proc/self/ns/pid"),
            "net_ns_isolated": net_ns != os.readlink("/proc/self/ns/net"),
            **self.notes,
        }
        if self.isolated:
            assert info["pid_ns_isolated"] and info["net_ns_isolated"], info
            # bubblewrap keeps its own reaper as pid 1 and runs the command as pid 2
            assert info["pid_inside"] in ((2,) if self.name == "bwrap" else (1,)), info
        else:
            assert not info["pid_ns_isolated"] and int(pid) > 1, info
        info["correct"] = True
        return info


def checked(argv: list[str], **kw: object) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    assert r.returncode == 0, f"{argv[0]} exited {r.returncode}: {r.stderr.strip()}"
    return r.stdout


def build_rootfs(root: Path) -> Path:
    """The host's static busybox with its applets as links, and the mount points every
    runner needs (so none of them writes into the folder)."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed (apt-get install busybox-static)")
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp"):
        (root / d).mkdir(parents=True)
    shutil.copy2(os.path.realpath(busybox), root / "bin" / "busybox")
    for applet in checked([busybox, "--list"]).split():
        if applet != "busybox":
            os.symlink("busybox", root / "bin" / applet)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    return root


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fastcontain-bench-", dir=harness.tmpfs_dir()))
    yield path
    harness.remove_tree(str(path))


@pytest.fixture(scope="session")
def rootfs(workdir: Path) -> Path:
    return build_rootfs(workdir / "rootfs")


# -- the runners --------------------------------------------------------------------


def fastcontain_runner(rootfs: Path) -> Runner:
    import fastcontain

    from fastcontain import profile

    image = str(rootfs)
    steps: list[dict[str, int]] = []

    def run() -> None:
        with profile.record() as rec:
            r = fastcontain.run(image, ["/bin/true"])
        assert r.returncode == 0, r
        steps.extend(rec)

    def probe() -> str:
        r = fastcontain.run(image, ["sh", "-c", PROBE], capture_output=True, text=True, check=True)
        return r.stdout

    return Runner("fastcontain", run, probe, isolated=True, notes={"how": "fastcontain.run in-process"}, steps=steps,
                  settle=fastcontain.teardown.flush)


def _pooled(name: str, rootfs: Path, how: str, network: str | None = None,
            after: Callable[[], None] | None = None) -> Runner:
    """A runner through a ready fastcontain.Pool (FASTCONTAIN_BENCH_POOL slots, 64 by
    default); `after` runs once the pool is closed."""
    import fastcontain
    from fastcontain import profile

    size = int(os.environ.get("FASTCONTAIN_BENCH_POOL", "64"))
    pool = fastcontain.Pool(str(rootfs), size=size, network=network) if network else fastcontain.Pool(str(rootfs), size=size)
    try:
        pool.wait_ready(60)
    except BaseException:
        pool.close()
        raise
    steps: list[dict[str, int]] = []

    def run() -> None:
        with profile.record() as rec:
            r = pool.run(["/bin/true"])
        assert r.returncode == 0, r
        steps.extend(rec)

    def probe() -> str:
        return pool.run(["sh", "-c", PROBE], capture_output=True, text=True, check=True).stdout

    def settle() -> None:
        fastcontain.teardown.flush()
        pool.wait_ready(60)

    def finish() -> None:
        pool.close()
        if after is not None:
            fastcontain.teardown.flush()
            after()

    return Runner(name, run, probe, isolated=True, steps=steps, finish=finish, notes={"how": how}, pool=pool,
                  settle=settle)


def pool_runner(rootfs: Path) -> Runner:
    return _pooled("fastcontain-pool", rootfs,
                   "fastcontain.Pool(size=64).run: state dir, cgroup and netns (lo up) made ahead")


def pool_bridge_runner(rootfs: Path) -> Runner:
    """A Pool on a bridge network of the bench's own: each slot's netns has its veth,
    lease and eth0 address and route made ahead (see pool.py)."""
    from fastcontain import net

    network = net.create(f"fcbenchpool{os.getpid() % 100000}", subnet="10.213.253.0/24")
    try:
        return _pooled("fastcontain-pool-bridge", rootfs,
                       "fastcontain.Pool(network=a bridge).run: veth, lease, eth0 address and route made ahead",
                       network=network.name, after=lambda: net.remove(network.name))
    except BaseException:
        net.remove(network.name)
        raise


def subprocess_runner(rootfs: Path) -> Runner:
    true, sh = str(rootfs / "bin" / "true"), str(rootfs / "bin" / "sh")

    def run() -> None:
        assert subprocess.run([true]).returncode == 0

    return Runner(
        "subprocess", run, lambda: checked([sh, "-c", PROBE]), isolated=False,
        notes={"how": "subprocess.run of the same static busybox true, no namespaces"},
    )


def private_mount_ns_without_unified() -> int:
    """A mount namespace where /sys/fs/cgroup/unified is not mounted, as an open fd.
    crun 1.8 refuses a hybrid cgroup host even with its cgroup manager disabled; joining
    this namespace right before exec hides the v2 half from it, at the price of a fork
    instead of subprocess's vfork (and nothing on the host changes)."""
    helper = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         f"umount {HYBRID_V2} && echo ready && exec sleep 3600"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert helper.stdout is not None
        assert helper.stdout.readline() == "ready\n", "could not hide the cgroup v2 mount from crun"
        return os.open(f"/proc/{helper.pid}/ns/mnt", os.O_RDONLY)
    finally:
        helper.kill()
        helper.wait()
        if helper.stdout is not None:
            helper.stdout.close()


def setns_mount(fd: int) -> None:
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, CLONE_NEWNS)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def oci_bundle(binary: str, bundle: Path, rootfs: Path, args: list[str], cgroups_path: bool) -> Path:
    """The runtime's own default config (`crun spec`, `runc spec`), pointed at the shared
    rootfs, running args, with the namespace set above and no cgroup mount or resources;
    without its cgroupsPath unless `cgroups_path` (runc cannot run without a cgroup
    manager, so it keeps its per-container cgroups, named after the container, removed by runc)."""
    bundle.mkdir()
    checked([binary, "spec"], cwd=bundle)
    config = json.loads((bundle / "config.json").read_text())
    config["root"] = {"path": str(rootfs), "readonly": True}
    config["process"]["terminal"] = False
    config["process"]["args"] = args
    config["linux"]["namespaces"] = [{"type": t} for t in OCI_NAMESPACES]
    config["linux"].pop("resources", None)
    if not cgroups_path:
        config["linux"].pop("cgroupsPath", None)
    config["mounts"] = [m for m in config["mounts"] if m["destination"] != "/sys/fs/cgroup"]
    (bundle / "config.json").write_text(json.dumps(config, indent=1))
    return bundle


def oci_runner(
    name: str, rootfs: Path, workdir: Path, flags: list[str], notes: str,
    cgroups_path: bool, kw: dict[str, object] | None = None,
) -> Iterator[Runner]:
    """crun or runc: `NAME --root STATE FLAGS run --bundle B ID` of a /bin/true and a probe
    bundle, each run with subprocess.run(**kw); afterwards the runtime's state must be empty."""
    binary = shutil.which(name)
    if binary is None:
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    state = workdir / f"{name}-state"  # the runtime's --root: its per-container state
    state.mkdir()
    true_bundle = oci_bundle(binary, workdir / f"{name}-true", rootfs, ["/bin/true"], cgroups_path)
    probe_bundle = oci_bundle(binary, workdir / f"{name}-probe", rootfs, ["sh", "-c", PROBE], cgroups_path)
    ids = count()
    kw = kw or {}

    def argv(bundle: Path) -> list[str]:
        return [binary, "--root", str(state), *flags, "run", "--bundle", str(bundle),
                f"fc-bench-{name}-{os.getpid()}-{next(ids)}"]

    def run() -> None:
        r = subprocess.run(argv(true_bundle), stderr=subprocess.PIPE, text=True, **kw)  # type: ignore[call-overload]
        assert r.returncode == 0, f"{name} exited {r.returncode}: {r.stderr.strip()}"

    yield Runner(name, run, lambda: checked(argv(probe_bundle), **kw), isolated=True, notes={"how": notes})
    assert os.listdir(state) == [], f"{name} left container state: {os.listdir(state)}"


@pytest.fixture(scope="session")
def crun_setup(rootfs: Path, workdir: Path) -> Iterator[Runner]:
    hybrid = os.path.ismount(HYBRID_V2)
    ns_fd = private_mount_ns_without_unified() if hybrid else -1
    try:
        yield from oci_runner(
            "crun", rootfs, workdir, ["--cgroup-manager=disabled"],
            "crun run, cgroup manager disabled" + (", in a mount namespace without the cgroup v2 half" if hybrid else ""),
            cgroups_path=False, kw={"preexec_fn": lambda: setns_mount(ns_fd)} if hybrid else None,
        )
    finally:
        if ns_fd >= 0:
            os.close(ns_fd)


@pytest.fixture(scope="session")
def runc_setup(rootfs: Path, workdir: Path) -> Iterator[Runner]:
    yield from oci_runner(
        "runc", rootfs, workdir, [], "runc run (accepts the hybrid layout; keeps its own per-container cgroups)",
        cgroups_path=True,
    )


def bwrap_runner(rootfs: Path) -> Runner:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)")
    base = [bwrap, "--unshare-all", "--bind", str(rootfs), "/", "--proc", "/proc", "--dev", "/dev", "--die-with-parent"]

    def run() -> None:
        r = subprocess.run([*base, "/bin/true"], stderr=subprocess.PIPE, text=True)
        assert r.returncode == 0, f"bwrap exited {r.returncode}: {r.stderr.strip()}"

    return Runner(
        "bwrap", run, lambda: checked([*base, "sh", "-c", PROBE]), isolated=True,
        notes={"how": "bwrap --unshare-all (adds a user namespace where it can)"},
    )


@pytest.fixture(scope="session")
def floor_setup(rootfs: Path, workdir: Path) -> Iterator[Runner]:
    binary = _floor.build(workdir)
    hierarchies = _floor.fastcontain_cgroups()
    floor = _floor.Floor(binary, rootfs, workdir / "floor-state", hierarchies)
    steps: list[dict[str, int]] = []

    def run() -> None:
        steps.append(floor.run())

    try:
        yield Runner(
            "floor", run, lambda: floor.once(["sh", "-c", PROBE]), isolated=True, steps=steps, finish=floor.sync,
            settle=floor.sync,
            notes={"how": "benches/floor.c: clone3, overlay, /proc, /sys, /dev, pivot_root, lo, execve, wait, "
                   "teardown" + (" (a reused netns, the mount ns held)" if _floor.AS_FASTCONTAIN else ""),
                   "cgroups": hierarchies or "none (as fastcontain)"},
        )
    finally:
        floor.close()


def make_runner(request: pytest.FixtureRequest, name: str) -> Runner:
    """The runner called `name`; pytest.skip (with the reason) where it is not installed."""
    if name in ("crun", "runc", "floor"):
        return request.getfixturevalue(f"{name}_setup")
    rootfs = request.getfixturevalue("rootfs")
    return {
        "fastcontain": fastcontain_runner, "fastcontain-pool": pool_runner, "fastcontain-pool-bridge": pool_bridge_runner,
        "subprocess": subprocess_runner, "bwrap": bwrap_runner,
    }[name](rootfs)


@pytest.fixture(params=RUNNERS)
def runner(request: pytest.FixtureRequest) -> Runner:
    return make_runner(request, request.param)


@dataclass
class Runners:
    """Several runners at once, for the interleaved benches: those installed, in RUNNERS'
    order, and why each of the others is missing."""
    ready: list[Runner]
    skipped: dict[str, str]  # name -> why it is not here


@pytest.fixture
def runners(request: pytest.FixtureRequest) -> Iterator[Runners]:
    """Every runner of RUNNERS (or of the names in request.param: indirect parametrizing);
    their finish() runs inside the leak check, as for `runner`."""
    names = getattr(request, "param", RUNNERS)
    made = Runners([], {})
    try:
        for name in names:
            try:
                made.ready.append(make_runner(request, name))
            except pytest.skip.Exception as e:
                made.skipped[name] = str(e.msg)
    except BaseException:
        _finish(made.ready)
        raise
    yield made


def _finish(runners: list[Runner]) -> None:
    """Each runner's finish(), all of them even when one fails (the first failure raised)."""
    failed: BaseException | None = None
    for r in runners:
        try:
            if r.finish is not None:
                r.finish()
        except BaseException as e:
            failed = failed or e
    if failed is not None:
        raise failed


@pytest.fixture(autouse=True)
def _leak_check_and_record(request: pytest.FixtureRequest) -> Iterator[None]:
    # Set up after the runners' session resources (crun's namespace fd is no leak) and
    # after one fastcontain run (the busybox store, caches); then the runner's result.
    runner = request.getfixturevalue("runner") if "runner" in request.fixturenames else None
    several = request.getfixturevalue("runners") if "runners" in request.fixturenames else None
    owned = [runner] if runner is not None else several.ready if several is not None else []
    bench = request.getfixturevalue("benchmark") if "benchmark" in request.fixturenames else None
    harness.warm_up()
    with harness.leak_checked(harness.session().root):
        try:
            yield
        finally:
            _finish(owned)
    if runner is not None and bench is not None and bench.extra_info.get("correct"):
        report.record(bench, runner.name, runner.steps)
        runner.steps.clear()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    report.summary(terminalreporter, config, RUNNERS)
