"""Cgroup values and host detection: no root, no cgroup touched."""

from __future__ import annotations

import pytest

from fastcontain import devices
from fastcontain.cgroups import Host, Resources, parse_bytes
from fastcontain.config import online_cpus
from fastcontain.errors import ConfigError


@pytest.mark.parametrize(
    "text,expected",
    [("67108864", 64 << 20), ("512k", 512 << 10), ("64m", 64 << 20), ("64MB", 64 << 20), ("1g", 1 << 30), ("-1", -1), (1024, 1024)],
)
def test_sizes_are_read_as_docker_reads_them(text, expected):
    assert parse_bytes("memory", text) == expected


@pytest.mark.parametrize("bad", ["lots", "1q", "-5m", True])
def test_a_bad_size_names_the_field_and_value(bad):
    with pytest.raises(ConfigError) as e:
        parse_bytes("memory", bad)
    assert e.value.field == "memory" and e.value.value == bad


def test_v2_translation_uses_the_unified_names():
    r = Resources(memory="64m", memory_swap="128m", cpus=0.5, pids_limit=50, cpu_shares=1024)
    files = {s.file: s.value for s in r.v2_files()}
    assert files["memory.max"] == str(64 << 20)
    assert files["memory.swap.max"] == str(64 << 20)  # swap alone: total minus memory
    assert files["cpu.max"] == "50000 100000"
    assert files["pids.max"] == "50"
    assert files["cpu.weight"] == str(1 + (1022 * 9999) // 262142)


def test_v1_translation_sets_the_period_before_the_quota():
    r = Resources(memory="64m", cpu_quota=20000, cpu_period=50000, pids_limit=-1)
    files = [(s.controller, s.file, s.value) for s in r.v1_files()]
    names = [n for _c, n, _v in files]
    assert names.index("cpu.cfs_period_us") < names.index("cpu.cfs_quota_us")
    assert ("cpu", "cpu.cfs_quota_us", "20000") in files
    assert ("pids", "pids.max", "max") in files
    assert ("memory", "memory.limit_in_bytes", str(64 << 20)) in files


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"memory": "1m"}, "memory"),
        ({"memory_swap": "1g"}, "memory_swap"),
        ({"memory": "64m", "memory_swap": "32m"}, "memory_swap"),
        ({"cpus": 0}, "cpus"),
        ({"cpus": 10_000}, "cpus"),
        ({"cpus": 1, "cpu_quota": 5000}, "cpus"),
        ({"cpu_shares": 1}, "cpu_shares"),
        ({"pids_limit": 0}, "pids_limit"),
        ({"cpuset_cpus": "0-"}, "cpuset_cpus"),
        ({"cpuset_cpus": "4095"}, "cpuset_cpus"),
        ({"blkio_weight": 5}, "blkio_weight"),
        ({"device_read_bps": (("/no/such/dev", "1m"),)}, "device_read_bps[0]"),
        ({"device_read_bps": (("/dev/null", "1m"),)}, "device_read_bps[0]"),
    ],
)
def test_bad_limits_name_the_field(kwargs, field):
    with pytest.raises(ConfigError) as e:
        Resources(**kwargs)
    assert e.value.field == field


def test_cpuset_is_normalized_and_gives_the_affinity():
    cpu = min(online_cpus())
    r = Resources(cpuset_cpus=f"{cpu},{cpu}")
    assert r.cpuset_cpus == str(cpu)
    assert r.cpu_set == (cpu,)


MOUNTINFO = {
    "v2": "30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
    "hybrid": (
        "30 1 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
        "31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        "32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    ),
    "v1": (
        "32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "34 30 0:30 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
    ),
}


@pytest.mark.parametrize("layout", sorted(MOUNTINFO))
def test_each_layout_is_detected(tmp_path, layout):
    p = tmp_path / "mountinfo"
    p.write_text(MOUNTINFO[layout])
    host = Host.detect(str(p))
    assert host.layout == layout
    if layout == "hybrid":
        assert host.unified == "/sys/fs/cgroup/unified"
        assert host.v1["cpu"] == host.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    if layout == "v1":
        assert host.unified is None and set(host.v1) == {"memory"}


# -- the host's controllers are checked before anything is made (on fake trees: no root) --


