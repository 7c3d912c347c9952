"""Helpers for the privileged tests: run a shell script in a container, build a
directory image, read mount tables."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import fastcontain

# The set-up every default container gets (issue 2): mount, pid, uts, ipc, net, cgroup.
ALL_NAMESPACES = ("mount", "pid", "uts", "ipc", "net", "cgroup")
# A bound on every wait in these tests, so a runtime that hangs fails a test instead of
# hanging the run (the container is then removed by force); never reached when it works.
LIMIT = 120
NS_FILES = {"mount": "mnt", "pid": "pid", "uts": "uts", "ipc": "ipc", "net": "net", "cgroup": "cgroup"}


# A container that marks its /tmp, says "ready" in its log and stays up: what the exec
# tests join (wait_ready(c) first).
KEEP = "echo written-by-pid1 > /tmp/mark; echo ready; exec sleep 1000"


def wait_ready(c: Any) -> None:
    """Until c.logs() shows KEEP's "ready" (bounded by LIMIT)."""
    deadline = time.monotonic() + LIMIT
    while b"ready" not in c.logs() and time.monotonic() < deadline:
        time.sleep(0.01)


def subid_file(path: Path, monkeypatch: Any, base: int, others: str = "") -> Path:
    """A subuid/subgid-style file at `path` giving fastcontain's user the range
    base..base+65535 (after the lines `others`), used for both uids and gids through the
    environment (so the host's /etc/subuid is never read or touched)."""
    from fastcontain import security

    path.write_text(f"{others}{security.SUBID_USER}:{base}:65536\n")
    monkeypatch.setenv(security.SUBUID_ENV, str(path))
    monkeypatch.setenv(security.SUBGID_ENV, str(path))
    return path


def sh(script: str, image: str = "busybox", **options: Any) -> subprocess.CompletedProcess[str]:
    """Run `sh -c script` in a container, capture text output, require exit status 0."""
    options.setdefault("timeout", LIMIT)
    r = fastcontain.run(image, ["sh", "-c", script], capture_output=True, text=True, **options)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout!r}\nstderr: {r.stderr!r}"
    return r


def out(script: str, image: str = "busybox", **options: Any) -> str:
    return sh(script, image, **options).stdout


def host_busybox() -> str:
    path = shutil.which("busybox") or "/bin/busybox"
    assert os.path.exists(path), "busybox-static is not installed (apt-get install busybox-static)"
    return os.path.realpath(path)


def build_busybox_image(root: Path) -> Path:
    """A directory image: the host's static busybox with its applets as links and a
    minimal /etc. No /proc, /sys or /dev: the runtime has to create its mount points
    in the container's own layer."""
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "tmp").mkdir(mode=0o1777)
    os.chmod(root / "tmp", 0o1777)
    busybox = host_busybox()
    shutil.copy2(busybox, root / "bin" / "busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", root / "bin" / applet)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (root / "image-marker").write_text("from the image\n")
    return root


def tree(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every entry below root: (mode, size, mtime_ns, link target), to prove it unchanged."""
    entries = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            target = os.readlink(p) if os.path.islink(p) else ""
            entries[os.path.relpath(p, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, target)
    st = os.lstat(root)
    entries["."] = (st.st_mode, st.st_size, st.st_mtime_ns, "")
    return entries


def mountinfo(text: str) -> dict[str, tuple[str, str, str]]:
    """mount point -> (fstype, per-mount options, root) from /proc/PID/mountinfo text;
    the last mount on a point wins, as the kernel shows it."""
    table = {}
    for line in text.splitlines():
        pre, _, post = line.partition(" - ")
        f = pre.split()
        table[f[4]] = (post.split()[0], f[5], f[3])
    return table


def ns_ids(text: str) -> dict[str, str]:
    """'NAME LINK' lines -> {NAME: LINK}"""
    return dict(line.split(" ", 1) for line in text.splitlines() if line)
