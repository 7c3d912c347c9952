"""Device access control (fastcontain.devices), enforced by the kernel: a default
container opens only the default /dev's nodes, whatever node it gets by a bind or
makes with mknod; --device adds one node with the permissions asked; privileged
allows all and gets the host's nodes.

Each test runs with each way of enforcing this host offers: the cgroup v2 device
program ("bpf": v2 hosts, and the default on hybrid ones) and the v1 devices
controller ("v1": v1 and hybrid hosts).

A node with an unassigned major (240, "local/experimental use") tells the cgroup's
verdict apart from the driver's: the cgroup refuses with EPERM ("Operation not
permitted"); once the cgroup lets it through, the kernel finds no driver: ENXIO
("No such device or address"). No real device is read or written here."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import fastcontain
import harness
from fastcontain import cgroups

from .util import out

pytestmark = pytest.mark.privileged

REFUSED = "Operation not permitted"  # EPERM: the devices cgroup
NO_DRIVER = "No such device or address"  # ENXIO: past the cgroup, no driver for 240:x


def backends() -> list[str]:
    host = cgroups.Host.detect()
    return (["bpf"] if host.unified else []) + (["v1"] if "devices" in host.v1 else [])


@pytest.fixture(params=backends())
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv(cgroups.DEVICE_BACKEND_ENV, request.param)
    cgroups.reset()
    m = cgroups.Manager()  # not prepared yet: is our parent in the devices controller there?
    ours = os.path.join(m.host.mount("devices"), m.parent) if "devices" in m.host.v1 else None
    made = ours is not None and request.param == "v1" and not os.path.isdir(ours)
    assert cgroups.manager().device_backend == request.param
    yield request.param
    monkeypatch.delenv(cgroups.DEVICE_BACKEND_ENV)
    cgroups.reset()
    if made:  # the devices controller's parent, made for this test only
        assert ours is not None
        harness.flush_teardowns()  # the containers' cgroups go on the teardown worker
        os.rmdir(ours)


@pytest.fixture
def node(tmp_path: Path) -> Path:
    """A character node 240:0 the host made (no driver behind it)."""
    p = tmp_path / "node"
    os.mknod(p, 0o666 | stat.S_IFCHR, os.makedev(240, 0))
    return p


def try_open(path: str) -> str:
    """A shell script opening path for reading, then for writing: one line each."""
    return (f"(exec 3< {path}) 2>&1 | sed 's/.*: //'; echo r-done; "
            f"(exec 3> {path}) 2>&1 | sed 's/.*: //'; echo w-done")


def verdicts(text: str) -> tuple[str, str]:
    """(read, write): the error the shell printed, or "ok"."""
    lines = text.splitlines()
    r = lines[:lines.index("r-done")]
    w = lines[lines.index("r-done") + 1:lines.index("w-done")]
    return (r[0] if r else "ok"), (w[0] if w else "ok")


def test_a_leaked_node_is_refused_by_default(backend: str, node: Path) -> None:
    # bound in by a volume, without --device: the cgroup refuses both ways
    assert verdicts(out(try_open("/leak/node"), volumes=[f"{node}:/leak/node"])) == (REFUSED, REFUSED)
    # a real host device the same way: /dev/kmsg (only opened, nothing read or written)
    assert verdicts(out("(exec 3< /leak/kmsg) 2>&1 | sed 's/.*: //'; echo r-done; echo w-done",
                        volumes=["/dev/kmsg:/leak/kmsg"]))[0] == REFUSED
    # privileged: every device is allowed, and the kernel finds no driver behind 240:0
    assert verdicts(out(try_open("/leak/node"), volumes=[f"{node}:/leak/node"], privileged=True)) == (NO_DRIVER, NO_DRIVER)


def test_the_default_nodes_work_and_made_nodes_cannot_be_opened(backend: str) -> None:
    text = out("for d in null zero full random urandom tty; do [ -c /dev/$d ] && echo x > /dev/$d 2>/dev/null; done; "
               "head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok; "
               "mknod /dev/fc-mem c 1 1 && echo made; " + try_open("/dev/fc-mem") +
               "; mknod /dev/fc-disk b 8 0 && echo made; " + try_open("/dev/fc-disk"))
    lines = text.splitlines()
    assert lines[:3] == ["4", "null-ok", "made"], text
    assert verdicts("\n".join(lines[3:7])) == (REFUSED, REFUSED), text
    assert lines[7] == "made" and verdicts("\n".join(lines[8:])) == (REFUSED, REFUSED), text


@pytest.mark.parametrize("perms,expected", [("r", (NO_DRIVER, REFUSED)), ("w", (REFUSED, NO_DRIVER)),
                                            ("rw", (NO_DRIVER, NO_DRIVER)), ("m", (REFUSED, REFUSED))])
def test_device_permissions_are_enforced(backend: str, node: Path, perms: str, expected: tuple[str, str]) -> None:
    text = out(try_open("/dev/xdev") + "; ls -l /dev/xdev", devices=[f"{node}:/dev/xdev:{perms}"])
    assert verdicts(text) == expected, text
    assert text.splitlines()[-1].startswith("c") and "240,   0" in text.splitlines()[-1]


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="this kernel has no /dev/fuse")
def test_a_read_only_device_opens_for_reading_only(backend: str) -> None:
    # /dev/fuse (10:229) opens without a mount; nothing is read or written
    assert verdicts(out(try_open("/dev/xfuse"), devices=["/dev/fuse:/dev/xfuse:r"])) == ("ok", REFUSED)
    assert verdicts(out(try_open("/dev/xfuse"), devices=["/dev/fuse:/dev/xfuse"])) == ("ok", "ok")


def test_privileged_gets_the_hosts_nodes_and_a_writable_sys(backend: str) -> None:
    from fastcontain import devices

    host = [n[0] for n in devices.host_devices()]
    assert "/dev/kmsg" in host and "/dev/null" not in host
    text = out("ls /dev; grep ' /sys ' /proc/self/mountinfo; (exec 3< /dev/kmsg) && echo kmsg-opened", privileged=True)
    seen = set(text.split())
    assert {os.path.relpath(p, "/dev").split("/")[0] for p in host} <= seen
    assert " rw," in next(line for line in text.splitlines() if " /sys " in line)
    assert "kmsg-opened" in text
    default = out("ls /dev; grep ' /sys ' /proc/self/mountinfo")
    assert "kmsg" not in default.split() and " ro," in next(line for line in default.splitlines() if " /sys " in line)


def test_a_pool_slot_with_other_device_rules_is_not_reused(backend: str, node: Path) -> None:
    with fastcontain.Pool("busybox", size=1) as pool:
        r = pool.run(["sh", "-c", try_open("/dev/xdev")], devices=[f"{node}:/dev/xdev:r"], capture_output=True, text=True)
        assert verdicts(r.stdout) == (NO_DRIVER, REFUSED), r.stdout
        r = pool.run(["sh", "-c", try_open("/leak")], volumes=[f"{node}:/leak"], capture_output=True, text=True)
        assert verdicts(r.stdout) == (REFUSED, REFUSED), r.stdout


def test_an_exec_is_held_to_the_same_rules(backend: str, node: Path) -> None:
    with fastcontain.Container.create("busybox", ["sleep", "1000"], volumes=[f"{node}:/leak"], memory="64m") as c:
        c.start()
        r = c.exec_run(["sh", "-c", try_open("/leak") + "; cat /proc/self/cgroup; echo --; cat /proc/1/cgroup"])
        assert r.exit_code == 0, r.output
        text = r.output.decode()
        assert verdicts(text) == (REFUSED, REFUSED), text
        mine, pid1 = text.split("w-done\n")[1].split("--\n")
        assert mine == pid1, "the exec is in every cgroup of the container's init (v1 controllers too)"


def test_the_command_line_takes_device_permissions(node: Path) -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "fastcontain", "run", "--rm", "--device", f"{node}:/dev/xdev:w", "busybox",
                        "sh", "-c", try_open("/dev/xdev")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert verdicts(r.stdout) == (REFUSED, NO_DRIVER), r.stdout
    r = subprocess.run([sys.executable, "-m", "fastcontain", "run", "--rm", "--device", f"{node}:/dev/xdev:rwx",
                        "busybox", "true"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "devices[0]" in r.stderr and "r, w and m" in r.stderr, r.stderr


def test_a_device_cgroup_rule_allows_numbers(backend: str, node: Path) -> None:
    # the node comes by a volume; the rule (docker's --device-cgroup-rule) lets it be read
    text = out(try_open("/leak"), volumes=[f"{node}:/leak"], device_cgroup_rules=["c 240:* r"])
    assert verdicts(text) == (NO_DRIVER, REFUSED), text
