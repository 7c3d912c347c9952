"""run() and Container over a fake native core: pipes, timeouts, check, signals, and teardown of
everything a container owns on success, failure and KeyboardInterrupt. No root needed."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest

import fake_native
import fastcontain
from fastcontain import api
from fastcontain.errors import (
    CalledProcessError, ConfigError, ContainerError, FastcontainError, SpawnError, TimeoutExpired,
)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A runtime root and an image store of our own (the store needs a static busybox)."""
    from fastcontain.image import store

    try:
        store.find_busybox()
    except fastcontain.ImageError as e:
        pytest.skip(f"no static busybox on this host: {e}")
    monkeypatch.setenv("FASTCONTAIN_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("FASTCONTAIN_STORE", str(tmp_path / "store"))
    return tmp_path / "root"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, root: Path) -> Any:
    return fake_native.install(monkeypatch)


def left_in(root: Path) -> list[str]:
    """What the runtime root holds besides its lock and the (empty) names dir."""
    if not root.exists():
        return []
    names = os.listdir(root / "names") if (root / "names").exists() else []
    return sorted(set(os.listdir(root)) - {"lock", "names"}) + [f"names/{n}" for n in names]


def open_fds() -> set[int]:
    """This process's descriptors (not the one listdir itself used: closed by now)."""
    def is_open(fd: int) -> bool:
        try:
            os.fstat(fd)
        except OSError:
            return False
        return True

    return {fd for fd in map(int, os.listdir("/proc/self/fd")) if is_open(fd)}


@pytest.fixture
def no_leaks(root: Path) -> Iterator[None]:
    before = open_fds()
    yield
    fastcontain.teardown.flush()  # run() leaves removing its state dir to the teardown worker
    assert left_in(root) == []
    # (as root, a Pool's slot has a real network namespace, which the reserve may keep)
    assert open_fds() - before - fastcontain.netns.reserved() == set()
    fastcontain.netns.drain()


def test_run_captures_output_and_status(fake: Any, no_leaks: None) -> None:
    r = fastcontain.run("busybox", ["sh", "-c", "echo out; echo err >&2; exit 3"], capture_output=True)
    assert (r.args, r.returncode, r.stdout, r.stderr) == (["sh", "-c", "echo out; echo err >&2; exit 3"], 3, b"out\n", b"err\n")
    assert isinstance(r, subprocess.CompletedProcess)
    spec = fake.children[0].spec
    assert spec["wait_for_start"] is False and spec["overlay"]["lower"][0].endswith("images/busybox/rootfs")
    assert spec["stdio"][0] == -1 and min(spec["stdio"][1:]) >= 0  # stdin inherited, the others piped
    assert fake.children[0].closed


def test_text_mode_decodes_and_translates_newlines(fake: Any, no_leaks: None) -> None:
    r = fastcontain.run("busybox", ["printf", "a\\r\\nb\\rc"], stdout=api.PIPE, text=True)
    assert r.stdout == "a\nb\nc" and r.stderr is None
    r = fastcontain.run("busybox", ["printf", "\\351"], capture_output=True, encoding="latin-1")
    assert r.stdout == "é"


def test_input_larger_than_a_pipe_is_fed_while_output_is_read(fake: Any, no_leaks: None) -> None:
    data = os.urandom(1 << 20)
    r = fastcontain.run("busybox", ["cat"], input=data, capture_output=True)
    assert r.stdout == data and r.returncode == 0
    assert fastcontain.run("busybox", ["cat"], input="text", capture_output=True, text=True).stdout == "text"
    # stdin=PIPE without input: the command sees end-of-file at once
    assert fastcontain.run("busybox", ["cat"], stdin=api.PIPE, capture_output=True).stdout == b""


def test_stderr_to_stdout_devnull_and_files(fake: Any, no_leaks: None, tmp_path: Path) -> None:
    r = fastcontain.run("busybox", ["sh", "-c", "echo a; echo b >&2; echo c"], stdout=api.PIPE, stderr=api.STDOUT)
    assert r.stdout == b"a\nb\nc\n" and r.stderr is None
    r = fastcontain.run("busybox", ["sh", "-c", "echo a; echo b >&2"], stdout=api.DEVNULL, stderr=api.PIPE)
    assert (r.stdout, r.stderr) == (None, b"b\n")
    with open(tmp_path / "out", "w+b") as f:
        fastcontain.run("busybox", ["echo", "to a file"], stdout=f)
        assert not f.closed  # the caller's file stays the caller's
        f.seek(0)
        assert f.read() == b"to a file\n"


