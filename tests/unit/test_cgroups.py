"""Cgroup values and host detection: no root, no cgroup touched."""

from __future__ import annotations

import pytest

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
    files = {name: value for _c, name, value in r.v2_files()}
    assert files["memory.max"] == str(64 << 20)
    assert files["memory.swap.max"] == str(64 << 20)  # swap alone: total minus memory
    assert files["cpu.max"] == "50000 100000"
    assert files["pids.max"] == "50"
    assert files["cpu.weight"] == str(1 + (1022 * 9999) // 262142)


def test_v1_translation_sets_the_period_before_the_quota():
    r = Resources(memory="64m", cpu_quota=20000, cpu_period=50000, pids_limit=-1)
    files = [(c, name, value) for c, name, value in r.v1_files()]
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
