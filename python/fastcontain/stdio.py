"""A container's stdio: a terminal, docker's json-file log, and following it.

Output of a `Container` (not of `run`, which captures like subprocess) goes
through a `LogPump`: a thread in the owning process reads the container's
stdout and stderr pipes (or its terminal) and appends one line per chunk to
`container.log` in the state folder, in docker's json-file format:

    {"log": "hi\\n", "stream": "stdout", "time": "2026-12-04T01:02:03.123456789Z"}

so each byte keeps which stream it came from and when. Joining the "log"
fields of a stream gives back its bytes exactly: bytes that are not UTF-8 are
carried as lone surrogates (Python's surrogateescape), which docker would
replace. Readers in the same process are woken as lines land (`follow`);
readers in other processes poll the file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import selectors
import struct
import termios
import threading
import time
import tty
from collections import deque
from typing import Callable, Iterator, Sequence

LOG_NAME = "container.log"
STREAMS = ("stdout", "stderr")
_CHUNK = 65536
# How long teardown waits for the pipes to reach EOF before closing them anyway
# (a process outside the container's pid namespace may hold them).
_DRAIN = 5.0


def log_path(state_dir: str) -> str:
    return os.path.join(state_dir, LOG_NAME)


# ---------------------------------------------------------------- terminals

def get_winsize(fd: int) -> tuple[int, int] | None:
    """(rows, columns) of the terminal on fd, or None if fd is not a terminal."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return rows, cols


def set_winsize(fd: int, rows: int, cols: int) -> None:
    """TIOCSWINSZ: the kernel sends SIGWINCH to the terminal's foreground group."""
    if not (0 < rows < 65536 and 0 < cols < 65536):
        raise ValueError(f"a terminal size is 1..65535 rows and columns, not {rows}x{cols}")
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def open_pty(size: tuple[int, int] | None = None) -> tuple[int, int]:
    """A new pseudo-terminal (master, slave), both close-on-exec, the slave sized
    `size` (rows, columns; default 24x80). The slave becomes the container's stdio."""
    master, slave = os.openpty()
    os.set_inheritable(master, False)
    os.set_inheritable(slave, False)
    try:
        set_winsize(master, *(size or (24, 80)))
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    return master, slave


def read_chunk(fd: int) -> bytes | None:
    """What is there on a non-blocking fd: b"" at EOF (EIO on a terminal master
    whose slave is closed everywhere counts as EOF), None when nothing is ready."""
    try:
        return os.read(fd, _CHUNK)
    except BlockingIOError:
        return None
    except OSError as e:
        if e.errno == errno.EIO:
            return b""
        raise


# ---------------------------------------------------------------- the log

