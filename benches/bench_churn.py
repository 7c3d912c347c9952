"""Throughput: two worker threads (this machine has two cores) each starting containers
back to back, through each runner; reported as containers per second. One runner after
another: bench_ratios.py compares the runners' throughput interleaved."""

from __future__ import annotations

import os

from harness import threaded

THREADS = 2
# containers per thread per round; a round with --benchmark-disable is a quick check
PER_THREAD = int(os.environ.get("FASTCONTAIN_BENCH_CHURN", "100"))


def test_churn_two_threads(benchmark, runner):
    benchmark.group = f"throughput: {THREADS} threads x {PER_THREAD} /bin/true"
    benchmark.extra_info.update(runner.check())
    benchmark.extra_info["threads"] = THREADS
    benchmark.pedantic(threaded, args=(THREADS, PER_THREAD, lambda _: runner.run()), rounds=3, iterations=1,
                       warmup_rounds=0)
    if benchmark.stats:
        benchmark.extra_info["containers_per_s"] = THREADS * PER_THREAD / benchmark.stats.stats.median
