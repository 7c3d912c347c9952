"""User namespaces: root inside is an unprivileged uid on the host."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import fastcontain
from fastcontain import ConfigError, security

from .util import LIMIT, out, subid_file

pytestmark = pytest.mark.privileged
BASE = 3_000_000  # this test's own range, from its own subuid file


@pytest.fixture(autouse=True)
def subid_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return subid_file(tmp_path / "subuid", monkeypatch, BASE, others="someone:100000:65536\n")


def host_ids(pid: int) -> tuple[str, str]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return status["Uid"].split()[0], status["Gid"].split()[0]


def test_root_inside_is_an_unprivileged_uid_outside() -> None:
    with fastcontain.Container.create("busybox", ["sh", "-c", "touch /made-inside; sleep 30"], userns="auto") as c:
        c.start()
        assert c.pid is not None
        assert host_ids(c.pid) == (str(BASE), str(BASE))
    text = out("id -u; cat /proc/self/uid_map; stat -c '%u %g' / /bin/busybox; touch /x && stat -c %u /x", userns="auto")
    assert text.split() == ["0", "0", str(BASE), "65536", "0", "0", "0", "0", "0"]


@pytest.fixture
def shared() -> Iterator[Path]:
    """A host folder the container's root may reach (pytest's own tmp folders are 0700)."""
    d = Path(tempfile.mkdtemp(prefix="fastcontain-userns-"))
    try:
        os.chown(d, BASE, BASE)
        yield d
    finally:
        shutil.rmtree(d)


def test_files_made_inside_belong_to_the_mapped_uid_on_the_host(shared: Path) -> None:
    out("touch /shared/f; mkdir /shared/d", userns=f"0:{BASE}:65536", volumes=[f"{shared}:/shared"])
    assert {p.name: (p.stat().st_uid, p.stat().st_gid) for p in shared.iterdir()} == {"f": (BASE, BASE), "d": (BASE, BASE)}


def test_a_path_the_namespace_root_cannot_reach_is_named(tmp_path: Path) -> None:
    (tmp_path / "hidden").mkdir()
    with pytest.raises(fastcontain.SpawnError, match="uid 3000000 on the host") as e:
        fastcontain.run("busybox", ["true"], userns="auto", volumes=[f"{tmp_path}/hidden:/h"], timeout=LIMIT)
    assert e.value.errno == errno.EACCES and e.value.path == "/h"


def test_a_user_inside_maps_too() -> None:
    with fastcontain.Container.create("busybox", ["sleep", "30"], userns="auto", user="nobody") as c:
        c.start()
        assert c.pid is not None
        assert host_ids(c.pid) == (str(BASE + 65534), str(BASE + 65534))


def test_privileged_in_a_user_namespace_is_still_not_host_root() -> None:
    # every capability, no filter, no masks: but only over the container's own namespaces
    text = out("mount -t tmpfs none /mnt && echo mounted; (echo x > /proc/sys/kernel/core_pattern) 2>&1; "
               "cat /proc/self/status | grep CapEff", userns="auto", privileged=True)
    assert "mounted" in text and "Permission denied" in text


def test_mappings_outside_the_allowed_range_and_bad_files_are_refused(subid_files: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"outside the ranges .* \(3000000-3065535\)") as e:
        fastcontain.run("busybox", ["true"], userns="0:100000:65536", timeout=LIMIT)
    assert e.value.field == "userns"
    with pytest.raises(ConfigError, match="maps the host's root"):
        fastcontain.Config("busybox", userns="0:0:1")
    with pytest.raises(ConfigError, match="must map 0"):
        fastcontain.Config("busybox", userns=security.Userns(((1, BASE, 10),), ((0, BASE, 10),)))
    subid_files.write_text("someone:100000:65536\n")
    with pytest.raises(ConfigError, match="no range"):
        fastcontain.Config("busybox", userns="auto")
    monkeypatch.setenv(security.SUBUID_ENV, str(subid_files) + ".missing")
    with pytest.raises(ConfigError, match="cannot read the subuid file"):
        fastcontain.Config("busybox", userns="auto")
