"""What an exec into a running container costs: /bin/true joined to a sleeping container
by Container.exec_run (the owner's process), by Detached.exec_run (any process: record,
pidfd check, exec.json, seccomp), by `fastcontain exec` as a whole process (what a shell
user waits for), and by util-linux `nsenter --all` of the same namespaces as a whole
process (a floor for a command that joins and execs, without cgroup or security).
Each runner checks its run was inside the container (its pid namespace) once, and
that every timed run exited 0. The summary gives each median as a ratio to the
in-process exec's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import report

GROUP = "exec /bin/true into a running container"
RUNNERS = ("exec_run", "detached.exec_run", "fastcontain exec (CLI)", "nsenter --all")
CLI = [str(Path(sys.executable).parent / "fastcontain"), "exec"]
report.declare(GROUP, base="exec_run", order=RUNNERS)


@pytest.fixture(scope="module")
def targets(rootfs: Path) -> Iterator[tuple[Any, Any]]:
    import fastcontain
    from fastcontain import containers

    image = str(rootfs)
    with fastcontain.Container.create(image, ["sleep", "3600"]) as owned:
        owned.start()
        detached = containers.run(image, ["sleep", "3600"])
        try:
            yield owned, detached
        finally:
            detached.remove(force=True)


def _runner(name: str, owned: Any, detached: Any) -> tuple[Callable[[], None], Callable[[], str]]:
    """(one /bin/true, the probe: the pid namespace it ran in)."""
    probe_cmd = ["readlink", "/proc/self/ns/pid"]
    if name == "exec_run":
        def run() -> None:
            assert owned.exec_run(["/bin/true"]).exit_code == 0

        return run, lambda: owned.exec_run(probe_cmd).output.decode().strip()
    if name == "detached.exec_run":
        def run() -> None:
            assert detached.exec_run(["/bin/true"]).exit_code == 0

        return run, lambda: detached.exec_run(probe_cmd).output.decode().strip()
    if name == "fastcontain exec (CLI)":
        env = dict(os.environ)

        def run() -> None:
            subprocess.run([*CLI, detached.id, "/bin/true"], check=True, env=env)

        return run, lambda: subprocess.run([*CLI, detached.id, *probe_cmd], check=True, capture_output=True,
                                           text=True).stdout.strip()
    nsenter = shutil.which("nsenter")
    if nsenter is None:
        pytest.skip("nsenter (util-linux) is not installed")
    argv = [nsenter, "--all", "-t", str(detached.pid)]

    def run() -> None:
        subprocess.run([*argv, "/bin/true"], check=True)

    return run, lambda: subprocess.run([*argv, *probe_cmd], check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize("name", RUNNERS)
def test_exec(benchmark: Any, targets: tuple[Any, Any], name: str) -> None:
    owned, detached = targets
    run, probe = _runner(name, owned, detached)
    init = detached.pid if name != "exec_run" else owned.pid
    inside = probe() == os.readlink(f"/proc/{init}/ns/pid")
    assert inside, f"{name} did not run in the container's pid namespace"
    benchmark.group = GROUP
    benchmark.extra_info.update(runner=name, correct=inside)
    benchmark(run)
    report.record(benchmark, name)