def test_timeout_kills_and_keeps_the_output_so_far(fake: Any, no_leaks: None) -> None:
    start = time.monotonic()
    with pytest.raises(TimeoutExpired) as info:
        fastcontain.run("busybox", ["sh", "-c", "echo before; exec sleep 30"], capture_output=True, timeout=0.5)
    assert time.monotonic() - start < 5
    e = info.value
    assert e.output == b"before\n" and e.stderr == b"" and e.timeout == 0.5 and e.killed
    assert isinstance(e, subprocess.TimeoutExpired) and isinstance(e, FastcontainError)
    assert fake.children[0].returncode == -signal.SIGKILL
    assert "timed out after 0.5 seconds and was killed" in str(e)


def test_timeout_without_pipes(fake: Any, no_leaks: None) -> None:
    with pytest.raises(TimeoutExpired) as info:
        fastcontain.run("busybox", ["sleep", "30"], timeout=0.2, text=True)
    assert info.value.output is None and fake.children[0].returncode == -signal.SIGKILL


def test_check_raises_with_the_output_kept(fake: Any, no_leaks: None) -> None:
    with pytest.raises(CalledProcessError) as info:
        fastcontain.run("busybox", ["sh", "-c", "echo partial; exit 2"], capture_output=True, text=True, check=True)
    e = info.value
    assert (e.returncode, e.output, e.stderr, e.cmd) == (2, "partial\n", "", ["sh", "-c", "echo partial; exit 2"])
    assert isinstance(e, subprocess.CalledProcessError)
    assert fastcontain.run("busybox", ["true"], check=True).returncode == 0


def test_death_by_signal_is_a_negative_returncode(fake: Any, no_leaks: None) -> None:
    r = fastcontain.run("busybox", ["sh", "-c", "kill -TERM $$"], capture_output=True)
    assert r.returncode == -signal.SIGTERM
    with pytest.raises(CalledProcessError, match="died of signal 9"):
        fastcontain.run("busybox", ["sh", "-c", "kill -KILL $$"], check=True)


def test_a_spawn_error_leaves_nothing(fake: Any, no_leaks: None) -> None:
    with pytest.raises(SpawnError) as info:
        fastcontain.run("busybox", ["nosuch-command"], capture_output=True, name="failing")
    assert info.value.step == "execve" and info.value.errno == errno.ENOENT


@pytest.mark.parametrize("where", ["spawn", "communicate"])
def test_keyboard_interrupt_tears_everything_down(
    monkeypatch: pytest.MonkeyPatch, root: Path, no_leaks: None, where: str
) -> None:
    started: list[fake_native.Child] = []

    def spawn(spec: Mapping[str, Any]) -> fake_native.Child:
        if where == "spawn":
            assert left_in(root) != []  # the state dir exists while spawning
            raise KeyboardInterrupt
        started.append(fake_native.Child(spec))
        return started[-1]

    fake_native.install(monkeypatch, spawn)

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "_communicate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fastcontain.run("busybox", ["sleep", "30"], capture_output=True, name="interrupted")
    if where == "communicate":
        assert started[0].closed and started[0].returncode == -signal.SIGKILL


def test_config_errors_come_before_anything_exists(fake: Any, root: Path) -> None:
    with pytest.raises(ConfigError) as info:
        fastcontain.run("busybox", ["true"], user="nosuchuser")
    assert info.value.field == "user" and fake.children == []
    assert left_in(root) == []
    with pytest.raises(ConfigError):
        fastcontain.run("busybox", ["true"], workdir="relative")
    with pytest.raises(fastcontain.ImageError):
        fastcontain.run("/nonexistent-image-dir", ["true"])
    with pytest.raises(TypeError):
        fastcontain.run("busybox", ["true"], no_such_option=1)


def test_subprocess_argument_rules(fake: Any) -> None:
    with pytest.raises(ValueError, match="stdin and input"):
        fastcontain.run("busybox", ["cat"], input=b"x", stdin=api.DEVNULL)
    with pytest.raises(ValueError, match="capture_output"):
        fastcontain.run("busybox", ["cat"], capture_output=True, stdout=api.PIPE)
    with pytest.raises(TypeError, match="text=True"):
        fastcontain.run("busybox", ["cat"], input="str")
    with pytest.raises(TypeError, match="not both"):
        fastcontain.run(fastcontain.Config("busybox"), ["cat"])
    assert fake.children == []


def test_a_config_can_be_run(fake: Any, no_leaks: None) -> None:
    config = fastcontain.Config("busybox", ["echo", "configured"], env={"A": "1"})
    assert fastcontain.run(config, capture_output=True).stdout == b"configured\n"
    assert "A=1" in fake.children[0].spec["env"]


# --- Container -------------------------------------------------------------


