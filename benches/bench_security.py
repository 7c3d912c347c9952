"""What the security defaults cost: one /bin/true through fastcontain.run with the
defaults (docker's capabilities, no_new_privs, the seccomp filter, masked and
read-only paths, the device program), with seccomp=unconfined (the filter's share),
with a --device read-only (a rule set of its own: its own program, loaded once),
and privileged (none of it; but, as docker's, the host's /dev nodes made in the
container's, about 0.7 ms for 94 nodes here). The summary gives each median as a
ratio to the privileged spawn's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import report

GROUP = "spawn /bin/true: security"
MODES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "seccomp=unconfined": {"security_opt": ["seccomp=unconfined"]},
    "device /dev/kmsg:r": {"devices": ["/dev/kmsg:/dev/xkmsg:r"]},
    "privileged": {"privileged": True},
}
report.declare(GROUP, base="privileged", order=tuple(MODES))


@pytest.mark.parametrize("mode", list(MODES))
def test_spawn_with_security(benchmark: Any, rootfs: Path, mode: str) -> None:
    import fastcontain

    options = MODES[mode]
    image = str(rootfs)
    status = fastcontain.run(image, ["cat", "/proc/self/status"], capture_output=True, text=True, check=True, **options)
    seccomp = next(line.split()[1] for line in status.stdout.splitlines() if line.startswith("Seccomp:"))
    assert seccomp == ("0" if mode in ("seccomp=unconfined", "privileged") else "2"), status.stdout
    benchmark.group = GROUP
    benchmark.extra_info.update(mode=mode, seccomp_mode=seccomp, correct=True)

    def run() -> None:
        r = fastcontain.run(image, ["/bin/true"], **options)
        assert r.returncode == 0, r

    benchmark(run)
    report.record(benchmark, mode)
