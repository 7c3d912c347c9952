"""The root filesystem under a user namespace (fastcontain/userns.py, rust/src/idmap.rs):
idmapped layers where the kernel allows (no copy of the image), chowned copies as the
fallback ($FASTCONTAIN_IDMAP=0 here), and in both the overlay built by the host's root,
so whiteouts and opaque directories of the image's layers hide what they hide."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import fastcontain
import fastcontain.images as images
import imagetools
from fastcontain import security, state, userns

from .util import LIMIT, out, subid_file

pytestmark = pytest.mark.privileged
BASE = 3_100_000  # this file's own range, from its own subuid file


@pytest.fixture(autouse=True)
def subids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    subid_file(tmp_path / "subuid", monkeypatch, BASE)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "store"
    monkeypatch.setenv("FASTCONTAIN_STORE", str(path))
    return path


@pytest.fixture(params=["idmap", "copy"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "copy":
        monkeypatch.setenv(userns.IDMAP_ENV, "0")
    yield request.param


def test_the_probe_matches_the_kernel(store: Path) -> None:
    """Linux 6.15+ on ext4 (this host): the probe says yes, so the fast path is the tested
    one; an older kernel (the cgroup v2 guest's 6.1) is refused naming the overlay step."""
    u = security.Userns.parse("auto")
    assert u is not None
    release = tuple(int(p) for p in os.uname().release.split("-")[0].split(".")[:2])
    reason = userns.idmap_refusal(_busybox_layer(), u)
    if release >= (6, 15) and _fs(_busybox_layer()) == "ext4":
        assert reason is None
    elif release < (6, 3) and _fs(_busybox_layer()) == "tmpfs":  # tmpfs has idmapped mounts since 6.3
        assert reason is not None and "mount_setattr(MOUNT_ATTR_IDMAP)" in reason
    elif release < (6, 15):
        assert reason is not None


def _fs(path: str) -> str:
    """The filesystem type of the mount holding path."""
    best, kind = "", ""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, target, fstype = line.split()[:3]
        if (path == target or path.startswith(target.rstrip("/") + "/")) and len(target) >= len(best):
            best, kind = target, fstype
    return kind


def _busybox_layer() -> str:
    from fastcontain.image import resolve

    return resolve("busybox").layers[0]


def test_image_files_are_root_inside_and_writes_land_in_upper_as_the_mapped_uid(store: Path, mode: str) -> None:
    script = ("stat -c '%u %g' /bin/busybox /etc/passwd /; echo hi > /new; mkdir /made; "
              "echo extra >> /etc/passwd; stat -c '%u' /new /etc/passwd; touch /ready; sleep 30")
    with fastcontain.Container.create("busybox", ["sh", "-c", script], userns="auto") as c:
        c.start()
        upper = Path(state.default_root()) / c.id / "upper"
        deadline = time.monotonic() + LIMIT
        while not (upper / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        owners = {p.name: (p.stat().st_uid, p.stat().st_gid) for p in upper.iterdir()}
        assert owners["new"] == owners["made"] == owners["etc"] == (BASE, BASE)
        assert (upper / "etc" / "passwd").stat().st_uid == BASE  # a copy-up
        c.kill()
        c.wait(timeout=LIMIT)
        lines = c.logs().decode().split("\n")
    assert lines[:5] == ["0 0", "0 0", "0 0", "0", "0"]
    u = security.Userns.parse("auto")
    assert u is not None
    copied = mode == "copy" or userns.idmap_refusal(_busybox_layer(), u) is not None  # (an older kernel)
    assert (store / "userns").exists() == copied


def test_a_fallback_names_its_reason(monkeypatch: pytest.MonkeyPatch, store: Path) -> None:
    monkeypatch.setenv(userns.IDMAP_ENV, "0")
    u = security.Userns.parse("auto")
    assert u is not None
    assert userns.idmap_refusal(_busybox_layer(), u) == f"${userns.IDMAP_ENV}=0"


# What the layered test image shows (see imagetools): the whiteout of /etc/deleted-later,
# the directory /replaced turned into a file, /opq opaque with only new-c; then a delete
# inside the container (a whiteout in the upper layer) and an opaque directory made there.
PROBE = (
    "test -e /etc/deleted-later && echo deleted-later-present || echo deleted-later-gone; "
    "cat /replaced; ls /opq | tr '\\n' ' '; echo; stat -c '%U %u' /data; "
    "rm /opq/new-c; rm -r /etc; mkdir /etc; ls /opq /etc | tr '\\n' ' '; echo; id -u"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> imagetools.Built:
    return imagetools.build_layout(tmp_path_factory.mktemp("fastcontain-userns-images"))


def test_whiteouts_and_opaque_directories_hide_the_lower_layers(built: imagetools.Built, store: Path, mode: str) -> None:
    images.load(str(built.layout), "fc/busybox:layers")
    text = out(PROBE, "fc/busybox:layers", userns="auto")
    assert text.split("\n") == ["deleted-later-gone", "now a file", "new-c ", "app 1000", "/etc:  /opq: ", "0", ""]
    # without a user namespace the same (the reference)
    assert out(PROBE, "fc/busybox:layers").split("\n") == text.split("\n")


def test_the_host_network_under_a_user_namespace_shows_the_hosts_sys() -> None:
    # sysfs cannot be mounted for a network namespace the user namespace does not own: bound read-only
    text = out("ls /sys/class/net | grep -c .; touch /sys/x 2>&1 | grep -c Read-only", userns="auto", network="host")
    assert text.split() == [str(len(os.listdir("/sys/class/net"))), "1"]


@pytest.fixture
def overlay_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An image store on a filesystem that refuses idmapped mounts (an overlayfs of this
    test's own), unmounted afterwards."""
    base = tmp_path / "ovl"
    for d in ("lower", "upper", "work", "merged"):
        (base / d).mkdir(parents=True)
    merged = base / "merged"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={base}/lower,upperdir={base}/upper,workdir={base}/work", str(merged)], check=True)
    try:
        monkeypatch.setenv("FASTCONTAIN_STORE", str(merged / "store"))
        yield merged / "store"
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def test_a_filesystem_that_refuses_idmapping_falls_back_to_copies_and_says_why(
        overlay_store: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="fastcontain"):
        text = out("stat -c '%u' /bin/busybox; id -u", userns="auto")
    assert text.split() == ["0", "0"]
    assert (overlay_store / "userns").is_dir()
    said = [r.getMessage() for r in caplog.records if "idmapped layers refused" in r.getMessage()]
    assert len(said) == 1 and "mount_setattr(MOUNT_ATTR_IDMAP)" in said[0] and "EINVAL" in said[0]
    u = security.Userns.parse("auto")
    assert u is not None
    reason = userns.idmap_refusal(_busybox_layer(), u)
    assert reason is not None and "does not support idmapped mounts" in reason
