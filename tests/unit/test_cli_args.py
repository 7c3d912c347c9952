"""The fastcontain command: argument parsing like docker run, and docker's exit statuses."""

from __future__ import annotations

import errno
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

import fake_native
import fastcontain
from fastcontain import ConfigError, ImageError, SpawnError, cli


def parse(*argv: str) -> Any:
    return cli.build_parser().parse_args(list(argv))


def test_options_then_image_then_command() -> None:
    a = parse("run", "--rm", "-e", "A=1", "--env", "B=2", "-w", "/srv", "--hostname", "h", "-u", "1:2",
              "-v", "/tmp:/t:ro", "--volume", "/var:/v", "--name", "n", "--network", "host",
              "--cpuset-cpus", "0", "--read-only", "busybox", "ls", "-l", "/")
    assert (a.subcommand, a.rm, a.image, a.command) == ("run", True, "busybox", ["ls", "-l", "/"])
    assert (a.env, a.workdir, a.hostname, a.user) == (["A=1", "B=2"], "/srv", "h", "1:2")
    assert (a.volume, a.name, a.network, a.cpuset_cpus, a.read_only) == (["/tmp:/t:ro", "/var:/v"], "n", "host", "0", True)


def test_everything_after_the_image_is_the_command() -> None:
    a = parse("run", "busybox", "--rm", "-e", "X", "--", "-v")
    assert (a.image, a.command, a.rm, a.env) == ("busybox", ["--rm", "-e", "X", "--", "-v"], False, [])
    a = parse("run", "busybox")
    assert (a.image, a.command, a.network) == ("busybox", [], "none")


def test_cpus_affinity_alias() -> None:
    assert parse("run", "--cpus-affinity", "0-1", "busybox").cpuset_cpus == "0-1"


def test_limit_options_have_dockers_names() -> None:
    a = parse("run", "-m", "64m", "--memory-swap", "128m", "--memory-reservation", "32m", "--cpus", "0.5",
              "-c", "512", "--pids-limit", "20", "--cpuset-mems", "0", "--blkio-weight", "300",
              "--device-read-bps", "/dev/null:1m", "busybox")
    f = cli.config_fields(a)
    assert {k: f[k] for k in ("memory", "memory_swap", "memory_reservation", "cpus", "cpu_shares", "pids_limit",
                              "cpuset_mems", "blkio_weight", "device_read_bps")} == {
        "memory": "64m", "memory_swap": "128m", "memory_reservation": "32m", "cpus": 0.5, "cpu_shares": 512,
        "pids_limit": 20, "cpuset_mems": "0", "blkio_weight": 300, "device_read_bps": ("/dev/null:1m",)}
    f = cli.config_fields(parse("run", "--cpu-period", "50000", "--cpu-quota", "25000", "busybox"))
    assert (f["cpu_period"], f["cpu_quota"]) == (50000, 25000) and "cpus" not in f and "memory" not in f
    c = fastcontain.Config("busybox", **f)
    assert c.resources.quota() == (25000, 50000)


def test_config_fields_from_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_HOST", "v")
    monkeypatch.delenv("UNSET_ON_HOST", raising=False)
    f = cli.config_fields(parse("run", "-e", "A=1", "-e", "FROM_HOST", "-e", "UNSET_ON_HOST", "-v", "/tmp:/t",
                                "--cpuset-cpus", "0", "--read-only", "busybox"))
    assert f["env"] == ["A=1", "FROM_HOST=v"]  # docker: a bare name passes the host's value, if any
    assert f["volumes"] == ["/tmp:/t"] and f["cpuset_cpus"] == "0" and f["readonly_rootfs"] is True
    assert f["network"] == "none" and f["workdir"] is None
    fastcontain.Config("busybox", **f)  # every field is one Config knows
    with pytest.raises(ConfigError) as info:
        fastcontain.Config("busybox", **cli.config_fields(parse("run", "--cpuset-cpus", "zero", "busybox")))
    assert (info.value.field, info.value.value) == ("cpuset_cpus", "zero")


