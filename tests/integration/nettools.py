"""Test-made networks and a stand-in "outside host" for the network tests.

Traffic in these tests goes only to containers, to the host's loopback, to the
host's own bridge addresses, or to a network namespace the test makes itself
(the outside host: a veth from the host to it with a test-unique /30). Every
name starts with fc, every subnet is in 10.213.0.0/16 (networks) or
10.214.0.0/16 (outside hosts), checked against the host's routes by
fastcontain.net.create, and all of it is removed after each test.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

_counter = itertools.count(1)
CLONE_NEWNET = 0x40000000


def unique() -> int:
    """A number unique in this session (the pid keeps parallel sessions apart)."""
    return (os.getpid() * 7 + next(_counter)) % 250 + 1


def in_netns(path: str, fn: Callable[[], Any]) -> Any:
    """Run fn in a thread that joined the netns at `path` (sockets it makes stay there)."""
    out: dict[str, Any] = {}

    def work() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            out["value"] = fn()
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=work)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


class Server:
    """A TCP server on a socket made elsewhere: answers `reply` and records who connected."""

    def __init__(self, sock: socket.socket, reply: bytes = b"hello from outside\n") -> None:
        self.sock = sock
        self.reply = reply
        self.peers: list[str] = []
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, addr = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.peers.append(addr[0])
            with conn:
                try:
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def listener(address: str, port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, port))
    s.listen(16)
    return s


def fetch_ready(address: str, port: int, send: bytes = b"", within: float = 10.0) -> bytes:
    """fetch, retrying while the server in a just-started container is not listening yet."""
    deadline = time.monotonic() + within
    while True:
        try:
            return fetch(address, port, timeout=5, send=send)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def fetch(address: str, port: int, timeout: float = 3.0, send: bytes = b"") -> bytes:
    with socket.create_connection((address, port), timeout=timeout) as s:
        if send:
            s.sendall(send)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


@dataclass
class Outside:
    """A namespace standing for a host beyond this machine, reached through the host."""

    name: str  # the named netns, /run/netns/<name>
    host_end: str
    host_ip: str  # the host's side of the /30
    ip: str  # the outside host's address

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def serve(self, port: int = 8000) -> Server:
        return Server(in_netns(self.path, lambda: listener(self.ip, port)))

    def fetch(self, address: str, port: int) -> bytes:
        return bytes(in_netns(self.path, lambda: fetch(address, port)))


def make_outside() -> Outside:
    n = unique()
    name, host_end = f"fcto{os.getpid() % 10000}n{n}", f"fcto{os.getpid() % 10000}h{n}"
    base = f"10.214.{n}"
    o = Outside(name, host_end, f"{base}.1", f"{base}.2")
    ip = ["ip"]
    steps = [
        ip + ["netns", "add", name],
        ip + ["link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", name],
        ip + ["addr", "add", f"{o.host_ip}/30", "dev", host_end],
        ip + ["link", "set", host_end, "up"],
        ip + ["-n", name, "addr", "add", f"{o.ip}/30", "dev", "eth0"],
        ip + ["-n", name, "link", "set", "eth0", "up"],
        ip + ["-n", name, "link", "set", "lo", "up"],
    ]
    try:
        for cmd in steps:
            subprocess.run(cmd, check=True, capture_output=True)
    except BaseException:
        remove_outside(o)
        raise
    return o


def remove_outside(o: Outside) -> None:
    subprocess.run(["ip", "link", "del", o.host_end], capture_output=True)
    subprocess.run(["ip", "netns", "del", o.name], capture_output=True)
