"""asyncio with real containers: one event loop supervising 500 sleeping containers,
their exits awaited on pidfds at once, with no thread per container."""

from __future__ import annotations

import asyncio
import resource
import signal
import threading

import pytest

import fastcontain

pytestmark = pytest.mark.privileged

MANY = 500


def test_500_sleeping_containers_awaited_at_once():
    # each holds a pidfd and its state dir's lock: two descriptors per container
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 3 * MANY:
        pytest.skip(f"RLIMIT_NOFILE is {soft}: {MANY} containers need about {2 * MANY} descriptors")

    async def main() -> list[int]:
        containers = [fastcontain.AsyncContainer("busybox", ["sleep", "3600"]) for _ in range(MANY)]
        try:
            await asyncio.gather(*(c.start() for c in containers))
            assert all(c.status == "running" for c in containers)
            threads = threading.active_count()
            waits = [asyncio.ensure_future(c.wait()) for c in containers]
            await asyncio.sleep(0.2)
            assert not any(w.done() for w in waits)  # all 500 asleep, all awaited
            assert threading.active_count() == threads  # on the loop: no thread per wait
            for c in containers:
                c.kill(signal.SIGKILL)
            return list(await asyncio.gather(*waits))
        finally:
            await asyncio.gather(*(c.remove(force=True) for c in containers), return_exceptions=True)

    assert asyncio.run(main()) == [-signal.SIGKILL] * MANY


def test_arun_in_real_containers_concurrently():
    async def main() -> list:
        return await asyncio.gather(*(
            fastcontain.arun("busybox", ["sh", "-c", f"echo $$ {i}; exit {i % 3}"], capture_output=True, text=True)
            for i in range(50)
        ))

    results = asyncio.run(main())
    assert [r.returncode for r in results] == [i % 3 for i in range(50)]
    assert [r.stdout for r in results] == [f"1 {i}\n" for i in range(50)]


def test_async_exec_run_output_exit_code_stream_and_timeout():
    from fastcontain.errors import TimeoutExpired

    async def main() -> None:
        async with fastcontain.AsyncContainer("busybox", ["sh", "-c", "exec sleep 1000"], hostname="fc-aexec") as c:
            await c.start()
            assert await c.exec_run(["sh", "-c", "hostname; echo err >&2; exit 3"]) == (3, b"fc-aexec\nerr\n")
            assert await c.exec_run(["sh", "-c", "echo o; echo e >&2"], demux=True) == (0, (b"o\n", b"e\n"))
            assert await c.exec_run(["sh", "-c", "cat; id -u"], stdin=b"in\n", user="nobody") == (0, b"in\n65534\n")
            assert await c.exec_run(["sh", "-c", "[ -t 1 ] && echo tty"], tty=True) == (0, b"tty\r\n")
            s = await c.exec_run(["sh", "-c", "echo a; sleep 0.2; echo b >&2; exit 5"], stream=True, demux=True)
            assert [chunk async for chunk in s] == [("stdout", b"a\n"), ("stderr", b"b\n")] and s.exit_code == 5
            # many at once on the loop: each exit and output awaited there, not by a thread
            results = await asyncio.gather(*(c.exec_run(["sh", "-c", f"sleep 0.2; echo {i}; exit {i}"])
                                             for i in range(10)))
            assert [(r.exit_code, r.output) for r in results] == [(i, f"{i}\n".encode()) for i in range(10)]
            with pytest.raises(TimeoutExpired):
                await c.exec_run(["sh", "-c", "echo partial; exec sleep 100"], timeout=0.3)
            assert c.status == "running" and (await c.exec_run(["true"])).exit_code == 0

    asyncio.run(main())