@pytest.mark.parametrize(("returncode", "status"), [(0, 0), (3, 3), (255, 255), (-9, 137), (-15, 143), (-2, 130)])
def test_exit_status_like_a_shell(returncode: int, status: int) -> None:
    assert cli.exit_status(returncode) == status


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (SpawnError("execve of nosuch failed", step="execve", errno=errno.ENOENT), 127),
        (SpawnError("execve of /etc failed", step="execve", errno=errno.EACCES), 126),
        (SpawnError("execve of /x failed", step="execve", errno=errno.ENOEXEC), 126),
        (SpawnError("pivot_root failed", step="pivot_root", errno=errno.EINVAL), 125),
        (ConfigError("workdir", "x", "must be absolute"), 125),
        (ImageError("unknown image"), 125),
        (PermissionError(errno.EACCES, "denied"), 125),
    ],
)
def test_error_status_like_docker(error: BaseException, status: int) -> None:
    assert cli.error_status(error) == status


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "-w", "relative", "busybox", "true"], "fastcontain: invalid workdir='relative'"),
        (["run", "--network", "container:", "busybox"], "container:NAME needs the name"),
        (["run", "-p", "80", "--network", "bridge", "busybox"], "fastcontain: invalid ports[0]='80'"),
        (["run", "--hostname", "bad_name", "busybox"], "fastcontain: invalid hostname='bad_name'"),
        (["run", "-v", "data:/data", "busybox"], "'data'"),
        (["run", "--cpuset-cpus", "4096", "busybox"], "fastcontain: invalid cpuset_cpus='4096'"),
        (["run", "--memory", "1m", "busybox"], "fastcontain: invalid memory=1048576: the minimum is"),
        (["run", "--pids-limit", "0", "busybox"], "fastcontain: invalid pids_limit=0"),
        (["run", "--cpus", "64", "busybox"], "fastcontain: invalid cpus=64.0: only"),
        (["run", "--device-write-bps", "/dev/null:1m", "busybox"], "not a block device"),
        (["run", "/nonexistent-fastcontain-dir", "true"], "fastcontain: image '/nonexistent-fastcontain-dir'"),
    ],
)
def test_bad_options_exit_125_with_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 125
    err = capsys.readouterr().err
    assert message in err and err.startswith("fastcontain: ") and err.count("\n") == 1