def _timestamp(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def encode_entries(stream: str, data: bytes, ns: int) -> bytes:
    """json-file lines for one chunk: one entry per line, a trailing partial line as its own."""
    stamp = _timestamp(ns)
    out = []
    for piece in data.splitlines(keepends=True):
        text = piece.decode("utf-8", "surrogateescape")
        out.append(json.dumps({"log": text, "stream": stream, "time": stamp}) + "\n")
    return "".join(out).encode("ascii")


def decode_entry(line: bytes) -> tuple[str, str, bytes]:
    """(stream, time, bytes) of one json-file line."""
    entry = json.loads(line)
    return entry["stream"], entry["time"], entry["log"].encode("utf-8", "surrogateescape")


class LogPump:
    """Reads a container's output fds until EOF into a json-file log.

    `fds` maps a stream name ("stdout", "stderr") to our read end; the pump
    owns them and closes them. `close()` waits (boundedly) for EOF, then stops
    the thread and closes everything; it is idempotent."""

    def __init__(self, path: str, fds: dict[str, int]) -> None:
        self.path = path
        self._fds = dict(fds)
        self._log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._cond = threading.Condition()
        self._done = False
        self._closed = False
        self.error: BaseException | None = None
        for fd in self._fds.values():
            os.set_blocking(fd, False)
        self._thread = threading.Thread(target=self._run, name=f"fastcontain-log {path}", daemon=True)
        self._thread.start()

    @property
    def done(self) -> bool:
        """True once every stream reached EOF (or the pump was stopped) and all is written."""
        return self._done

    def _run(self) -> None:
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(self._wake_r, selectors.EVENT_READ, None)
                for name, fd in self._fds.items():
                    sel.register(fd, selectors.EVENT_READ, name)
                live = len(self._fds)
                while live:
                    for key, _ in sel.select():
                        if key.data is None:
                            return
                        data = read_chunk(key.fd)
                        if data is None:
                            continue
                        if not data:
                            sel.unregister(key.fd)
                            live -= 1
                            continue
                        os.write(self._log, encode_entries(key.data, data, time.time_ns()))
                        with self._cond:
                            self._cond.notify_all()
        except BaseException as e:  # a full disk, say: kept for the reader, the pump stops
            self.error = e
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def wait(self, timeout: float | None) -> bool:
        """Wait until the pump is done or `timeout` passes; True when done."""
        with self._cond:
            return self._cond.wait_for(lambda: self._done, timeout)

    def wait_for_data(self, timeout: float) -> None:
        """Sleep until new lines are written, the pump is done, or `timeout` passes."""
        with self._cond:
            if not self._done:
                self._cond.wait(timeout)

    def close(self, drain: float = _DRAIN) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.wait(drain):
            os.write(self._wake_w, b"x")
        self._thread.join()
        for fd in (*self._fds.values(), self._log, self._wake_r, self._wake_w):
            os.close(fd)


def read_entries(path: str, streams: Sequence[str] = STREAMS, tail: int | None = None) -> list[tuple[str, str, bytes]]:
    """The entries of a json-file log of the given streams; the last `tail` lines only if given."""
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    entries = [e for e in map(decode_entry, lines) if e[0] in streams]
    return entries if tail is None else _tail(entries, tail)


def _tail(entries: list[tuple[str, str, bytes]], n: int) -> list[tuple[str, str, bytes]]:
    """The entries holding the last n lines (a partial line counts with the line it ends)."""
    if n <= 0:
        return []
    kept: deque[tuple[str, str, bytes]] = deque()
    lines = 0
    for e in reversed(entries):
        if e[2].endswith(b"\n"):
            lines += 1
            if lines > n:
                break
        kept.appendleft(e)
    return list(kept)


def follow(
    path: str,
    streams: Sequence[str],
    finished: Callable[[], bool],
    wait: Callable[[float], None],
    tail: int | None = None,
) -> Iterator[tuple[str, str, bytes]]:
    """Entries as they are written, until `finished()` is true and all is read.
    `wait(seconds)` sleeps until new data may be there (a LogPump's wait_for_data
    in the owning process, time.sleep elsewhere)."""
    offset = 0
    first = True
    pending = b""
    while True:
        done = finished()  # checked before reading: what was written before it counts
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        offset += len(data)
        pending += data
        *complete, pending = pending.split(b"\n")
        entries = [e for e in map(decode_entry, complete) if e[0] in streams]
        if first and tail is not None:
            entries = _tail(entries, tail)
        first = False
        yield from entries
        if done and not data:
            return
        if not data:
            wait(0.1)


# ---------------------------------------------------------------- a terminal session

EOF_CHAR = b"\x04"  # what a terminal in canonical mode turns into end-of-file


def relay_terminal(
    pidfd: int,
    exited: Callable[[], bool],
    master: int,
    check: Callable[[], str | None],
    interval: Callable[[], float | None],
    *,
    input: bytes | None = None,
    in_fd: int | None = None,
    out_fd: int | None = None,
    capture: list[bytes] | None = None,
    size_from: int | None = None,
) -> str | None:
    """Run a terminal session on `master` until the process on the other side
    exited and the terminal is drained: write `input` (then end-of-file) or
    copy `in_fd` to it, copy what it prints to `out_fd` and/or `capture`, and
    follow the size of the terminal `size_from`. `check()` returning a limit's
    name ends the session early with that name (the caller kills the container);
    `interval()` bounds each sleep so the checks run."""
    os.set_blocking(master, False)
    writer = os.dup(master)
    pending = memoryview((input or b"") + (EOF_CHAR if input is not None else b""))
    size = get_winsize(size_from) if size_from is not None else None
    drain_until: float | None = None
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(master, selectors.EVENT_READ, "out")
            sel.register(pidfd, selectors.EVENT_READ, "exit")
            if pending:
                os.set_blocking(writer, False)
                sel.register(writer, selectors.EVENT_WRITE, "in")
            elif in_fd is not None:
                sel.register(in_fd, selectors.EVENT_READ, "user")
            while True:
                hit = check()
                if hit:
                    return hit
                waits = [w for w in (interval(), 0.2 if size is not None else None) if w is not None]
                if drain_until is not None:
                    waits.append(max(0.0, drain_until - time.monotonic()))
                ready = sel.select(min(waits) if waits else None)
                if size is not None:
                    now = get_winsize(size_from)  # type: ignore[arg-type]
                    if now is not None and now != size:
                        size = now
                        set_winsize(master, *now)
                for key, _ in ready:
                    if key.data == "out":
                        data = read_chunk(master)
                        if data == b"":
                            return None
                        if data:
                            if capture is not None:
                                capture.append(data)
                            if out_fd is not None:
                                _write_all(out_fd, data)
                    elif key.data == "exit":
                        sel.unregister(pidfd)
                        exited()
                        drain_until = time.monotonic() + 2.0
                    elif key.data == "in":
                        try:
                            pending = pending[os.write(writer, pending):]
                        except BlockingIOError:
                            pass
                        if not pending:
                            sel.unregister(writer)
                    else:
                        data = os.read(in_fd, _CHUNK)  # type: ignore[arg-type]
                        _write_all(writer, data or EOF_CHAR)
                        if not data:
                            sel.unregister(in_fd)  # type: ignore[arg-type]
                if drain_until is not None and time.monotonic() >= drain_until:
                    return None  # something outside the pid namespace keeps the terminal open
    finally:
        os.close(writer)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            time.sleep(0.01)


@contextlib.contextmanager
def raw_terminal(fd: int | None) -> Iterator[None]:
    """The terminal on fd in raw mode for the body (keys go to the container's
    terminal as typed, ^C included), restored after; nothing if fd is not a terminal."""
    if fd is None or not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