def seeded(tmp_path, layout, keys):
    """A Manager whose parent directories are plain folders under tmp_path."""
    from fastcontain.cgroups import Manager

    v1 = {k: str(tmp_path / k) for k in keys if k != "unified"}
    host = Host(layout, str(tmp_path / "unified") if "unified" in keys else None, v1)
    m = Manager("fastcontain", host)
    for k in keys:
        d = tmp_path / k / "fastcontain"
        d.mkdir(parents=True)
        m._ready[k] = str(d)
    return m


def test_a_missing_v2_controller_names_the_controller_and_file(tmp_path):
    from fastcontain.errors import CgroupError

    m = seeded(tmp_path, "v2", ["unified"])
    (tmp_path / "unified" / "cgroup.controllers").write_text("memory pids\n")
    (tmp_path / "unified" / "fastcontain" / "cgroup.subtree_control").write_text("memory pids\n")
    (tmp_path / "unified" / "fastcontain" / "pids.max").write_text("")
    m.check(m.settings(Resources(pids_limit=5)))  # present: fine
    with pytest.raises(CgroupError) as e:
        m.check(m.settings(Resources(cpus=0.5)))
    msg = str(e.value)
    assert "'cpu'" in msg and "cpus" in msg and str(tmp_path / "unified" / "fastcontain" / "cgroup.subtree_control") in msg
    assert "memory pids" in msg  # what the root offers


def test_a_missing_v1_controller_is_named(tmp_path):
    from fastcontain.errors import CgroupError

    m = seeded(tmp_path, "hybrid", ["unified", "memory"])
    with pytest.raises(CgroupError) as e:
        m.check(m.settings(Resources(pids_limit=5)))
    assert "pids_limit needs the cgroup v1 controller 'pids'" in str(e.value)


def test_a_kernel_without_blkio_weights_says_so(tmp_path):
    from fastcontain.errors import CgroupError

    m = seeded(tmp_path, "hybrid", ["unified", "blkio"])
    with pytest.raises(CgroupError) as e:
        m.check(m.settings(Resources(blkio_weight=500)))
    assert "blkio.weight nor blkio.bfq.weight" in str(e.value) and "blkio_weight" in str(e.value)
    (tmp_path / "blkio" / "fastcontain" / "blkio.bfq.weight").write_text("")
    m.check(m.settings(Resources(blkio_weight=500)))  # BFQ's weight will do, as runc falls back


def test_hybrid_joins_only_the_v1_controllers_the_limits_need(tmp_path):
    m = seeded(tmp_path, "hybrid", ["unified", "memory", "pids", "cpu"])
    assert m.keys_for(Resources()) == ["unified"]
    assert m.keys_for(Resources(memory="64m", cpus=1, memory_swap="128m")) == ["unified", "memory", "cpu"]
    v1 = seeded(tmp_path / "v1", "v1", ["memory", "pids", "freezer", "cpuacct", "devices"])
    # v1 has no device programs: every container joins the devices controller for the default rules
    assert v1.keys_for(Resources()) == ["freezer", "cpuacct", "memory", "pids", "devices"]
    assert v1.keys_for(Resources(device_policy=devices.Policy.of(devices.ALLOW_ALL))) == [
        "freezer", "cpuacct", "memory", "pids"]
    assert m.device_backend == "bpf" and v1.device_backend == "v1"
    v2 = seeded(tmp_path / "v2", "v2", ["unified"])
    assert v2.keys_for(Resources(memory="64m")) == ["unified"]


def test_weights_fall_back_to_bfq_with_its_scale():
    (s,) = Resources(blkio_weight=300).v2_files()
    assert (s.file, s.value, s.fallback) == ("io.weight", "default 2930", ("io.bfq.weight", "default 300"))
    (s,) = Resources(blkio_weight=300).v1_files()
    assert (s.file, s.value, s.fallback) == ("blkio.weight", "300", ("blkio.bfq.weight", "300"))


def test_device_rates_take_dockers_path_rate_strings():
    with pytest.raises(ConfigError) as e:
        Resources(device_write_bps=["/dev/null:1m"])  # parsed as PATH:RATE, then stat'ed
    assert e.value.field == "device_write_bps[0]" and "block device" in e.value.reason
    with pytest.raises(ConfigError) as e:
        Resources(device_write_bps=["nocolon"])
    assert e.value.field == "device_write_bps[0]"


def test_a_parent_outside_our_tree_is_refused():
    from fastcontain.cgroups import Manager

    for bad in ("/", "a/../b"):
        with pytest.raises(ConfigError):
            Manager(bad, Host("v2", "/sys/fs/cgroup", {}))