@pytest.mark.parametrize("argv", [["run"], ["run", "--bogus", "busybox"], ["nosuch"], []])
def test_usage_errors_exit_125(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 125 and "fastcontain: " in capsys.readouterr().err


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"fastcontain {fastcontain.__version__}"
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "none (the default, unlike docker's bridge): an isolated network with only lo" in text
    assert "removed when it exits, with or without --rm" in text
    assert "128+N" in text and "125" in text


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from fastcontain.image import store

    try:
        store.find_busybox()
    except ImageError as e:
        pytest.skip(f"no static busybox on this host: {e}")
    monkeypatch.setenv("FASTCONTAIN_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("FASTCONTAIN_STORE", str(tmp_path / "store"))
    return fake_native.install(monkeypatch)


@pytest.mark.parametrize(
    ("command", "status"),
    [(["true"], 0), (["sh", "-c", "exit 42"], 42), (["sh", "-c", "kill -KILL $$"], 137),
     (["no-such-command"], 127), (["{not_executable}"], 126)],
)
def test_exit_status_of_a_run(fake: Any, command: list[str], status: int, tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a program\n")  # the fake core execs on the host
    command = [a.format(not_executable=tmp_path / "data") for a in command]
    assert cli.main(["run", "--rm", "busybox", *command]) == status
    assert os.listdir(tmp_path / "root" / "names") == [] and sorted(os.listdir(tmp_path / "root")) == ["lock", "names"]


def test_stdio_is_inherited_and_options_reach_the_spec(fake: Any, capfd: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "-i", "-e", "A=1", "-u", "nobody", "-w", "/tmp", "--hostname", "h", "--network", "host",
                     "busybox", "echo", "hello"]) == 0
    assert capfd.readouterr().out == "hello\n"
    spec = fake.children[0].spec
    assert spec["stdio"] == [-1, -1, -1] and spec["argv"] == ["echo", "hello"]  # -i: stdin too
    assert cli.main(["run", "busybox", "true"]) == 0
    assert fake.children[1].spec["stdio"][0] >= 0 and fake.children[1].spec["stdio"][1:] == [-1, -1]  # /dev/null
    assert "A=1" in spec["env"] and (spec["uid"], spec["gid"]) == (65534, 65534)
    assert (spec["cwd"], spec["hostname"]) == ("/tmp", "h") and "net" not in spec["namespaces"]


def test_sigterm_tears_the_container_down(fake: Any, tmp_path: Path) -> None:
    # The handler main() installs turns SIGTERM into an exit that unwinds through the teardown.
    def spawn_then_term(spec: Any) -> fake_native.Child:
        child = fake_native.Child(spec)
        fake.children.append(child)
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()  # while main() waits
        return child

    fake.spawn = spawn_then_term
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "busybox", "sleep", "30"])
    assert info.value.code == 128 + signal.SIGTERM
    assert fake.children[0].closed and fake.children[0].returncode == -signal.SIGKILL
    assert sorted(os.listdir(tmp_path / "root")) == ["lock", "names"]
    assert signal.getsignal(signal.SIGTERM) is not cli._terminate  # restored


def test_security_options_become_config_fields() -> None:
    a = parse("run", "--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "--privileged", "--security-opt",
              "seccomp=unconfined", "--tmpfs", "/run:size=1m", "--device", "/dev/null:/dev/x", "--group-add", "video",
              "--ulimit", "nofile=10:20", "--oom-score-adj", "100", "busybox")
    f = cli.config_fields(a)
    assert (f["cap_add"], f["cap_drop"], f["privileged"], f["security_opt"]) == (
        ["NET_ADMIN"], ["ALL"], True, ["seccomp=unconfined"])
    assert (f["tmpfs"], f["devices"], f["group_add"], f["ulimits"], f["oom_score_adj"]) == (
        ["/run:size=1m"], ["/dev/null:/dev/x"], ["video"], ["nofile=10:20"], 100)


def test_userns_option() -> None:
    assert cli.config_fields(parse("run", "--userns", "auto", "busybox"))["userns"] == "auto"
    assert cli.config_fields(parse("run", "busybox"))["userns"] is None


def test_exec_parses_dockers_options_and_refuses_bad_ones(capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from fastcontain import cli_exec

    seen: list[Any] = []
    monkeypatch.setattr(cli_exec, "main", lambda args: seen.append(args) or 0)
    monkeypatch.setenv("FC_FROM_HOST", "h")
    assert cli.main(["exec", "-it", "-u", "nobody:nogroup", "-e", "A=1", "-e", "FC_FROM_HOST", "-w", "/tmp",
                     "web", "sh", "-c", "echo -e x"]) == 0
    a = seen[0]
    assert (a.interactive, a.tty, a.detach, a.user, a.workdir, a.container) == (True, True, False, "nobody:nogroup",
                                                                                 "/tmp", "web")
    assert a.command == ["sh", "-c", "echo -e x"]  # everything after the container is the command's
    assert cli_exec._env(a.env) == ["A=1", "FC_FROM_HOST=h"]
    monkeypatch.undo()
    assert cli.main(["exec", "web"]) == 125 and "give the command" in capsys.readouterr().err
    assert cli.main(["exec", "-d", "-i", "web", "true"]) == 125 and "-d leaves no terminal" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main(["exec", "--bogus", "web", "true"])
    assert info.value.code == 125
