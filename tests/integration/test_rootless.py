"""Rootless use (fastcontain/rootless.py): fastcontain run by a real unprivileged uid
(setpriv --reuid/--regid --clear-groups), with HOME and the XDG folders in this test's
own tmp folder. Root runs the test only to become that user."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fastcontain
import imagetools

from .util import LIMIT

pytestmark = pytest.mark.privileged
UID = GID = 61_234  # no account: setpriv takes numbers


def _reachable(path: str) -> bool:
    """Whether a user who is neither the owner nor in the group may read (and cross to) path."""
    p = os.path.realpath(path)
    parts = Path(p).parents
    if any(not os.stat(d).st_mode & stat.S_IXOTH for d in parts):
        return False
    return bool(os.stat(p).st_mode & stat.S_IROTH)


def _interpreter() -> tuple[str, str]:
    """A python the user can run, and the folder holding the installed fastcontain."""
    site = os.path.dirname(os.path.dirname(os.path.realpath(fastcontain.__file__)))
    for exe in (sys.executable, "/usr/bin/python3"):
        ok = os.path.exists(exe) and _reachable(exe)
        if ok and subprocess.run([exe, "-c", "import sys; assert sys.version_info >= (3, 10)"]).returncode == 0:
            if _reachable(os.path.join(site, "fastcontain", "__init__.py")):
                return exe, site
    pytest.skip(f"neither {sys.executable} nor /usr/bin/python3 with {site} is readable by other users here "
                "(the package must be installed where an unprivileged user can import it)")


@pytest.fixture
def home() -> Iterator[Path]:
    """The user's HOME, XDG_DATA_HOME and XDG_RUNTIME_DIR: in /tmp (pytest's folders are 0700)."""
    d = Path(tempfile.mkdtemp(prefix="fastcontain-rootless-"))
    try:
        for sub in ("data", "run"):
            (d / sub).mkdir()
        for p in (d, d / "data", d / "run"):
            os.chown(p, UID, GID)
        os.chmod(d / "run", 0o700)
        yield d
    finally:
        subprocess.run(["rm", "-rf", str(d)], check=False)  # the user's overlay work dirs are 000


def as_user(home: Path, script: str, subid: str | None = None) -> dict[str, Any]:
    """Run `script` (Python; it sets `result`) as the unprivileged user; returns result.
    `subid`: the /etc/subuid and /etc/subgid it sees, in a private mount namespace (an
    overlay on /etc there: the host's /etc is not touched), for newuidmap."""
    exe, site = _interpreter()
    env = {"HOME": str(home), "XDG_DATA_HOME": str(home / "data"), "XDG_RUNTIME_DIR": str(home / "run"),
           "PATH": "/usr/bin:/bin", "PYTHONPATH": site}
    code = "import json, os, fastcontain\nresult = {}\n" + textwrap.dedent(script) + "\nprint(json.dumps(result))\n"
    argv = ["setpriv", f"--reuid={UID}", f"--regid={GID}", "--clear-groups", exe, "-c", code]
    if subid is not None:
        etc = home / "etc"
        for d in ("upper", "work"):
            (etc / d).mkdir(parents=True)
        for f in ("subuid", "subgid"):
            (etc / "upper" / f).write_text(subid)
        # newuidmap wants the caller to have an account: one for UID, in the private /etc only
        for f, line in (("passwd", f"fcrootless:x:{UID}:{GID}::{home}:/bin/sh\n"), ("group", f"fcrootless:x:{GID}:\n")):
            (etc / "upper" / f).write_text(Path(f"/etc/{f}").read_text() + line)
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                f'mount -t overlay overlay -o lowerdir=/etc,upperdir={etc}/upper,workdir={etc}/work /etc && exec "$@"',
                "sh", *argv]
    r = subprocess.run(argv, env=env, cwd=str(home), capture_output=True, text=True, timeout=LIMIT)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_an_unprivileged_user_runs_a_container_as_root_inside(home: Path) -> None:
    result = as_user(home, """
        r = fastcontain.run("busybox", ["sh", "-c", "id -u; id -g; cat /proc/self/uid_map; stat -c '%u' / /bin/busybox; "
                                        "echo hi > /made; cat /made; ls /dev | tr '\\\\n' ' '; echo; cat /proc/1/cmdline"],
                            capture_output=True, text=True)
        result["run"] = [r.returncode, r.stdout, r.stderr]
        with fastcontain.Container.create("busybox", ["sh", "-c", "echo x > /new; sleep 30"]) as c:
            c.start()
            upper = os.path.join(os.environ["XDG_RUNTIME_DIR"], "fastcontain", c.id, "upper")
            import time
            while not os.path.exists(os.path.join(upper, "new")):
                time.sleep(0.01)
            st = os.stat(os.path.join(upper, "new"))
            result["upper"] = [upper, st.st_uid, st.st_gid]
            e = c.exec_run(["sh", "-c", "id -u; cat /new"])
            result["exec"] = [e.exit_code, e.output.decode()]
            c.kill()
            c.wait()
        h = fastcontain.run("busybox", ["sh", "-c", "ls /sys/class/net | grep -c .; id -u"], network="host",
                            capture_output=True, text=True)
        result["host"] = [h.returncode, h.stdout, h.stderr, len(os.listdir("/sys/class/net"))]
        with fastcontain.Pool("busybox", size=1) as pool:
            result["pool"] = pool.run(["id", "-u"], capture_output=True, text=True).stdout
        import subprocess, sys
        cli = subprocess.run([sys.executable, "-m", "fastcontain", "run", "--rm", "busybox", "sh", "-c", "id -u; hostname"],
                             capture_output=True, text=True)
        result["cli"] = [cli.returncode, cli.stdout, cli.stderr]
        result["store"] = sorted(os.listdir(os.path.join(os.environ["XDG_DATA_HOME"], "fastcontain", "images")))
        result["left"] = sorted(os.listdir(os.path.join(os.environ["XDG_RUNTIME_DIR"], "fastcontain")))
    """)
    code, stdout, stderr = result["run"]
    assert code == 0, stderr
    lines = stdout.split("\n")
    assert lines[0:2] == ["0", "0"]
    assert lines[2].split() == ["0", str(UID), "1"]
    assert lines[3:6] == ["0", "0", "hi"]
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm"} <= set(lines[6].split())
    code, stdout, stderr, links = result["host"]
    assert code == 0 and stdout.split() == [str(links), "0"], stderr  # the host's interfaces, through its /sys
    assert result["pool"] == "0\n"
    code, stdout, stderr = result["cli"]
    assert code == 0 and stdout.split("\n")[0] == "0", stderr
    assert result["exec"] == [0, "0\nx\n"]
    upper, uid, gid = result["upper"]
    assert str(upper).startswith(str(home / "run" / "fastcontain")) and (uid, gid) == (UID, GID)
    assert result["store"] == ["busybox"]
    assert not [e for e in result["left"] if len(e) == 16]


