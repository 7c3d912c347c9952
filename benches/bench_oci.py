"""`fastcontain-oci run` as a whole process (an interpreter per call, as an engine runs
it) beside `crun run` and `runc run` on the same bundle: /bin/true from the busybox
rootfs with mount, pid, uts, ipc, net and cgroup namespaces, each runner's own default
mounts. fastcontain-oci and runc put the container in a cgroup (created and removed per
run); crun runs with its cgroup manager disabled (it refuses this host's hybrid layout;
see conftest.crun_setup).

test_oci_lifecycle times each call an engine makes (containerd's shim and conmon call
create, start, state, kill, delete, each as its own process) on a container running
`sleep`: the others of the round are its untimed set-up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from itertools import count
from pathlib import Path
from typing import Any, Callable

import pytest
import report

from conftest import HYBRID_V2, OCI_NAMESPACES, private_mount_ns_without_unified, setns_mount

OCI_RUNNERS = ("fastcontain-oci", "crun", "runc")
RUN = "OCI runtime: <runtime> run of /bin/true, whole process"
report.declare(RUN, base="fastcontain-oci", order=OCI_RUNNERS)
_ids = count()


def _bundle(workdir: Path, rootfs: Path, args: tuple[str, ...] = ("/bin/true",)) -> Path:
    """What `runc spec` writes, pointed at the shared rootfs, running `args`, with the
    namespaces of the spawn bench and no cgroup mount or resources."""
    from fastcontain.oci_cli import default_spec

    bundle = workdir / ("oci-bench" if args == ("/bin/true",) else "oci-bench-" + args[0].strip("/").replace("/", "-"))
    if not bundle.exists():
        bundle.mkdir()
        config = default_spec()
        config["root"] = {"path": str(rootfs), "readonly": True}
        config["process"].update(terminal=False, args=list(args))
        config["linux"]["namespaces"] = [{"type": t} for t in OCI_NAMESPACES]
        config["linux"].pop("resources", None)
        config["mounts"] = [m for m in config["mounts"] if m["destination"] != "/sys/fs/cgroup"]
        (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def _command(request: pytest.FixtureRequest, tool: str, workdir: Path) -> tuple[list[str], dict[str, Any]]:
    """The runner's command line up to its verb, and subprocess.run's extra arguments."""
    state = workdir / f"oci-state-{tool}"
    state.mkdir(exist_ok=True)
    kw: dict[str, Any] = {}
    if tool == "fastcontain-oci":
        binary = str(Path(sys.executable).parent / "fastcontain-oci")
        if not os.path.exists(binary):
            pytest.skip("fastcontain-oci is not installed (pip install .)")
        base = [binary, "--root", str(state)]
    else:
        binary = shutil.which(tool) or ""
        if not binary:
            pytest.skip(f"{tool} is not installed (apt-get install {tool})")
        base = [binary, "--root", str(state)]
        if tool == "crun":
            base.append("--cgroup-manager=disabled")
            if os.path.ismount(HYBRID_V2):
                fd = private_mount_ns_without_unified()
                request.addfinalizer(lambda: os.close(fd))
                kw["preexec_fn"] = lambda: setns_mount(fd)
    return base, kw


@pytest.fixture(params=OCI_RUNNERS)
def oci_runner(request: pytest.FixtureRequest, rootfs: Path, workdir: Path) -> Callable[[], None]:
    tool = request.param
    bundle = _bundle(workdir, rootfs)
    base, kw = _command(request, tool, workdir)

    def run() -> None:
        name = f"fc-bench-{os.getpid()}-{next(_ids)}"
        r = subprocess.run([*base, "run", "--bundle", str(bundle), name], stdin=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, **kw)
        assert r.returncode == 0, f"{tool} exited {r.returncode}: {r.stderr.strip()}"

    run.tool = tool  # type: ignore[attr-defined]
    return run


def test_oci_run_true(benchmark: Any, oci_runner: Callable[[], None]) -> None:
    benchmark.group = RUN
    benchmark.extra_info["runner"] = oci_runner.tool  # type: ignore[attr-defined]
    benchmark(oci_runner)
    benchmark.extra_info["correct"] = True
    report.record(benchmark, oci_runner.tool)  # type: ignore[attr-defined]


LIFECYCLE = ("create", "start", "state", "kill", "delete")
for _verb in LIFECYCLE:
    report.declare(f"OCI runtime: <runtime> {_verb}, whole process", base="fastcontain-oci", order=OCI_RUNNERS)


@pytest.mark.parametrize("verb", LIFECYCLE)
@pytest.mark.parametrize("tool", OCI_RUNNERS)
def test_oci_lifecycle(benchmark: Any, request: pytest.FixtureRequest, rootfs: Path, workdir: Path, tool: str,
                       verb: str) -> None:
    benchmark.group = f"OCI runtime: <runtime> {verb}, whole process"
    benchmark.extra_info["runner"] = tool
    bundle = _bundle(workdir, rootfs, ("/bin/sleep", "1000"))
    base, kw = _command(request, tool, workdir)
    names: list[str] = []

    def call(*args: str) -> str:
        r = subprocess.run([*base, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, **kw)
        assert r.returncode == 0, f"{tool} {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}"
        return r.stdout

    def status(name: str) -> str:
        return str(json.loads(call("state", name))["status"])

    def setup() -> tuple[tuple[str, ...], dict[str, Any]]:
        # the previous round's container goes first (untimed)
        while names:
            call("delete", "--force", names.pop())
        name = f"fc-bench-{os.getpid()}-{next(_ids)}"
        names.append(name)
        if verb != "create":
            # the container's stdio: /dev/null, not our pipes (they would stay open with it)
            subprocess.run([*base, "create", "--bundle", str(bundle), name], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, **kw)
        if verb in ("state", "kill", "delete"):
            call("start", name)
        if verb == "delete":
            call("kill", name, "KILL")
            deadline = time.monotonic() + 10
            while status(name) != "stopped" and time.monotonic() < deadline:
                time.sleep(0.002)
        args = {"create": ("create", "--bundle", str(bundle), name), "start": ("start", name),
                "state": ("state", name), "kill": ("kill", name, "KILL"), "delete": ("delete", name)}[verb]
        return args, {}

    def timed(*args: str) -> None:
        if args[0] == "create":
            subprocess.run([*base, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=True, **kw)
        else:
            call(*args)
        if args[0] == "delete":
            names.clear()

    try:
        benchmark.pedantic(timed, setup=setup, rounds=10, iterations=1)
        if verb == "state":
            assert status(names[0]) == "running"
    finally:
        while names:
            subprocess.run([*base, "delete", "--force", names.pop()], stdin=subprocess.DEVNULL,
                           capture_output=True, **kw)
    benchmark.extra_info["correct"] = True
    report.record(benchmark, tool)
