"""Rootless use without root: the host policies named before anything is made, and the
user's own folders (fastcontain/rootless.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastcontain import ConfigError, rootless


@pytest.mark.parametrize("sysctl, bad", [
    ("user.max_user_namespaces", "0"),
    ("kernel.unprivileged_userns_clone", "0"),
    ("kernel.apparmor_restrict_unprivileged_userns", "1"),
])
def test_a_policy_that_forbids_user_namespaces_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        sysctl: str, bad: str) -> None:
    policies = []
    for path, value, meaning in rootless.POLICIES:
        name = path.removeprefix("/proc/sys/").replace("/", ".")
        f = tmp_path / name
        f.write_text((bad if name == sysctl else ("1" if value == "0" else "0")) + "\n")
        policies.append((str(f), value, meaning))
    # the sysctl's name comes from the path: keep /proc/sys/'s shape under tmp_path
    monkeypatch.setattr(rootless, "POLICIES", tuple((p, v, m) for p, v, m in policies))
    with pytest.raises(ConfigError, match=rf"the sysctl .*{sysctl.split('.')[-1]} is {bad}") as e:
        rootless.check_host()
    assert e.value.field == "userns"


def test_a_host_that_allows_them_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "max_user_namespaces"
    f.write_text("1000\n")
    monkeypatch.setattr(rootless, "POLICIES", ((str(f), "0", "off"), (str(tmp_path / "missing"), "0", "off")))
    rootless.check_host()


def test_the_users_folders_follow_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    assert rootless.data_home() == str(tmp_path / "data" / "fastcontain")
    assert rootless.runtime_root() == str(tmp_path / "run" / "fastcontain")
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert rootless.data_home() == str(tmp_path / ".local" / "share" / "fastcontain")


def test_a_bridge_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="rootless, the network is 'none' or 'host'"):
        rootless.check_network("bridge", "bridge")
    rootless.check_network("host", "host")
    rootless.check_network("none", "none")
