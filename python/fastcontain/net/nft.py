"""nftables through libnftables (ctypes), the library the `nft` command is a front of.

Why not a subprocess per change: an `nft` process costs an exec and a parse of
the ruleset each time (several ms); a call into the library costs the parse
only (~0.2 ms for one map element, ~1-2 ms for fastcontain's whole table).
Why not pyroute2's nftables: it speaks raw nf_tables netlink messages, one
expression at a time, without nat, maps or a transaction covering a whole
table, which is what makes a table replacement atomic here.

A context is bound to the network namespace of the thread that created it
(its netlink socket is opened in nft_ctx_new), so `in_netns` creates one in a
thread that joined the container's namespace, runs the commands there, and lets
the thread end in that namespace: nothing has to switch back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from typing import Any

from ..errors import NetworkError

CLONE_NEWNET = 0x40000000
_lib: Any = None
_lib_lock = threading.Lock()


def _load() -> Any:
    global _lib
    with _lib_lock:
        if _lib is None:
            try:
                lib = ctypes.CDLL("libnftables.so.1", use_errno=True)
            except OSError as e:
                raise NetworkError(
                    f"cannot load libnftables.so.1 ({e}): install the nftables package (apt-get install nftables)"
                ) from None
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
            lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
            lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
            _lib = lib
        return _lib


class Context:
    """One libnftables context; `run` executes a command buffer as one transaction."""

    def __init__(self) -> None:
        self._lib = _load()
        ctx = self._lib.nft_ctx_new(0)
        if not ctx:
            raise NetworkError("nft_ctx_new failed: cannot open an nf_tables netlink socket")
        self._ctx: int | None = ctx
        self._lib.nft_ctx_buffer_output(ctx)
        self._lib.nft_ctx_buffer_error(ctx)
        self._lock = threading.Lock()

    def run(self, commands: str, what: str) -> str:
        """Run `commands`; NetworkError naming `what` and nftables' message on failure."""
        with self._lock:
            if self._ctx is None:
                raise NetworkError(f"{what}: the nftables context is closed")
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, commands.encode())
            out = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
            err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode()
        if rc != 0:
            lines = [line for line in err.splitlines() if line.strip()]
            first = lines[0] if lines else "failed"
            where = f" at: {lines[1].strip()}" if len(lines) > 1 else ""
            raise NetworkError(f"{what}: nftables: {first}{where}")
        return out

    def close(self) -> None:
        with self._lock:
            if self._ctx is not None:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None


_host: Context | None = None
_host_lock = threading.Lock()


def host() -> Context:
    """The process's context in the host's (the caller's) network namespace."""
    global _host
    with _host_lock:
        if _host is None:
            _host = Context()
        return _host


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """setns(2) for the calling thread (Python 3.11's os has none)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise NetworkError(f"setns into the container's network namespace failed: {os.strerror(err)}")


def in_netns(netns_fd: int, commands: str, what: str) -> str:
    """Run `commands` in the network namespace `netns_fd` from a thread that joins it
    and ends there (the calling thread never changes namespace)."""
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            setns(netns_fd)
            ctx = Context()
            try:
                result["out"] = ctx.run(commands, what)
            finally:
                ctx.close()
        except BaseException as e:  # handed to the caller's thread
            result["error"] = e

    t = threading.Thread(target=work, name="fastcontain-netns")
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return str(result["out"])
