"""arun and AsyncContainer over the fake native core: output, status, timeouts, cancel,
and exit waited on pidfds through the loop. No root needed."""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Any

import pytest

import fastcontain
from fastcontain.errors import CalledProcessError, TimeoutExpired

from test_api import fake, left_in, no_leaks, open_fds, root  # noqa: F401 (fixtures)


def test_arun_captures_output_and_status(fake: Any, no_leaks: None) -> None:
    r = asyncio.run(fastcontain.arun("busybox", ["sh", "-c", "cat; echo err >&2; exit 3"], input="in\n", text=True,
                                     capture_output=True))
    assert (r.returncode, r.stdout, r.stderr) == (3, "in\n", "err\n")
    assert fake.children[0].closed


def test_arun_check_and_timeout(fake: Any, no_leaks: None) -> None:
    with pytest.raises(CalledProcessError):
        asyncio.run(fastcontain.arun("busybox", ["sh", "-c", "exit 1"], check=True))
    with pytest.raises(TimeoutExpired) as info:
        asyncio.run(fastcontain.arun("busybox", ["sh", "-c", "echo early; exec sleep 30"], capture_output=True,
                                     timeout=0.3))
    assert info.value.output == b"early\n"
    assert fake.children[-1].returncode == -signal.SIGKILL


def test_cancelling_arun_kills_and_tears_down(fake: Any, no_leaks: None) -> None:
    async def main() -> None:
        task = asyncio.ensure_future(fastcontain.arun("busybox", ["sleep", "30"], capture_output=True))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert fake.children[0].closed and fake.children[0].returncode == -signal.SIGKILL


def test_many_waits_share_the_loop_without_threads(fake: Any, no_leaks: None) -> None:
    async def main() -> list[int]:
        before = threading.active_count()
        runs = [fastcontain.arun("busybox", ["sh", "-c", f"sleep 0.2; exit {i % 5}"]) for i in range(40)]
        results = await asyncio.gather(*runs)
        assert threading.active_count() - before <= 40  # executor threads for spawns, none per container
        return [r.returncode for r in results]

    assert asyncio.run(main()) == [i % 5 for i in range(40)]


def test_async_container_streams_logs_and_waits(fake: Any, no_leaks: None) -> None:
    async def main() -> tuple[list[bytes], int]:
        async with fastcontain.AsyncContainer("busybox", ["sh", "-c", "echo one; sleep 0.3; echo two; exit 4"]) as c:
            assert c.status == "created"
            await c.start()
            waiter = asyncio.ensure_future(c.wait())
            chunks = [chunk async for chunk in c.stream_logs()]
            rc = await waiter
            assert await c.wait() == 4
        assert c.status == "removed"
        return chunks, rc

    chunks, rc = asyncio.run(main())
    assert b"".join(chunks) == b"one\ntwo\n" and rc == 4


def test_async_container_wait_timeout_and_kill(fake: Any, no_leaks: None) -> None:
    async def main() -> int:
        async with fastcontain.AsyncContainer("busybox", ["sleep", "30"]) as c:
            await c.start()
            with pytest.raises(TimeoutExpired):
                await c.wait(timeout=0.1)
            c.kill()
            return await c.wait()

    assert asyncio.run(main()) == -signal.SIGKILL


def test_stream_logs_waits_for_the_log_after_the_exit_without_spinning(fake: Any, no_leaks: None) -> None:
    import time

    class SlowPump:
        """The real pump, reporting the output unfinished for 0.3 s after the exit (what a
        process outside the container holding its pipe looks like); counts the looks."""

        def __init__(self, real: Any) -> None:
            self.real, self.until, self.looks = real, time.monotonic() + 0.3, 0

        @property
        def done(self) -> bool:
            self.looks += 1
            return bool(self.real.done) and time.monotonic() >= self.until

        def wait_for_data(self, timeout: float) -> None:
            time.sleep(min(timeout, max(0.0, self.until - time.monotonic())))

    async def main() -> tuple[list[bytes], int]:
        async with fastcontain.AsyncContainer("busybox", ["sh", "-c", "echo one"]) as c:
            await c.start()
            assert await c.wait() == 0
            pump = SlowPump(c.container._pump)
            c.container._pump = pump  # type: ignore[assignment]
            chunks = [chunk async for chunk in c.stream_logs(interval=0.05)]
            c.container._pump = pump.real
        return chunks, pump.looks

    chunks, looks = asyncio.run(main())
    assert chunks == [b"one\n"]
    assert looks < 40, looks  # about two a wait of 0.05 s over 0.3 s; a busy loop makes thousands
