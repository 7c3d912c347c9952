"""Namespaces: the container's own pid, uts, ipc, net, mount and cgroup namespaces."""

from __future__ import annotations

import os
import socket

import pytest


from .util import ALL_NAMESPACES, NS_FILES, ns_ids, out, sh

pytestmark = pytest.mark.privileged

NS_SCRIPT = "for n in mnt pid uts ipc net cgroup; do echo $n $(readlink /proc/self/ns/$n); done"


def host_ns(name: str) -> str:
    return os.readlink(f"/proc/self/ns/{name}")


def test_the_command_is_pid_1():
    assert out("echo $$") == "1\n"


def test_host_processes_are_invisible():
    # `; true` keeps sh from exec'ing ps, so the container holds exactly sh (1) and ps.
    lines = out("ps; true").splitlines()
    pids = sorted(int(line.split()[0]) for line in lines[1:])
    assert len(pids) == 2 and pids[0] == 1, lines
    # sh and ls, and grep if sh forked it before ls read /proc (a race: either is right)
    seen = sorted(out("ls /proc | grep -E '^[0-9]+$'; true").split(), key=int)
    assert seen in (["1", "2"], ["1", "2", "3"]), seen


def test_every_namespace_differs_from_the_host():
    inside = ns_ids(out(NS_SCRIPT))
    for kind in ALL_NAMESPACES:
        name = NS_FILES[kind]
        assert inside[name] != host_ns(name), f"{kind} namespace is the host's"


def test_namespaces_option_shares_what_it_leaves_out():
    inside = ns_ids(out(NS_SCRIPT, namespaces=("mount", "pid"), network="host"))
    assert inside["mnt"] != host_ns("mnt") and inside["pid"] != host_ns("pid")
    for name in ("uts", "ipc", "net", "cgroup"):
        assert inside[name] == host_ns(name), f"{name} should be the host's"


def test_default_hostname_is_the_containers_own():
    name = out("hostname").strip()
    assert name and name != socket.gethostname()


def test_given_hostname():
    assert out("hostname; cat /proc/sys/kernel/hostname", hostname="fc-test-box") == "fc-test-box\nfc-test-box\n"


def test_hostname_change_does_not_reach_the_host():
    before = socket.gethostname()
    # the defaults refuse sethostname (as docker's); with CAP_SYS_ADMIN it reaches only the uts namespace
    sh("hostname fc-changed-inside", cap_add=["SYS_ADMIN"])
    assert socket.gethostname() == before


def test_ipc_is_separate():
    # A POSIX message queue lives in its IPC namespace: made in one container (through
    # its /dev/mqueue), it is in neither the next container nor the host.
    assert out("touch /dev/mqueue/fc-probe && ls /dev/mqueue") == "fc-probe\n"
    assert out("ls /dev/mqueue") == ""
    if os.path.isdir("/dev/mqueue"):
        assert "fc-probe" not in os.listdir("/dev/mqueue")


def test_network_has_only_lo_and_it_is_up():
    assert out("ls /sys/class/net").split() == ["lo"]
    flags = int(out("cat /sys/class/net/lo/flags"), 16)
    assert flags & 0x1, f"lo is down (flags {flags:#x})"  # IFF_UP
    links = out("ip -o link show").splitlines()
    assert len(links) == 1 and " lo: " in links[0] and ",UP" in links[0], links
    assert "inet 127.0.0.1/8" in out("ip -o addr show lo")


def test_loopback_carries_traffic_inside():
    assert " 0% packet loss" in out("ping -c 1 -W 5 127.0.0.1")


def test_network_host_shares_the_hosts_namespace():
    inside = ns_ids(out(NS_SCRIPT, network="host"))
    assert inside["net"] == host_ns("net")
    assert inside["uts"] != host_ns("uts")