def test_container_lifecycle(fake: Any, root: Path, no_leaks: None) -> None:
    c = fastcontain.Container("busybox", ["sh", "-c", "echo hi; echo oops >&2; exit 4"], name="life")
    assert c.status == "new" and c.pid is None and c.returncode is None and len(c.id) == 16
    assert left_in(root) == []  # constructing creates nothing
    assert c.create() is c
    assert c.status == "created" and left_in(root) == [c.id, "names/life"]
    assert fake.children[0].spec["wait_for_start"] is True and c.argv == ["sh", "-c", "echo hi; echo oops >&2; exit 4"]
    # pid: a named container can be joined (network="container:life", fastcontain.net)
    assert sorted(os.listdir(root / c.id)) == ["container.log", "lock", "pid", "rootfs", "upper", "work"]
    assert c.start() is c and c.status in ("running", "exited")
    assert c.wait(10) == 4 and c.status == "exited" and c.returncode == 4
    assert c.logs() == b"hi\noops\n" and c.logs(stderr=False) == b"hi\n" and c.logs(stdout=False) == b"oops\n"
    with pytest.raises(ContainerError):
        c.start()
    c.remove()
    assert c.status == "removed" and c.returncode == 4 and c.wait() == 4
    with pytest.raises(ContainerError):
        c.logs()
    c.remove()  # idempotent


def test_create_is_a_classmethod_and_a_method(fake: Any, no_leaks: None) -> None:
    with fastcontain.Container.create("busybox", ["true"]) as a:
        assert isinstance(a, fastcontain.Container) and a.status == "created"
    with fastcontain.create("busybox", ["true"], name="b") as b:
        assert b.status == "created" and b.name == "b"
    with fastcontain.Container("busybox", ["true"]) as c:
        assert c.create() is c and c.status == "created"
        with pytest.raises(ContainerError, match="created already"):
            c.create()
    assert (a.status, b.status, c.status) == ("removed", "removed", "removed")


def test_start_creates_first_and_wait_times_out(fake: Any, no_leaks: None) -> None:
    c = fastcontain.Container("busybox", ["sleep", "30"]).start()
    try:
        assert c.status == "running" and c.pid == fake.children[0].proc.pid
        with pytest.raises(TimeoutExpired) as info:
            c.wait(timeout=0.2)
        assert not info.value.killed and "was killed" not in str(info.value) and c.status == "running"
        with pytest.raises(ContainerError, match="running"):
            c.remove()
        c.kill(signal.SIGTERM)
        assert c.wait(10) == -signal.SIGTERM and c.status == "exited"
        with pytest.raises(ContainerError, match="nothing to kill"):
            c.kill()
    finally:
        c.remove()


def test_context_exit_kills_and_removes_even_on_error(fake: Any, no_leaks: None) -> None:
    with pytest.raises(RuntimeError):
        with fastcontain.Container("busybox", ["sleep", "30"], name="ctx") as c:
            c.start()
            raise RuntimeError("boom")
    assert c.status == "removed" and c.returncode == -signal.SIGKILL and fake.children[0].closed
    c2 = fastcontain.Container("busybox", ["sleep", "30"]).start()
    c2.remove(force=True)
    assert c2.returncode == -signal.SIGKILL


def test_a_failed_start_leaves_an_exited_container(fake: Any, no_leaks: None) -> None:
    c = fastcontain.create("busybox", ["/nonexistent/cmd"])
    with pytest.raises(SpawnError):
        c.start()
    assert c.status == "exited"
    c.remove()


def test_a_failed_create_leaves_nothing(monkeypatch: pytest.MonkeyPatch, root: Path, no_leaks: None) -> None:
    def spawn(spec: Mapping[str, Any]) -> None:
        raise SpawnError("mounting the container's root filesystem failed", step="mount rootfs", errno=errno.EINVAL)

    fake_native.install(monkeypatch, spawn)
    c = fastcontain.Container("busybox", ["true"], name="broken")
    with pytest.raises(SpawnError, match="EINVAL"):
        c.create()
    assert c.status == "new"


def test_names_are_unique_among_live_containers(fake: Any, no_leaks: None) -> None:
    with fastcontain.create("busybox", ["true"], name="one") as first:
        with pytest.raises(ContainerError, match=f"in use by container {first.id}"):
            fastcontain.create("busybox", ["true"], name="one")
    with fastcontain.create("busybox", ["true"], name="one"):
        pass


def test_operations_on_a_new_container(fake: Any, no_leaks: None) -> None:
    c = fastcontain.Container("busybox")
    for op in (c.logs, c.wait, c.kill):
        with pytest.raises(ContainerError, match="new"):
            op()
    assert repr(c).startswith(f"<Container {c.id} image='busybox' new")
    c.remove()
    assert c.status == "removed" and fake.children == []


def test_an_exited_container_cannot_start_again(fake: Any, no_leaks: None) -> None:
    with fastcontain.Container("busybox", ["sleep", "30"]).start() as c:
        c.kill()
        assert c.wait(10) == -signal.SIGKILL and c.status == "exited"
        with pytest.raises(ContainerError, match="exited: only a created container"):
            c.start()
