"""OCI bundles with a user namespace: linux.uidMappings / gidMappings as `crun spec` plus a
user namespace writes them (a rootfs owned by the mapped range) and as `runc spec --rootless`
writes them (one id mapped, no network namespace): the container sees its maps in
/proc/self/uid_map and is root inside only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from .test_oci_cli import OCI, oci, ok, rm_cgroup_parent
from .util import build_busybox_image

pytestmark = pytest.mark.privileged

SHOW = "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; touch /made && stat -c %u:%g /made; " \
       "cat /proc/self/status | grep CapEff"


@pytest.fixture
def open_bundle() -> Iterator[Path]:
    """A bundle the user namespace's root can reach: pytest's tmp folders are 0700."""
    d = Path(tempfile.mkdtemp(prefix="fastcontain-test-oci-userns-"))
    try:
        d.chmod(0o755)
        build_busybox_image(d / "rootfs")
        for sub in ("proc", "sys", "dev"):
            (d / "rootfs" / sub).mkdir(exist_ok=True)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.lchown(name, uid, gid)


def _spec(tool: str, bundle: Path, rootless: bool) -> dict[str, Any]:
    if tool == "fastcontain-oci":
        subprocess.run([*OCI, "spec", *(["--rootless"] if rootless else [])], cwd=bundle, check=True)
    elif shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    else:
        subprocess.run([tool, "spec", *(["--rootless"] if rootless else [])], cwd=bundle, check=True)
    config: dict[str, Any] = json.loads((bundle / "config.json").read_text())
    config["process"].update(terminal=False, args=["sh", "-c", SHOW])
    config["root"]["readonly"] = False
    config["linux"]["cgroupsPath"] = f"/fastcontain-test-{os.urandom(4).hex()}/{bundle.name}"
    return config


def _run(root: str, bundle: Path, config: dict[str, Any], name: str) -> list[str]:
    (bundle / "config.json").write_text(json.dumps(config))
    try:
        r = subprocess.run([*OCI, "--root", root, "run", "--bundle", str(bundle), name], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines()
    finally:
        rm_cgroup_parent(config)


def test_crun_spec_with_a_user_namespace_and_a_mapped_rootfs(open_bundle: Path, tmp_path: Path) -> None:
    config = _spec("crun", open_bundle, rootless=False)
    config["linux"]["namespaces"].append({"type": "user"})
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    _chown_tree(open_bundle / "rootfs", 100000, 100000)
    out = _run(str(tmp_path / "root"), open_bundle, config, "un1")
    maps = [line.split() for line in out[:2]]
    assert maps == [["0", "100000", "65536"], ["0", "100000", "65536"]]
    assert out[2:4] == ["0", "0"]
    assert out[4] == "0:0"  # root inside; on the host the file is the mapped range's
    made = os.stat(open_bundle / "rootfs" / "made")
    assert (made.st_uid, made.st_gid) == (100000, 100000)
    assert out[5].split()[1] != "0000000000000000"


@pytest.mark.parametrize("tool", ["runc", "fastcontain-oci"])
def test_a_rootless_spec_one_id_mapped_without_a_network_namespace(open_bundle: Path, tmp_path: Path,
                                                                   tool: str) -> None:
    """What `runc spec --rootless` writes (here: our uid 0 mapped to 0, size 1, no netns, /sys bound),
    and `fastcontain-oci spec --rootless` the same way."""
    config = _spec(tool, open_bundle, rootless=True)
    assert not any(ns["type"] == "network" for ns in config["linux"]["namespaces"])
    uid = config["linux"]["uidMappings"]
    out = _run(str(tmp_path / "root"), open_bundle, config, f"un2-{tool}")
    assert out[0].split() == [str(uid[0]["containerID"]), str(uid[0]["hostID"]), str(uid[0]["size"])]
    assert out[2:5] == ["0", "0", "0:0"]


def test_the_user_namespace_is_the_one_hooks_and_state_see(open_bundle: Path, tmp_path: Path) -> None:
    """create/start/delete with mappings: the init's uid_map on the host side matches the config."""
    config = _spec("crun", open_bundle, rootless=False)
    config["process"]["args"] = ["sleep", "60"]
    config["linux"]["namespaces"].append({"type": "user"})
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    (open_bundle / "config.json").write_text(json.dumps(config))
    root = str(tmp_path / "root")
    try:
        ok(root, "create", "--bundle", str(open_bundle), "un3")
        pid = json.loads(ok(root, "state", "un3"))["pid"]
        with open(f"/proc/{pid}/uid_map") as f:
            assert f.read().split() == ["0", "100000", "65536"]
        assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
        ok(root, "start", "un3")
        ok(root, "kill", "un3", "KILL")
    finally:
        oci(root, "delete", "--force", "un3")
        rm_cgroup_parent(config)


def test_create_hooks_reach_a_container_with_a_user_namespace(open_bundle: Path, tmp_path: Path) -> None:
    """createContainer joins the mount namespace a user namespace owns (before pivot_root)."""
    marks = tmp_path / "marks"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\nread state\ngrep -q ' {open_bundle}/rootfs/proc ' /proc/self/mountinfo "
                    f"&& echo $1 >> {marks}\n")
    hook.chmod(0o755)
    config = _spec("crun", open_bundle, rootless=False)
    config["linux"]["namespaces"].append({"type": "user"})
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    config["root"]["readonly"] = True
    config["process"]["args"] = ["sh", "-c", "cat /proc/self/uid_map"]
    config["hooks"] = {"createContainer": [{"path": str(hook), "args": ["hook.sh", "createContainer"]}],
                       "createRuntime": [{"path": "/bin/true"}]}
    out = _run(str(tmp_path / "root"), open_bundle, config, "un4")
    assert out[0].split() == ["0", "100000", "65536"]
    assert marks.read_text().split() == ["createContainer"]
