"""asyncio: `await arun(...)` and `AsyncContainer`, supervised by the event loop.

    r = await fastcontain.arun("busybox", ["sh", "-c", "echo hi"], capture_output=True)

    async with fastcontain.AsyncContainer("busybox", ["sh", "-c", "echo a; sleep 1; echo b"]) as c:
        await c.start()
        async for chunk in c.stream_logs():
            print(chunk)
        print(await c.wait())

A container's exit is awaited on its pidfd through the loop (`loop.add_reader`), and its
pipes the same way: no thread per container, so one loop supervises hundreds. Spawning
runs in the loop's default executor: the native spawn releases the GIL, so several run
at once without blocking the loop; the teardown that follows (which may wait for room on
the bounded teardown queue) runs there too.

`await c.exec_run(cmd, ...)` runs a process in the running container (Container.exec_run's
arguments) and returns ExecResult(exit_code, output) together; with stream=True an
AsyncExecStream: `async for chunk in s` as output arrives, then `s.exit_code` (or `await
s.wait()`). Its output and its exit are awaited on the loop too (pipes and its pidfd).
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Sequence
from contextlib import ExitStack
from typing import IO, TYPE_CHECKING, Any

from . import api as _api
from . import state as _state
from .errors import CalledProcessError, ContainerError, TimeoutExpired

if TYPE_CHECKING:
    from . import _native

PIPE, DEVNULL, STDOUT = _api.PIPE, _api.DEVNULL, _api.STDOUT
_CHUNK = 65536


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, write: bool = False) -> None:
    """Until `fd` is readable (or writable)."""
    fut = loop.create_future()

    def wake() -> None:
        if not fut.done():
            fut.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await fut
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


async def wait_exit(child: _native.Child) -> int:
    """Await the child's exit on its pidfd, then reap it; its returncode."""
    if child.poll() is None:
        await _ready(asyncio.get_running_loop(), child.pidfd)
        child.wait()  # exited: reaps at once
    rc = child.returncode
    assert rc is not None
    return rc


async def _in_executor(fn: Any, *args: Any) -> Any:
    """Run fn in the default executor; if we are cancelled meanwhile, still wait for it
    (it may have made kernel objects the caller's teardown must see), then re-raise."""
    fut = asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        while not fut.done():
            try:
                await asyncio.shield(fut)
            except asyncio.CancelledError:
                continue
            except BaseException:
                break
        raise


async def _pump(
    child: _native.Child, fds: _api._Fds, ours: dict[int, int], input: bytes | None, out: dict[int, list[bytes]]
) -> None:
    """Feed stdin, collect stdout/stderr into `out`, and await the exit, all on the loop."""
    loop = asyncio.get_running_loop()

    async def feed(fd: int) -> None:
        view, offset = memoryview(input or b""), 0
        try:
            while offset < len(view):
                await _ready(loop, fd, write=True)
                try:
                    offset += os.write(fd, view[offset : offset + _CHUNK])
                except BlockingIOError:
                    continue
                except BrokenPipeError:
                    break
        finally:
            fds.close(fd)

    async def drain(i: int, fd: int) -> None:
        while True:
            await _ready(loop, fd)
            if not _api._read_into(out[i], fd):
                fds.close(fd)
                return

    jobs: list[Coroutine[Any, Any, Any]] = []
    for i, fd in ours.items():
        os.set_blocking(fd, False)
        jobs.append(feed(fd) if i == 0 else drain(i, fd))
    jobs.append(wait_exit(child))
    tasks = [asyncio.ensure_future(j) for j in jobs]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()


