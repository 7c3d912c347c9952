"""The device rules: their reduction to a policy (as the v1 kernel reduces its
writes), the v1 lines, the BPF program (run here through a small interpreter of the
instructions it uses, so every rule is checked against the policy without a kernel),
and the options that make them."""

from __future__ import annotations

import itertools
import os
import stat
import struct

import pytest

from fastcontain import Config, devices
from fastcontain.devices import DEFAULT_POLICY, Policy, Rule
from fastcontain.errors import ConfigError


def run_program(code: bytes, kind: str, major: int, minor: int, access: str) -> int:
    """Interpret the instructions Policy.program emits on one request."""
    ctx = [(sum({"m": 1, "r": 2, "w": 4}[c] for c in access) << 16) | {"b": 1, "c": 2}[kind], major, minor]
    regs = [0] * 11
    insns = [struct.unpack("<BBhi", code[i:i + 8]) for i in range(0, len(code), 8)]
    pc = 0
    for _ in range(10_000):
        op, r, off, imm = insns[pc]
        dst, src = r & 0xF, r >> 4
        pc += 1
        if op == 0x61:
            assert src == 1 and off % 4 == 0
            regs[dst] = ctx[off // 4]
        elif op == 0x54:
            regs[dst] = regs[dst] & (imm & 0xFFFFFFFF)
        elif op == 0x74:
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif op == 0xBC:
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif op == 0xB7:
            regs[dst] = imm
        elif op == 0x55:
            pc += off if regs[dst] != imm else 0
        elif op == 0x15:
            pc += off if regs[dst] == imm else 0
        elif op == 0x5D:
            pc += off if regs[dst] != regs[src] else 0
        elif op == 0x95:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")
    raise AssertionError("no exit")


REQUESTS = list(itertools.product("cb", (1, 5, 8, 136, 240), (0, 1, 3, 9), ("r", "w", "m", "rw", "rwm")))


@pytest.mark.parametrize("rules", [
    devices.DEFAULT_RULES,
    devices.DEFAULT_RULES + (Rule(True, "c", 240, 0, "r"), Rule(True, "b", 8, None, "rw")),
    devices.DEFAULT_RULES + (Rule(False, "c", 1, 3, "w"),),
    devices.ALLOW_ALL + (Rule(False, "c", 1, None, "w"), Rule(False, "b", None, None, "rwm")),
    (Rule(True), Rule(False, "a", 5, None, "r")),
])
def test_the_program_decides_as_the_policy(rules):
    p = Policy.of(rules)
    code = p.program()
    for kind, major, minor, access in REQUESTS:
        assert run_program(code, kind, major, minor, access) == int(p.allows(kind, major, minor, access)), \
            (kind, major, minor, access)


def test_the_defaults_are_runcs():
    p = DEFAULT_POLICY
    assert not p.default_allow
    for n in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (136, 7), (10, 200)):
        assert p.allows("c", *n, "rw"), n
    assert p.allows("c", 1, 1, "m") and p.allows("b", 8, 0, "m"), "mknod of any node, as runc"
    assert not p.allows("c", 1, 1, "r") and not p.allows("b", 8, 0, "r") and not p.allows("c", 10, 229, "w")
    assert p.v1_lines()[0] == ("devices.deny", "a")
    assert ("devices.allow", "c 136:* rwm") in p.v1_lines() and ("devices.allow", "b *:* m") in p.v1_lines()


def test_the_reduction_is_the_v1_kernels():
    # allowances of the same node merge; a deny of the default's kind takes letters away
    p = Policy.of([Rule(False), Rule(True, "c", 4, 1, "r"), Rule(True, "c", 4, 1, "w"), Rule(False, "c", 4, 1, "w")])
    assert p.exceptions == (("c", 4, 1, "r"),)
    assert Policy.of([Rule(False), Rule(True, "c", 4, 1, "r"), Rule(False, "c", 4, 1, "r")]).exceptions == ()
    # "a" resets; a type-a rule with numbers is one rule per type
    assert Policy.of([Rule(False), Rule(True, "c", 4, 1, "r"), Rule(True)]).allows_all
    assert Policy.of([Rule(False), Rule(True, "a", 4, None, "rw")]).exceptions == (("c", 4, None, "rw"), ("b", 4, None, "rw"))
    # with an allow default, an exception naming any letter asked refuses
    deny_w = Policy.of([Rule(True), Rule(False, "c", 1, 3, "w")])
    assert deny_w.allows("c", 1, 3, "r") and not deny_w.allows("c", 1, 3, "rw")
    assert deny_w.v1_lines() == [("devices.allow", "a"), ("devices.deny", "c 1:3 w")]


