"""The json-file log format, tail, follow, terminals and the limits' bookkeeping, without root."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from fastcontain import stdio
from fastcontain.limits import Limits, tree_cpu_seconds


def test_a_chunk_becomes_one_entry_per_line_and_a_partial_one():
    data = stdio.encode_entries("stderr", b"a\nb\npart", 1_700_000_000_123_456_789)
    lines = [json.loads(line) for line in data.splitlines()]
    assert [e["log"] for e in lines] == ["a\n", "b\n", "part"]
    assert {e["stream"] for e in lines} == {"stderr"}
    assert lines[0]["time"] == "2023-11-14T22:13:20.123456789Z"


def test_bytes_round_trip_exactly_even_when_not_utf8():
    raw = b"\xff\xfe caf\xc3\xa9 \x00\n"
    (line,) = stdio.encode_entries("stdout", raw, 0).splitlines()
    assert stdio.decode_entry(line) == ("stdout", "1970-01-01T00:00:00.000000000Z", raw)


def test_tail_counts_lines_not_entries(tmp_path: Path):
    log = tmp_path / "container.log"
    log.write_bytes(b"".join(stdio.encode_entries(s, d, 0) for s, d in
                             [("stdout", b"1\n2\n"), ("stderr", b"e\n"), ("stdout", b"3"), ("stdout", b"!\n")]))
    assert [d for _, _, d in stdio.read_entries(str(log), tail=2)] == [b"e\n", b"3", b"!\n"]
    assert [d for _, _, d in stdio.read_entries(str(log), ("stdout",), tail=1)] == [b"3", b"!\n"]
    assert stdio.read_entries(str(log), tail=0) == []
    assert stdio.read_entries(str(tmp_path / "none")) == []


def test_the_pump_writes_both_streams_and_follow_sees_lines_as_they_land(tmp_path: Path):
    path = str(tmp_path / "container.log")
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pump = stdio.LogPump(path, {"stdout": out_r, "stderr": err_r})
    got: list[tuple[float, bytes]] = []
    t0 = time.monotonic()

    def reader() -> None:
        for _, _, data in stdio.follow(path, stdio.STREAMS, lambda: pump.done, pump.wait_for_data):
            got.append((time.monotonic() - t0, data))

    thread = threading.Thread(target=reader)
    thread.start()
    os.write(out_w, b"one\n")
    time.sleep(0.3)
    os.write(err_w, b"two\n")
    os.close(out_w)
    os.close(err_w)
    assert pump.wait(5)
    thread.join(5)
    pump.close()
    assert [d for _, d in got] == [b"one\n", b"two\n"]
    assert got[0][0] < 0.25 <= got[1][0]


def test_closing_a_pump_whose_writer_never_closes_is_bounded(tmp_path: Path):
    r, w = os.pipe()
    pump = stdio.LogPump(str(tmp_path / "log"), {"stdout": r})
    t0 = time.monotonic()
    pump.close(drain=0.1)
    assert time.monotonic() - t0 < 2 and pump.done
    os.close(w)


def test_a_pty_has_the_size_asked_and_can_be_resized():
    master, slave = stdio.open_pty((30, 100))
    try:
        assert os.isatty(slave) and stdio.get_winsize(slave) == (30, 100)
        stdio.set_winsize(master, 40, 120)
        assert stdio.get_winsize(slave) == (40, 120)
        with pytest.raises(ValueError):
            stdio.set_winsize(master, 0, 10)
        assert stdio.get_winsize(os.open(os.devnull, os.O_RDONLY)) is None
    finally:
        os.close(master)
        os.close(slave)


def test_limits_wall_and_cpu():
    assert not Limits() and Limits().interval() is None and Limits().check() is None
    with pytest.raises(ValueError):
        Limits(timeout=-1)
    with pytest.raises(ValueError):
        Limits(cpu_time="1")  # type: ignore[arg-type]
    wall = Limits(timeout=0.05)
    wall.watch(os.getpid())
    assert wall.check() is None and 0 < (wall.interval() or 0) <= 0.05
    time.sleep(0.06)
    assert wall.check() == "wall"
    cpu = Limits(cpu_time=0.5)
    used = [0.0]
    cpu.watch(0, sampler=lambda: used[0])
    assert cpu.check() is None
    used[0] = 0.6
    time.sleep(0.06)
    assert cpu.check() == "cpu" and cpu.sample() == 0.6


def test_tree_cpu_seconds_sees_this_process():
    t0 = time.process_time()
    while time.process_time() - t0 < 0.05:
        pass
    assert tree_cpu_seconds(os.getpid()) >= 0.04