async def arun(
    image: str | _api.Config,
    command: Sequence[str] | str | None = None,
    *,
    stdin: int | IO[Any] | None = None,
    input: bytes | str | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    capture_output: bool = False,
    text: bool = False,
    encoding: str | None = None,
    errors: str | None = None,
    timeout: float | None = None,
    check: bool = False,
    **config_fields: Any,
) -> _api.CompletedProcess:
    """fastcontain.run for asyncio: the same arguments and results; cancelling the task
    kills the container and tears it down."""
    config = _api._config(image, command, config_fields)
    stdin, input, stdout, stderr, encoding = _api._io_args(stdin, input, stdout, stderr, capture_output, text, encoding, errors)

    stack = ExitStack()
    try:
        fds = _api._Fds()
        stack.callback(fds.close_all)
        theirs, ours = _api._open_stdio(fds, stdin, stdout, stderr)
        _, child, spec, cgroup = await _in_executor(
            functools.partial(_api._launch, wait_for_start=False, defer_teardown=True),
            config, _state.new_id(), stack, lambda _: theirs,
        )
        for fd in theirs:
            if fd not in ours.values():
                fds.close(fd)
        out: dict[int, list[bytes]] = {1: [], 2: []}
        try:
            await asyncio.wait_for(_pump(child, fds, ours, input, out), timeout)
        except asyncio.TimeoutError:
            _api._kill_all(child, cgroup)
            await wait_exit(child)
            for i in (1, 2):
                if i in ours and ours[i] in fds._open:
                    _api._read_into(out[i], ours[i])
            output = {i: (b"".join(out[i]) if i in ours else None) for i in (1, 2)}
            raise TimeoutExpired(
                spec["argv"], timeout or 0,
                output=_api._decode(output[1], encoding, errors), stderr=_api._decode(output[2], encoding, errors),
            ) from None
        returncode = child.returncode
        assert returncode is not None
        oom_killed = bool(cgroup.oom_kills())
        output = {i: (b"".join(out[i]) if i in ours else None) for i in (1, 2)}
        await _in_executor(stack.close)
    finally:
        stack.close()  # after an error or a cancellation: kill, reap, remove (idempotent)
    result = _api.CompletedProcess(
        spec["argv"], returncode, _api._decode(output[1], encoding, errors), _api._decode(output[2], encoding, errors),
        oom_killed=oom_killed,
    )
    if check and returncode:
        error = CalledProcessError(returncode, spec["argv"], result.stdout, result.stderr)
        error.oom_killed = oom_killed
        raise error
    return result


class AsyncExecStream:
    """The streamed form of AsyncContainer.exec_run: `async for chunk in stream` yields
    output chunks as they arrive (("stdout"|"stderr", bytes) pairs with demux), read on
    the loop; once exhausted, `exit_code` is set (`await wait()` returns it too).
    `timeout` kills the process and raises TimeoutExpired from the iteration."""

    def __init__(self, started: Any, demux: bool, timeout: float | None) -> None:
        self._started = started
        self.pid = started.child.pid
        self._demux = demux
        self._deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        self._timeout = timeout
        self.exit_code: int | None = None
        self._gen: AsyncGenerator[Any, None] = self._run()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._gen

    def _left(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - asyncio.get_running_loop().time())

    async def _run(self) -> AsyncGenerator[Any, None]:
        from . import stdio as _stdio

        loop = asyncio.get_running_loop()
        child, ours = self._started.child, self._started.ours
        queue: asyncio.Queue[tuple[str, bytes | None]] = asyncio.Queue()

        def readable(name: str, fd: int) -> None:
            data = _stdio.read_chunk(fd)
            if data is None:
                return
            if not data:
                loop.remove_reader(fd)
            queue.put_nowait((name, data or None))

        try:
            for name, fd in ours.items():
                os.set_blocking(fd, False)
                loop.add_reader(fd, readable, name, fd)
            live = len(ours)
            try:
                while live:
                    name, data = await asyncio.wait_for(queue.get(), self._left())
                    if data is None:
                        live -= 1
                    else:
                        yield (name, data) if self._demux else data
                self.exit_code = await asyncio.wait_for(wait_exit(child), self._left())
            except asyncio.TimeoutError:
                child.send_signal(signal.SIGKILL)
                await wait_exit(child)
                raise TimeoutExpired(self._started.argv, self._timeout or 0) from None
        finally:
            for fd in ours.values():
                loop.remove_reader(fd)
            self._started.stack.close()

    async def wait(self) -> int:
        """Read (and drop) what output is left; the exit code."""
        async for _ in self._gen:
            pass
        if self.exit_code is None:  # the iteration ended early (closed): the exit is still awaited
            self.exit_code = await wait_exit(self._started.child)
        return self.exit_code

    async def aclose(self) -> None:
        """Stop reading; kills the process if it still runs."""
        await self._gen.aclose()
        self._started.stack.close()