def test_rules_parse_and_bad_ones_are_named():
    assert Rule.parse("r", "c 1:3 wr") == Rule(True, "c", 1, 3, "rw")
    assert Rule.parse("r", "b *:* m", allow=False) == Rule(False, "b", None, None, "m")
    assert Rule.parse("r", "a").resets and Rule(True, "c", None, 2, "mwr").line == "c *:2 rwm"
    for bad in ("x 1:3 r", "c 1-3 r", "c 1:3 q", "c 1:3"):
        with pytest.raises(ConfigError) as e:
            Rule.parse("devices[0]", bad)
        assert e.value.field == "devices[0]"
    with pytest.raises(ConfigError, match="combination of r, w and m"):
        Rule(True, "c", 1, 3, "")


def test_device_options_make_the_policy(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    node = tmp_path / "node"
    os.mknod(node, 0o600 | 0o020000, os.makedev(240, 7))
    c = Config("busybox", devices=[f"{node}:/dev/x:rw"])
    p = c.resources.device_policy
    assert p.allows("c", 240, 7, "rw") and not p.allows("c", 240, 7, "rwm") and not p.allows("c", 240, 8, "r")
    assert Config("busybox").resources.device_policy is DEFAULT_POLICY
    assert Config("busybox", privileged=True).resources.device_policy.allows_all
    assert Config("busybox", devices=[f"{node}:r"]).resources != c.resources, "a pool's cgroup must not be reused"


def test_oci_rules_come_before_runcs_defaults():
    from fastcontain import oci

    assert oci.device_policy([]).allows_all, "no rules: every device, as runc"
    p = oci.device_policy([{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 11,
                                                               "access": "w"}])
    assert p.allows("c", 1, 11, "w") and not p.allows("c", 1, 11, "r") and p.allows("c", 1, 3, "rw")
    # a deny-all after the defaults would not take them away: runc appends them last
    assert oci.device_policy([{"allow": False}]).allows("c", 5, 0, "rw")
    # no deny-all first: the default stays allow, and (as in the v1 kernel and runc's emulator) an
    # allowance only takes letters from a denial of the very same numbers: the defaults' mknod here
    p = oci.device_policy([{"allow": False, "type": "c", "major": -1, "minor": -1, "access": "rwm"}])
    assert p.default_allow and p.exceptions == (("c", None, None, "rw"),)
    assert not p.allows("c", 1, 3, "r") and p.allows("c", 1, 3, "m") and p.allows("b", 8, 0, "rw")


def test_privileged_mounts_every_host_node_but_its_own(tmp_path):
    d = tmp_path / "dev"
    (d / "pts").mkdir(parents=True)
    (d / "input").mkdir()
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    for name, dev in (("null", (1, 3)), ("kmsg", (1, 11)), ("input/event0", (13, 64)), ("pts/0", (136, 0))):
        os.mknod(d / name, 0o600 | 0o020000, os.makedev(*dev))
    (d / "file").write_text("")
    os.symlink("null", d / "link")
    nodes = devices.host_devices(str(d))
    assert [n[0] for n in nodes] == [str(d / "input/event0"), str(d / "kmsg")]
    assert nodes[1][2:4] == (1, 11) and stat.S_ISCHR(nodes[1][1])
    assert devices.host_devices(str(d)) == nodes, "the scan reused"
    os.mknod(d / "input" / "event1", 0o600 | 0o020000, os.makedev(13, 65))
    assert len(devices.host_devices(str(d))) == 3, "a new node in a folder: scanned again"


def test_privileged_leaves_a_device_target_to_its_bind():
    from fastcontain import security

    c = Config("busybox", privileged=True, devices=["/dev/kmsg"])
    nodes = [n[0] for n in security.host_device_nodes(c)]
    assert "/dev/kmsg" not in nodes and nodes, "bound by --device, not made first"
    assert security.host_device_nodes(Config("busybox")) == []


def test_device_cgroup_rules_are_checked_and_added():
    p = Config("busybox", device_cgroup_rules=["c 13:* rw", "b 8:0 r"]).resources.device_policy
    assert p.allows("c", 13, 70, "rw") and p.allows("b", 8, 0, "r") and not p.allows("b", 8, 0, "w")
    assert Config("busybox", device_cgroup_rules=["a *:* rwm"]).resources.device_policy.allows_all
    with pytest.raises(ConfigError) as e:
        Config("busybox", device_cgroup_rules=["c 13 rw"])
    assert e.value.field == "device_cgroup_rules[0]"