def test_what_rootless_cannot_do_is_refused_clearly(home: Path) -> None:
    result = as_user(home, """
        from fastcontain import ConfigError, CgroupError
        for name, kw in (("bridge", {"network": "bridge"}), ("memory", {"memory": "64m"}),
                         ("range", {"userns": "0:100000:65536"}), ("host", {"userns": "host"})):
            try:
                fastcontain.run("busybox", ["true"], **kw)
                result[name] = "ran"
            except (ConfigError, CgroupError) as e:
                result[name] = [type(e).__name__, str(e)]
        root = os.path.join(os.environ["XDG_RUNTIME_DIR"], "fastcontain")
        result["left"] = sorted(os.listdir(root)) if os.path.exists(root) else []
    """)
    assert result["bridge"][0] == "ConfigError" and "rootless" in result["bridge"][1]
    kind, text = result["memory"]
    assert kind == "CgroupError" and "/sys/fs/cgroup" in text and "not writable" in text
    assert result["range"][0] == "ConfigError" and f"0:{UID}:1" in result["range"][1]
    assert result["host"][0] == "ConfigError"
    assert not [e for e in result["left"] if len(e) == 16]


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return imagetools.build_layout(tmp_path_factory.mktemp("fastcontain-rootless-images")).layout


def test_a_layered_image_unpacked_by_the_user_keeps_its_whiteouts_and_opaque_dirs(home: Path, layout: Path) -> None:
    """Needs a store where the user may make whiteouts (mknod 0:0) and user.* xattrs: ext4
    here; not the cgroup v2 guest's tmpfs on 6.1 (user xattrs on tmpfs since 6.6)."""
    mine = home / "oci"
    shutil.copytree(layout, mine)
    subprocess.run(["chown", "-R", f"{UID}:{GID}", str(mine)], check=True)
    result = as_user(home, f"""
        import fastcontain.images as images
        images.load({str(mine)!r}, "fc/busybox:layers")
        r = fastcontain.run("fc/busybox:layers", ["sh", "-c",
            "test -e /etc/deleted-later && echo present || echo gone; cat /replaced; ls /opq | tr '\\\\n' ' '; echo; "
            "rm /opq/new-c; ls /opq | wc -l; stat -c '%U' /data"], capture_output=True, text=True)
        result["run"] = [r.returncode, r.stdout, r.stderr]
    """)
    code, stdout, stderr = result["run"]
    assert code == 0, stderr
    assert stdout.split("\n") == ["gone", "now a file", "new-c ", "0", "root", ""]


def test_subuid_ranges_through_newuidmap(home: Path) -> None:
    if shutil.which("newuidmap") is None or shutil.which("newgidmap") is None:
        pytest.fail("newuidmap/newgidmap are missing: .ci/run installs them (apt-get install uidmap)")
    result = as_user(home, """
        r = fastcontain.run("busybox", ["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; touch /f; chown 1000:1000 /f; "
                                        "stat -c '%u %g' /f"],
                            userns="auto", capture_output=True, text=True)
        result["run"] = [r.returncode, r.stdout, r.stderr]
    """, subid="someone:100000:65536\nfcrootless:300000:65536\n")
    code, stdout, stderr = result["run"]
    assert code == 0, stderr
    lines = [line.split() for line in stdout.strip().split("\n")]
    assert lines[:4] == [["0", str(UID), "1"], ["1", "300000", "65535"], ["0", str(GID), "1"], ["1", "300000", "65535"]]
    assert lines[4] == ["1000", "1000"]


def test_subuid_without_a_range_is_named(home: Path) -> None:
    result = as_user(home, """
        try:
            fastcontain.run("busybox", ["true"], userns="auto")
        except fastcontain.ConfigError as e:
            result["error"] = str(e)
    """, subid="someone:100000:65536\n")
    assert "/etc/subuid gives" in str(result["error"]) and "fcrootless" in str(result["error"])