class AsyncContainer:
    """Container's lifecycle for asyncio: `await create()`, `start()`, `wait()`,
    `stream_logs()`, `remove()`; `kill()` is immediate. As an async context manager it
    is created on entry (if new) and removed, killed first if running, on exit."""

    def __init__(self, image: str | _api.Config, command: Sequence[str] | str | None = None, **config_fields: Any) -> None:
        self.container = _api.Container(image, command, **config_fields)
        self._exit: asyncio.Future[None] | None = None

    async def _exited(self) -> None:
        """The exit, awaited by any number of waiters through one reader on the pidfd."""
        child = self.container._child
        if child is None or child.poll() is not None:
            return
        if self._exit is None:
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()
            fd = child.pidfd

            def wake() -> None:
                loop.remove_reader(fd)
                if not fut.done():
                    fut.set_result(None)

            loop.add_reader(fd, wake)
            self._exit = fut
        await asyncio.shield(self._exit)
        child.poll()  # reap

    @property
    def id(self) -> str:
        return self.container.id

    @property
    def name(self) -> str | None:
        return self.container.name

    @property
    def pid(self) -> int | None:
        return self.container.pid

    @property
    def status(self) -> str:
        return self.container.status

    @property
    def returncode(self) -> int | None:
        return self.container.returncode

    async def create(self) -> AsyncContainer:
        await _in_executor(self.container.create)
        return self

    async def start(self) -> AsyncContainer:
        if self.container.status == "new":
            await self.create()
        await _in_executor(self.container.start)
        return self

    async def wait(self, timeout: float | None = None) -> int:
        """Await the exit (on the pidfd, through the loop); TimeoutExpired if `timeout` passes."""
        c = self.container
        if c.status == "removed" and c.returncode is not None:
            return c.returncode
        if c.status not in ("running", "exited") or c._child is None:
            raise ContainerError(f"container {c.id} is {c.status}: wait needs a started container")
        try:
            await asyncio.wait_for(self._exited(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutExpired(c.argv, timeout or 0, killed=False) from None
        return c.wait()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.container.kill(sig)

    async def logs(self, stdout: bool = True, stderr: bool = True) -> bytes:
        return self.container.logs(stdout, stderr)

    async def stream_logs(self, stdout: bool = True, stderr: bool = True, interval: float = 0.05) -> AsyncIterator[bytes]:
        """Output as it is written (stdout and stderr chunks in the order read), until the
        container has exited and everything it wrote was yielded."""
        from . import stdio as _stdio

        c = self.container
        if c._state is None or c._pump is None or c.status == "removed":
            raise ContainerError(f"container {c.id} is {c.status}: it has no logs")
        streams = tuple(name for name, wanted in zip(_stdio.STREAMS, (stdout, stderr)) if wanted)
        pump = c._pump
        # the json-file log (stdio.LogPump writes it), read from where the last look ended
        with open(_stdio.log_path(c._state.paths.dir), "rb") as f:
            pending = b""
            while True:
                done = pump.done and c.status in ("exited", "removed")  # before reading: what came before counts
                data = f.read()
                got = False
                if data:
                    *lines, pending = (pending + data).split(b"\n")
                    for line in lines:
                        if line:
                            stream, _, chunk = _stdio.decode_entry(line)
                            if stream in streams:
                                got = True
                                yield chunk
                if done and not data:
                    return
                if not got and pump.done:
                    await self._exited()  # all its output is in the log: only the exit is left
                elif not got:
                    # new lines, the end of the output, or the interval (the pump's thread
                    # notifies; waiting for it takes an executor thread, not the loop)
                    await _in_executor(pump.wait_for_data, interval)

    async def exec_run(
        self, cmd: str | Sequence[str], *, user: str | None = None, env: Any = None, workdir: str | None = None,
        tty: bool = False, stdin: bytes | str | None = None, stream: bool = False, demux: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """Container.exec_run for asyncio: the same arguments; ExecResult(exit_code, output)
        once it exited, or with stream=True an AsyncExecStream. The spawn runs in the
        default executor (it releases the GIL); output and exit are awaited on the loop."""
        from . import exec as _exec

        target = _exec.of_container(self.container)
        started = await _in_executor(functools.partial(
            _exec.start, target, cmd, user=user, env=env, workdir=workdir, tty=tty, stdin=stdin, demux=demux))
        if stream:
            return AsyncExecStream(started, demux, timeout)
        s = AsyncExecStream(started, True, timeout)
        chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        try:
            async for name, data in s:
                chunks[name].append(data)
        except TimeoutExpired as e:
            e.output = b"".join(chunks["stdout"])
            raise
        rc = s.exit_code
        assert rc is not None
        out, err = b"".join(chunks["stdout"]), b"".join(chunks["stderr"])
        return _exec.ExecResult(rc, (out, None if tty else err) if demux else out)

    def _unwatch(self) -> None:
        """Stop watching the pidfd before remove() closes it."""
        if self._exit is not None and not self._exit.done() and self.container._child is not None:
            asyncio.get_running_loop().remove_reader(self.container._child.pidfd)
            self._exit.cancel()

    async def remove(self, force: bool = False) -> None:
        if force or self.container.status != "running":
            self._unwatch()
        await _in_executor(self.container.remove, force)

    async def __aenter__(self) -> AsyncContainer:
        if self.container.status == "new":
            await self.create()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.remove(force=True)

    def __repr__(self) -> str:
        return f"<AsyncContainer {self.container!r}>"
