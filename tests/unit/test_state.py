"""The runtime root: per-container state dirs, unique names, locks, and the sweep of crash leftovers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from fastcontain import ConfigError, ContainerError, state


def held(path: str) -> bool:
    return state._held(path)


def test_create_makes_a_locked_dir_with_its_layers(tmp_path: Path) -> None:
    root = str(tmp_path)
    s = state.create(root)
    try:
        assert len(s.id) == 16 and int(s.id, 16) >= 0
        assert sorted(os.listdir(s.paths.dir)) == ["lock", "rootfs", "upper", "work"]
        assert os.stat(s.paths.upper).st_mode & 0o777 == 0o755  # the merged root's mode comes from upper
        assert held(s.paths.dir) and not s.removed
        assert s.paths == state.Paths(root, s.id)
    finally:
        s.remove()
    assert not os.path.exists(s.paths.dir) and s.removed
    s.remove()  # idempotent


def test_ids_are_random_and_well_formed() -> None:
    ids = {state.new_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 16 and set(i) <= set("0123456789abcdef") for i in ids)


def test_a_given_id_must_be_16_hex(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        state.create(str(tmp_path), id="../../etc")
    assert info.value.field == "id"
    s = state.create(str(tmp_path), id="00000000deadbeef")
    with pytest.raises(ContainerError, match="already exists"):
        state.create(str(tmp_path), id="00000000deadbeef")
    s.remove()


@pytest.mark.parametrize("native", [True, False], ids=["native", "os-calls"])
def test_a_state_dir_that_cannot_be_made_whole_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    if not native:  # the os calls used without the native module
        from fastcontain import _native

        monkeypatch.delattr(_native, "make_state_dir")
    root = str(tmp_path)
    state.create(root).remove()  # the root made (and swept) once
    monkeypatch.setattr(state, "_SUBDIRS", (("upper", 0o755), ("no/such/parent", 0o755)))
    with pytest.raises(FileNotFoundError) as info:
        state.create(root, id="00000000feedf00d")
    assert "no/such/parent" in str(info.value)
    assert sorted(os.listdir(root)) == ["lock", "names"]  # (the root's own)
    monkeypatch.undo()
    shutil.rmtree(root)  # the root removed since it was made: made again
    with state.create(root, id="00000000feedf00d") as s:
        assert held(s.paths.dir) and sorted(os.listdir(s.paths.dir)) == ["lock", "rootfs", "upper", "work"]


def test_names_are_unique_and_map_to_ids(tmp_path: Path) -> None:
    root = str(tmp_path)
    with state.create(root, name="web") as s:
        assert s.name == "web" and state.lookup("web", root) == s.id
        with pytest.raises(ContainerError, match=f"'web' is in use by container {s.id}"):
            state.create(root, name="web")
        assert sorted(os.listdir(root)) == sorted(["lock", "names", s.id])  # the failed create left nothing
    assert state.lookup("web", root) is None and os.listdir(os.path.join(root, "names")) == []
    with state.create(root, name="web") as again:
        assert state.lookup("web", root) == again.id


def test_default_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FASTCONTAIN_ROOT", str(tmp_path))
    assert state.default_root() == str(tmp_path)
    with state.create() as s:
        assert s.paths.root == str(tmp_path)
    monkeypatch.delenv("FASTCONTAIN_ROOT")
    assert state.default_root() == "/run/fastcontain"


def crash_after_create(root: str, name: str) -> str:
    """A process that creates a container's state and dies without removing it."""
    code = "import os, sys; from fastcontain import state; print(state.create(sys.argv[1], name=sys.argv[2]).id, flush=True); os._exit(0)"
    return subprocess.run([sys.executable, "-c", code, root, name], capture_output=True, text=True, check=True).stdout.strip()


def test_sweep_removes_what_a_crashed_process_left_and_keeps_live_containers(tmp_path: Path) -> None:
    root = str(tmp_path)
    state.sweep(root)  # this process's first use is over: no sweep on create below
    dead = crash_after_create(root, "dead")
    assert os.path.isdir(os.path.join(root, dead)) and state.lookup("dead", root) == dead
    with state.create(root, name="live") as live:
        # an assembly interrupted before its lock file existed, and a name whose dir is gone
        os.mkdir(os.path.join(root, "0000000000000000"))
        Path(root, "names", "orphan").write_text("1111111111111111")
        assert sorted(state.sweep(root)) == sorted([dead, "0000000000000000"])
        assert sorted(os.listdir(root)) == sorted(["lock", "names", live.id])
        assert sorted(os.listdir(os.path.join(root, "names"))) == ["live"]
        assert held(live.paths.dir)


