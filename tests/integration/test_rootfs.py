"""The root filesystem: pivoted into an overlay over the image, /proc, /sys, /dev."""

from __future__ import annotations

import os

import pytest

import fastcontain

from .util import mountinfo, out, sh, tree

pytestmark = pytest.mark.privileged

# What a container without volumes may have mounted, and nothing else of the host's.
VIRTUAL_TREES = ("/proc", "/sys", "/dev")
DEV_ENTRIES = {
    "null", "zero", "full", "random", "urandom", "tty",
    "ptmx", "pts", "shm", "mqueue", "fd", "stdin", "stdout", "stderr",
}
CHAR_DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}


def test_root_is_an_overlay_and_only_the_containers_mounts_are_there(dir_image):
    table = mountinfo(out("cat /proc/self/mountinfo", image=str(dir_image)))
    assert table["/"][0] == "overlay", table["/"]
    stray = [p for p in table if p != "/" and not any(p == t or p.startswith(t + "/") for t in VIRTUAL_TREES)]
    assert stray == [], f"host mounts visible in the container: {stray}"
    assert table["/"][2] == "/", "the root is not the overlay's own root"
    for point in table:  # neither the state folder nor the image's host path shows
        assert "fastcontain" not in point and "pytest-of" not in point, point


def test_old_root_is_gone(dir_image):
    inside = set(out("ls -A /", image=str(dir_image)).split())
    image = set(os.listdir(dir_image))
    assert image <= inside
    # only the mount points the runtime made (in the container's own layer) are extra
    assert inside - image <= {"proc", "sys", "dev"}, inside - image
    # nothing of the host's root: its distinctive top-level folders are not there
    for host_only in set(os.listdir("/")) - image - {"proc", "sys", "dev", "tmp"}:
        assert host_only not in inside


def test_proc_is_the_containers_own():
    assert out("cat /proc/1/cmdline | tr '\\0' ' '").startswith("sh -c cat /proc/1/cmdline")
    assert out("readlink /proc/self/exe; true").strip() == "/bin/busybox"
    table = mountinfo(out("cat /proc/self/mountinfo"))
    assert table["/proc"][0] == "proc"


def test_sys_is_read_only():
    table = mountinfo(out("cat /proc/self/mountinfo"))
    fstype, options, _ = table["/sys"]
    assert fstype == "sysfs"
    assert options.split(",")[0] == "ro", options


def test_dev_holds_exactly_the_minimal_set():
    assert set(out("ls -A /dev").split()) == DEV_ENTRIES
    table = mountinfo(out("cat /proc/self/mountinfo"))
    assert table["/dev"][0] == "tmpfs"
    assert table["/dev/shm"][0] == "tmpfs"
    assert table["/dev/mqueue"][0] == "mqueue"
    assert table["/dev/pts"][0] == "devpts"


def test_dev_nodes_are_the_right_devices():
    script = "for d in null zero full random urandom tty; do echo $d $(stat -L -c '%F %t %T' /dev/$d); done"
    for line in out(script).splitlines():
        name, rest = line.split(" ", 1)
        kind, major, minor = rest.rsplit(" ", 2)
        assert kind == "character special file", line
        assert (int(major, 16), int(minor, 16)) == CHAR_DEVICES[name], line


def test_dev_nodes_work():
    assert out("head -c 4 /dev/urandom | wc -c").strip() == "4"
    assert out("head -c 4 /dev/random | wc -c").strip() == "4"
    assert out("head -c 4 /dev/zero | od -An -tx1").split() == ["00"] * 4
    assert out("echo discarded > /dev/null && cat /dev/null | wc -c").strip() == "0"
    r = fastcontain.run("busybox", ["sh", "-c", "echo x > /dev/full"], capture_output=True, text=True)
    assert r.returncode != 0 and "No space left on device" in r.stderr


def test_dev_links():
    links = out("for l in fd stdin stdout stderr; do echo $l $(readlink /dev/$l); done")
    assert links.splitlines() == [
        "fd /proc/self/fd",
        "stdin /proc/self/fd/0",
        "stdout /proc/self/fd/1",
        "stderr /proc/self/fd/2",
    ]
    assert out("echo via-link > /dev/stdout") == "via-link\n"


def test_devpts_is_a_new_instance():
    # Fresh: no host terminals in it; opening /dev/ptmx makes pty 0 in the container's own.
    assert out("ls -A /dev/pts").split() == ["ptmx"]
    assert out("exec 3<>/dev/ptmx; ls -A /dev/pts").split() == ["0", "ptmx"]
    inside_dev = int(out("stat -c %d /dev/pts"))
    if os.path.isdir("/dev/pts"):
        assert inside_dev != os.stat("/dev/pts").st_dev


def test_dev_shm_is_writable():
    assert out("echo shared > /dev/shm/probe && cat /dev/shm/probe") == "shared\n"


def test_writes_do_not_reach_a_directory_image(dir_image):
    before = tree(dir_image)
    sh(
        "echo new > /newfile && echo extra >> /etc/passwd && rm /image-marker"
        " && mkdir -p /var/lib/x && echo y > /tmp/y",
        image=str(dir_image),
    )
    second = out("test -e /newfile && echo leaked; cat /image-marker; grep -c extra /etc/passwd; true", image=str(dir_image))
    assert second == "from the image\n0\n"
    assert tree(dir_image) == before, "a container modified its image"


def test_writes_do_not_reach_the_busybox_image():
    sh("echo cow > /cow-probe && rm /bin/ls")
    assert out("test -e /cow-probe && echo leaked; test -e /bin/ls && echo ls-present; true") == "ls-present\n"


def test_readonly_rootfs():
    r = fastcontain.run("busybox", ["sh", "-c", "touch /probe"], readonly_rootfs=True, capture_output=True, text=True)
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    # the virtual trees stay usable
    assert out("echo ok > /dev/null && cat /proc/self/comm", readonly_rootfs=True) == "cat\n"


def test_host_image_runs_host_programs_isolated():
    python = "/usr/bin/python3"
    if not os.path.exists(python):
        pytest.skip("no /usr/bin/python3 on this host")
    r = fastcontain.run(
        "host", [python, "-c", "import os, socket; print(os.getpid(), sorted(os.listdir('/sys/class/net')))"],
        capture_output=True, text=True,
    )
    assert (r.returncode, r.stdout) == (0, "1 ['lo']\n"), r.stderr
    table = mountinfo(out("cat /proc/self/mountinfo", image="host"))
    assert table["/"][0] == "overlay"
    assert table["/usr"][1].split(",")[0] == "ro", table["/usr"]


def test_the_busybox_image_has_users_and_applets():
    passwd = out("cat /etc/passwd")
    assert passwd.startswith("root:x:0:0:")
    assert out("ls /bin/busybox") == "/bin/busybox\n"
