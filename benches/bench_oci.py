"""`fastcontain-oci run` as a whole process (an interpreter per call, as an engine runs
it) beside `crun run` and `runc run` on the same bundle: /bin/true from the busybox
rootfs with mount, pid, uts, ipc, net and cgroup namespaces, each runner's own default
mounts. fastcontain-oci and runc put the container in a cgroup (created and removed per
run); crun runs with its cgroup manager disabled (it refuses this host's hybrid layout;
see conftest.crun_setup)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from itertools import count
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import HYBRID_V2, OCI_NAMESPACES, private_mount_ns_without_unified, setns_mount

OCI_RUNNERS = ("fastcontain-oci", "crun", "runc")
_ids = count()


def _bundle(workdir: Path, rootfs: Path) -> Path:
    """What `runc spec` writes, pointed at the shared rootfs, running /bin/true, with the
    namespaces of the spawn bench and no cgroup mount or resources."""
    from fastcontain.oci_cli import default_spec

    bundle = workdir / "oci-bench"
    if not bundle.exists():
        bundle.mkdir()
        config = default_spec()
        config["root"] = {"path": str(rootfs), "readonly": True}
        config["process"].update(terminal=False, args=["/bin/true"])
        config["linux"]["namespaces"] = [{"type": t} for t in OCI_NAMESPACES]
        config["linux"].pop("resources", None)
        config["mounts"] = [m for m in config["mounts"] if m["destination"] != "/sys/fs/cgroup"]
        (bundle / "config.json").write_text(json.dumps(config))
    return bundle


@pytest.fixture(params=OCI_RUNNERS)
def oci_runner(request: pytest.FixtureRequest, rootfs: Path, workdir: Path) -> Callable[[], None]:
    tool = request.param
    bundle = _bundle(workdir, rootfs)
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

    def run() -> None:
        name = f"fc-bench-{os.getpid()}-{next(_ids)}"
        r = subprocess.run([*base, "run", "--bundle", str(bundle), name], stdin=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, **kw)
        assert r.returncode == 0, f"{tool} exited {r.returncode}: {r.stderr.strip()}"

    run.tool = tool  # type: ignore[attr-defined]
    return run


def test_oci_run_true(benchmark: Any, oci_runner: Callable[[], None]) -> None:
    benchmark.group = "OCI runtime: <runtime> run of /bin/true, whole process"
    benchmark.extra_info["runner"] = oci_runner.tool  # type: ignore[attr-defined]
    benchmark(oci_runner)
    benchmark.extra_info["correct"] = True
