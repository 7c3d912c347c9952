"""fastcontain-oci parses the calls engines make without argparse (it costs ~5 ms of
every call): the fast parser gives what argparse gives, and leaves anything else to it."""

from __future__ import annotations

import pytest

from fastcontain import oci_cli

ENGINE_CALLS = [
    # containerd's runc shim
    "--root /run/containerd/runc/default --log /x/log.json --log-format json create --bundle /b --pid-file /b/init.pid c1",
    "--root /r --log /l --log-format json start c1",
    "--root /r --log /l --log-format json state c1",
    "--root /r --log /l --log-format json kill c1 9",
    "--root /r --log /l --log-format json kill --all c1 SIGKILL",
    "--root /r --log /l --log-format json delete --force c1",
    "--root=/r delete c1",
    # conmon (podman), CRI-O
    "--root /run/runc --systemd-cgroup create --bundle /b --pid-file /p --console-socket /s --no-new-keyring c2",
    "--root /r create -b /b --preserve-fds 2 c2",
    "--root /r --debug run -d --bundle=/b c3",
    "--rootless false pause c4",
    "resume c4",
    "kill c5",
    "kill c5 TERM -a",
]

OTHERS = [
    "", "--help", "create --help", "state", "state a b", "--root", "--log-format yaml state c1",
    "create --preserve-fds x c1", "exec c1 ls", "features", "spec", "list", "ps c1", "--version",
    "create --bundle", "delete --forc c1", "kill -9 c1", "--nosuch state c1", "state --root /r c1",
]


@pytest.mark.parametrize("line", ENGINE_CALLS)
def test_engine_calls_parse_as_argparse_parses_them(line: str) -> None:
    argv = line.split()
    fast = oci_cli.fast_parse(argv)
    assert fast is not None
    full = oci_cli.build_parser().parse_args(argv)
    assert vars(fast) == vars(full)


@pytest.mark.parametrize("line", OTHERS)
def test_anything_else_is_left_to_argparse(line: str) -> None:
    assert oci_cli.fast_parse(line.split()) is None
