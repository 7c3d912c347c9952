"""What a user namespace costs at start: one /bin/true through fastcontain.run on the
embedded busybox image without a user namespace, with userns="auto" over idmapped
layers (the parent builds the overlay: fastcontain/userns.py), and over the chowned
copies of the layers (the fallback, $FASTCONTAIN_IDMAP=0, its cache warm). The summary
gives each median as a ratio to the run without a user namespace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import report

GROUP = "spawn /bin/true: user namespaces"
MODES = ("no userns", "userns idmap", "userns copies")
BASE = 3_300_000
report.declare(GROUP, base="no userns", order=MODES)


@pytest.mark.parametrize("mode", MODES)
def test_spawn_with_userns(benchmark: Any, mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fastcontain
    from fastcontain import security, userns

    subuid = tmp_path / "subuid"
    subuid.write_text(f"{security.SUBID_USER}:{BASE}:65536\n")
    monkeypatch.setenv(security.SUBUID_ENV, str(subuid))
    monkeypatch.setenv(security.SUBGID_ENV, str(subuid))
    if mode == "userns copies":
        monkeypatch.setenv(userns.IDMAP_ENV, "0")
    options: dict[str, Any] = {} if mode == "no userns" else {"userns": "auto"}
    r = fastcontain.run("busybox", ["sh", "-c", "id -u; stat -c %u /bin/busybox; cat /proc/self/uid_map"],
                        capture_output=True, text=True, check=True, **options)
    expected = ["0", "0"] + (["0", "0", "4294967295"] if mode == "no userns" else ["0", str(BASE), "65536"])
    assert r.stdout.split() == expected, r.stdout
    benchmark.group = GROUP
    benchmark.extra_info.update(mode=mode, correct=True)

    def run() -> None:
        r = fastcontain.run("busybox", ["/bin/true"], **options)
        assert r.returncode == 0, r

    benchmark(run)
    report.record(benchmark, mode)
