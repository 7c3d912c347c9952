"""A container's I/O: the json-file log (which stream, when), streamed logs with follow and
tail, stdin, and a terminal (tty=True / -t) checked through a real pty on our side."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest

import fastcontain
from fastcontain import stdio

from .util import LIMIT

pytestmark = pytest.mark.privileged


def test_the_log_is_docker_json_file_lines_with_stream_and_time():
    script = "echo out1; sleep 0.05; echo err1 >&2; sleep 0.05; printf partial; sleep 0.05; echo out2"
    with fastcontain.Container.create("busybox", ["sh", "-c", script]) as c:
        before = time.time()
        c.start()
        assert c.wait(timeout=LIMIT) == 0
        with open(stdio.log_path(os.path.join(os.environ["FASTCONTAIN_ROOT"], c.id))) as f:
            lines = [json.loads(line) for line in f]
        assert all(set(e) == {"log", "stream", "time"} for e in lines)
        by_stream = {s: "".join(e["log"] for e in lines if e["stream"] == s) for s in ("stdout", "stderr")}
        assert by_stream == {"stdout": "out1\npartialout2\n", "stderr": "err1\n"}
        assert lines[0] == {"log": "out1\n", "stream": "stdout", "time": lines[0]["time"]}
        stamps = [e["time"] for e in lines]
        assert stamps == sorted(stamps) and stamps[0].endswith("Z") and len(stamps[0]) == 30
        assert time.strftime("%Y-%m-%dT%H:%M", time.gmtime(before)) <= stamps[0]
        assert c.logs() == b"out1\nerr1\npartialout2\n"
        assert c.logs(stdout=False) == b"err1\n" and c.logs(stderr=False) == b"out1\npartialout2\n"


def test_non_utf8_bytes_survive_the_log():
    with fastcontain.Container.create("busybox", ["printf", "\\377\\376ok\\n"]) as c:
        c.start()
        c.wait(timeout=LIMIT)
        assert c.logs() == b"\xff\xfeok\n"


def test_logs_stream_and_follow_yield_output_as_it_arrives():
    script = "for i in 1 2 3; do echo line $i; sleep 0.3; done"
    with fastcontain.Container.create("busybox", ["sh", "-c", script]) as c:
        c.start()
        t0 = time.monotonic()
        seen = [(time.monotonic() - t0, chunk) for chunk in c.logs(stream=True, follow=True)]
        assert [chunk for _, chunk in seen] == [b"line 1\n", b"line 2\n", b"line 3\n"]
        # each arrived while the container still ran, not all at its exit
        assert seen[0][0] < 0.25 and seen[1][0] < 0.55 < seen[2][0]
        assert c.status == "exited" and c.returncode == 0


def test_logs_tail_and_timestamps():
    with fastcontain.Container.create("busybox", ["sh", "-c", "for i in 1 2 3 4 5; do echo $i; done"]) as c:
        c.start()
        c.wait(timeout=LIMIT)
        assert c.logs(tail=2) == b"4\n5\n"
        assert c.logs(tail=0) == b""
        assert list(c.logs(stream=True, tail=1)) == [b"5\n"]
        stamped = c.logs(timestamps=True, tail=1)
        stamp, _, text = stamped.partition(b" ")
        assert text == b"5\n" and stamp.endswith(b"Z")
        assert list(c.logs(stream=True, follow=True, tail=1)) == [b"5\n"]  # exited: follow ends


def test_container_stdin_is_a_pipe_to_write_to():
    with fastcontain.Container.create("busybox", ["sh", "-c", "read a; echo got $a; cat"], stdin=True) as c:
        assert c.stdin is not None
        c.start()
        c.stdin.write(b"first\nrest\n")
        c.stdin.close()
        assert c.wait(timeout=LIMIT) == 0
        assert c.logs() == b"got first\nrest\n"


def test_without_stdin_the_container_reads_dev_null():
    with fastcontain.Container.create("busybox", ["sh", "-c", "cat; echo eof"]) as c:
        assert c.stdin is None
        c.start()
        assert c.wait(timeout=LIMIT) == 0 and c.logs() == b"eof\n"


def test_run_tty_is_a_terminal_of_the_given_size_and_the_controlling_one():
    script = "[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo tty; stty size; echo $$ $(ps -o sid= -p $$ 2>/dev/null); cat /proc/self/stat"
    r = fastcontain.run("busybox", ["sh", "-c", script], tty=True, capture_output=True, timeout=LIMIT)
    lines = r.stdout.decode().split("\r\n")
    assert lines[0] == "tty" and lines[1] == "24 80", r.stdout
    stat = lines[3].rsplit(")", 1)[1].split()
    # the process of `cat` has a controlling terminal (tty_nr != 0) and is in session 1 (sh's, PID 1)
    assert stat[5] != "0" and stat[3] == "1", lines[3]
    assert r.stderr == b""


def test_run_tty_takes_input():
    r = fastcontain.run("busybox", ["sh", "-c", "read x; echo got $x"], tty=True, input=b"abc\n",
                        capture_output=True, timeout=LIMIT)
    assert r.stdout == b"abc\r\ngot abc\r\n"  # the terminal echoes what is typed


def test_container_tty_resize_sends_sigwinch():
    script = "stty size; trap 'stty size; exit 0' WINCH; echo ready; while :; do sleep 0.02; done"
    with fastcontain.Container.create("busybox", ["sh", "-c", script], tty=True, init=True) as c:
        c.start()
        deadline = time.monotonic() + LIMIT
        while b"ready" not in c.logs() and time.monotonic() < deadline:
            time.sleep(0.01)
        c.resize(50, 132)
        assert c.wait(timeout=LIMIT) == 0
        assert c.logs().split(b"\r\n") == [b"24 80", b"ready", b"50 132", b""]
        assert c.logs(stdout=False) == b""  # a terminal has one stream


def _cli_in_pty(args: list[str], rows: int, cols: int, typed: bytes = b"") -> tuple[int, bytes]:
    """Run the CLI with a real terminal as its stdin/stdout/stderr, sized rows x cols."""
    master, slave = pty.openpty()
    stdio.set_winsize(slave, rows, cols)
    proc = subprocess.Popen([sys.executable, "-m", "fastcontain", "run", *args],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    if typed:
        time.sleep(0.5)
        os.write(master, typed)
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.1)
        if r:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=LIMIT), out


def test_cli_t_gives_the_command_a_terminal_of_the_users_size():
    rc, out = _cli_in_pty(["--rm", "-t", "busybox", "sh", "-c", "[ -t 0 ] && echo isatty; stty size"], 33, 101)
    assert rc == 0, out
    # our side of the pty is not in raw mode without -i: it adds its own \r before each \n
    assert b"isatty\r\n33 101\r\n" in out.replace(b"\r\r\n", b"\r\n"), out


def test_cli_it_relays_the_users_keys_in_raw_mode():
    rc, out = _cli_in_pty(["--rm", "-i", "-t", "busybox", "sh", "-c", "read x; echo got:$x; exit 3"], 24, 80,
                          typed=b"hello\r")
    assert rc == 3, out
    assert b"got:hello" in out, out


def test_cli_without_i_reads_dev_null():
    r = subprocess.run([sys.executable, "-m", "fastcontain", "run", "--rm", "busybox", "sh", "-c", "cat; echo end"],
                       input="ignored\n", capture_output=True, text=True, timeout=LIMIT)
    assert (r.returncode, r.stdout) == (0, "end\n")


def test_cli_init_flag():
    r = subprocess.run([sys.executable, "-m", "fastcontain", "run", "--init", "busybox", "sh", "-c", "echo $$; kill -TERM $$"],
                       capture_output=True, text=True, timeout=LIMIT)
    assert (r.returncode, r.stdout) == (143, "2\n")
