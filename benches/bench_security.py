"""What the security defaults cost: one /bin/true through fastcontain.run with the
defaults (docker's capabilities, no_new_privs, the seccomp filter, masked and
read-only paths, the device program), with seccomp=unconfined (the filter's share),
with a --device read-only (a rule set of its own: its own program, loaded once),
and privileged (none of it; but, as docker's, the host's /dev nodes made in the
container's, about 0.7 ms for 94 nodes here). The session ends with each median and
the defaults' cost as a fraction of the privileged spawn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

MODES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "seccomp=unconfined": {"security_opt": ["seccomp=unconfined"]},
    "device /dev/kmsg:r": {"devices": ["/dev/kmsg:/dev/xkmsg:r"]},
    "privileged": {"privileged": True},
}
_medians: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def _summary(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    base = _medians.get("privileged")
    if tr is None or base is None:
        return
    tr.write_line("")
    tr.write_line("security: one /bin/true per run, cost against privileged")
    for mode in MODES:
        if mode in _medians:
            m = _medians[mode]
            tr.write_line(f"  {mode:20} median {m * 1e3:7.3f} ms  {(m - base) / base:+6.1%} of the privileged spawn")


@pytest.mark.parametrize("mode", list(MODES))
def test_spawn_with_security(benchmark: Any, rootfs: Path, mode: str) -> None:
    import fastcontain

    options = MODES[mode]
    image = str(rootfs)
    status = fastcontain.run(image, ["cat", "/proc/self/status"], capture_output=True, text=True, check=True, **options)
    seccomp = next(line.split()[1] for line in status.stdout.splitlines() if line.startswith("Seccomp:"))
    assert seccomp == ("0" if mode in ("seccomp=unconfined", "privileged") else "2"), status.stdout
    benchmark.group = "spawn /bin/true: security"
    benchmark.extra_info.update(mode=mode, seccomp_mode=seccomp, correct=True)

    def run() -> None:
        r = fastcontain.run(image, ["/bin/true"], **options)
        assert r.returncode == 0, r

    benchmark(run)
    if benchmark.stats:
        _medians[mode] = benchmark.stats.stats.median
