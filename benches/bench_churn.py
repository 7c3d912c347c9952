"""Throughput: two worker threads (this machine has two cores) each starting containers
back to back, through each runner; reported as containers per second."""

from __future__ import annotations

import os
import threading

THREADS = 2
# containers per thread per round; a round with --benchmark-disable is a quick check
PER_THREAD = int(os.environ.get("FASTCONTAIN_BENCH_CHURN", "100"))


def churn(run, threads: int, per_thread: int) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(per_thread):
                run()
        except BaseException as e:  # reported below, from the main thread
            errors.append(e)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]


def test_churn_two_threads(benchmark, runner):
    benchmark.group = f"throughput: {THREADS} threads x {PER_THREAD} /bin/true"
    benchmark.extra_info.update(runner.check())
    benchmark.extra_info["threads"] = THREADS
    benchmark.pedantic(churn, args=(runner.run, THREADS, PER_THREAD), rounds=3, iterations=1, warmup_rounds=0)
    if benchmark.stats:
        benchmark.extra_info["containers_per_s"] = THREADS * PER_THREAD / benchmark.stats.stats.median