def test_first_use_in_a_process_sweeps(tmp_path: Path) -> None:
    root = str(tmp_path / "fresh")
    dead = crash_after_create(root, "x")
    with state.create(root) as s:  # this process has not used this root yet
        assert not os.path.exists(os.path.join(root, dead))
        assert os.listdir(os.path.join(root, "names")) == []
        assert s.id != dead


def test_a_stale_name_is_taken_over(tmp_path: Path) -> None:
    root = str(tmp_path)
    state.sweep(root)  # this process's first use is over: no sweep on create below
    dead = crash_after_create(root, "db")
    with state.create(root, name="db") as s:
        assert state.lookup("db", root) == s.id
        assert not os.path.exists(os.path.join(root, dead))


def test_rmtree_removes_an_overlay_workdir() -> None:
    """overlayfs leaves work/work as d---------: root removes it anyway; its owner needs
    a chmod first. As root, the removal runs with the euid of nobody to take that path."""
    top = tempfile.mkdtemp(prefix="fastcontain-rmtree-")
    work = os.path.join(top, "c", "work", "work")
    os.makedirs(os.path.join(work, "inner"))
    Path(work, "inner", "f").write_text("x")
    as_nobody = os.geteuid() == 0
    if as_nobody:
        for d, dirs, files in os.walk(top):
            for p in [d] + [os.path.join(d, n) for n in dirs + files]:
                os.lchown(p, 65534, 65534)
    os.chmod(os.path.join(work, "inner"), 0)
    os.chmod(work, 0)
    try:
        if as_nobody:
            os.seteuid(65534)
        state.rmtree(os.path.join(top, "c"))
    finally:
        if as_nobody:
            os.seteuid(0)
        shutil.rmtree(top, ignore_errors=True)
    assert not os.path.exists(os.path.join(top, "c"))


# -- records: the lifecycle state of detached containers ------------------------------


def test_records_are_replaced_whole_and_kept_by_the_sweep(tmp_path: Path) -> None:
    root = str(tmp_path)
    s = state.create(root, name="kept")
    assert state.read_record(s.paths) is None
    state.write_record(s.paths, {"id": s.id, "status": "created"})
    assert state.update_record(s.paths, status="stopped", exit_code=3) == {"id": s.id, "status": "stopped", "exit_code": 3}
    assert [n for n in os.listdir(s.paths.dir) if n.endswith(".tmp")] == []  # the temp file was renamed
    with pytest.raises(ValueError, match="bad status"):
        state.write_record(s.paths, {"status": "exited"})
    s.release()  # the supervisor exits: the lock is free, the record stays
    assert not held(s.paths.dir) and state.sweep(root) == []
    assert state.recorded(root) == [s.paths] and state.lookup("kept", root) == s.id
    with pytest.raises(ContainerError, match="'kept' is in use"):
        state.create(root, name="kept")
    state.remove_kept(s.paths, "kept")
    assert state.recorded(root) == [] and state.lookup("kept", root) is None


def test_remove_kept_refuses_while_the_owner_holds_it(tmp_path: Path) -> None:
    s = state.create(str(tmp_path))
    state.write_record(s.paths, {"status": "running"})
    with pytest.raises(ContainerError, match="still owned"):
        state.remove_kept(s.paths, None)
    s.remove()


def test_a_corrupt_record_is_named(tmp_path: Path) -> None:
    s = state.create(str(tmp_path))
    with open(s.paths.record, "w") as f:
        f.write("{half")
    with pytest.raises(ContainerError, match="state.json is corrupt"):
        state.read_record(s.paths)
    s.remove()


def test_concurrent_updates_do_not_lose_writes(tmp_path: Path) -> None:
    """Two processes incrementing one counter 200 times each under the record lock."""
    s = state.create(str(tmp_path))
    state.write_record(s.paths, {"status": "running", "n": 0})
    code = (
        "import sys; from fastcontain import state; p = state.Paths(sys.argv[1], sys.argv[2])\n"
        "for _ in range(200):\n"
        "    with state.record_locked(p):\n"
        "        r = state.read_record(p); r['n'] += 1; state.write_record(p, r)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, s.paths.root, s.id]) for _ in range(2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    assert state.read_record(s.paths)["n"] == 400
    s.remove()


def test_oci_ids_are_the_engines(tmp_path: Path) -> None:
    s = state.create(str(tmp_path), id="my-ctr.1", oci=True)
    assert os.listdir(s.paths.dir) == ["lock"]  # an OCI bundle brings its own root: no layers
    s.remove()
    for bad in ("names", "lock", "../x", "-x", "a/b"):
        with pytest.raises(ConfigError):
            state.create(str(tmp_path), id=bad, oci=True)
