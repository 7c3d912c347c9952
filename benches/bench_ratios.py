"""The issue's ratios, measured in one run: every spawn runner of conftest.py at once,
interleaved, so that the host's drift (this VM's speed moves by 30-50% within a minute)
lands on all of them alike instead of on whichever runner pytest-benchmark happened to
time during a slow stretch.

test_spawn_interleaved: round i runs each runner once (/bin/true, as bench_spawn), in an
order shuffled each round (a fixed seed), timing each run alone; between two runs, untimed,
the previous runner's deferred work is waited for (fastcontain's background teardown, a
pool's refill, the floor server's teardown: Runner.settle), so no runner is charged for
another's. The summary gives each runner's median, p90 and p99 over the rounds, its ratio
to the floor and to fastcontain, the per-step medians, and the goals' ratios
(fastcontain.run at most 1.3x the floor, at least 5x faster than `crun run` and 2x faster
than `bwrap --unshare-all`) from the interleaved medians, each with a 95% interval from
resampling the rounds (paired: a round's runs stay together) and the ratio in the first
and in the second half of the rounds (close to each other however the host's speed moved
between the halves: what the interleaving is for).

test_throughput_interleaved: blocks of two threads starting containers back to back, one
block per runner a round (floor, fastcontain, bwrap, crun; shuffled), each block timed
until its runner's deferred work is done (here it is charged: it is part of a rate).

FASTCONTAIN_BENCH_ROUNDS (default 200) and FASTCONTAIN_BENCH_BLOCKS (rounds of blocks,
default 10) with FASTCONTAIN_BENCH_BLOCK (containers per thread a block, default 25) set
the sizes; with --benchmark-disable each runner runs once (a block of one per thread)."""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import report
from conftest import RUNNERS
from harness import threaded

ROUNDS = int(os.environ.get("FASTCONTAIN_BENCH_ROUNDS", "200"))
BLOCKS = int(os.environ.get("FASTCONTAIN_BENCH_BLOCKS", "10"))
BLOCK = int(os.environ.get("FASTCONTAIN_BENCH_BLOCK", "25"))
SEED = int(os.environ.get("FASTCONTAIN_BENCH_SEED", "1"))
THREADS = 2
LATENCY = "interleaved: spawn /bin/true, each runner once a round"
THROUGHPUT = f"interleaved: throughput, {THREADS} threads, one block per runner a round"
THROUGHPUT_RUNNERS = ("floor", "fastcontain", "bwrap", "crun")

# (numerator, denominator, how the goal reads, the goal): a ratio of medians of latencies
LATENCY_GOALS = (
    ("fastcontain", "floor", "<=", 1.3),
    ("crun", "fastcontain", ">=", 5.0),
    ("bwrap", "fastcontain", ">=", 2.0),
)
RATE_GOAL = ("fastcontain", 500.0)  # containers per second with two threads


def rounds(request: pytest.FixtureRequest, n: int) -> int:
    return 1 if request.config.getoption("benchmark_disable") else n


def interval(a: Sequence[float], b: Sequence[float], draws: int = 1000) -> tuple[float, float]:
    """95% interval of median(a) / median(b), resampling the rounds (a[i] and b[i] come
    from the same round, so they are drawn together)."""
    rng = random.Random(SEED)
    n = len(a)
    ratios = []
    for _ in range(draws):
        picks = [rng.randrange(n) for _ in range(n)]
        ratios.append(statistics.median(a[i] for i in picks) / statistics.median(b[i] for i in picks))
    ratios.sort()
    return ratios[int(draws * 0.025)], ratios[int(draws * 0.975) - 1]


def verdict(low: float, high: float, how: str, goal: float) -> str:
    met = (high <= goal) if how == "<=" else (low >= goal)
    missed = (low > goal) if how == "<=" else (high < goal)
    return "met" if met else "missed" if missed else "undecided (the interval holds the goal)"


def goal_ratio(times: dict[str, list[float]], num: str, den: str, how: str, goal: float) -> dict[str, Any] | None:
    a, b = times.get(num), times.get(den)
    if not a or not b:
        return None
    half = len(a) // 2
    out: dict[str, Any] = {"ratio": statistics.median(a) / statistics.median(b), "goal": f"{how} {goal:g}"}
    if len(a) >= 20:
        low, high = interval(a, b)
        out.update(ci95=[low, high], verdict=verdict(low, high, how, goal),
                   halves=[statistics.median(a[:half]) / statistics.median(b[:half]),
                           statistics.median(a[half:]) / statistics.median(b[half:])])
    return out


def goal_line(label: str, r: dict[str, Any]) -> str:
    line = f"  {label:28} {r['ratio']:6.2f}x  (goal {r['goal']})"
    if "ci95" in r:
        line += (f"  95% {r['ci95'][0]:.2f}-{r['ci95'][1]:.2f}: {r['verdict']};"
                 f"  first half {r['halves'][0]:.2f}x, second {r['halves'][1]:.2f}x")
    return line


def shuffled(rng: random.Random, runners: list[Any]) -> list[Any]:
    order = list(runners)
    rng.shuffle(order)
    return order


def checked_all(benchmark: Any, runners: Any) -> dict[str, dict[str, object]]:
    assert runners.ready, f"no runner is installed: {runners.skipped}"
    checks = {}
    for r in runners.ready:
        checks[r.name] = r.check()  # isolated as claimed, once each
        if r.settle is not None:
            r.settle()
    benchmark.extra_info.update(skipped=runners.skipped, seed=SEED)
    return checks


def test_spawn_interleaved(benchmark: Any, runners: Any, request: pytest.FixtureRequest) -> None:
    benchmark.group = LATENCY
    checks = checked_all(benchmark, runners)
    times: dict[str, list[float]] = {r.name: [] for r in runners.ready}
    rng = random.Random(SEED)

    def one_round() -> None:
        for r in shuffled(rng, runners.ready):
            t = time.perf_counter()
            r.run()  # asserts exit status 0
            times[r.name].append(time.perf_counter() - t)
            if r.settle is not None:
                r.settle()

    n = rounds(request, ROUNDS)
    if n > 1:  # a round untimed first: each runner's first run pays for caches
        one_round()
        for r in runners.ready:
            times[r.name].clear()
            r.steps.clear()
    benchmark.pedantic(one_round, rounds=n, iterations=1, warmup_rounds=0)

    summary: dict[str, dict[str, Any]] = {}
    for r in runners.ready:
        e = report.record(benchmark, r.name, r.steps, group=LATENCY, data=times[r.name], correct=True)
        summary[r.name] = {**checks[r.name], **{f"{k}_ms": e[k] * 1e3 for k in ("median", "p90", "p99")},
                           **({"steps_us": {k: v / 1e3 for k, v in e["steps"].items()}} if "steps" in e else {})}
        if "floor" in times:
            summary[r.name]["ratio_to_floor"] = e["median"] / statistics.median(times["floor"])
        if r.pool is not None:  # slots taken ready, and made on the spot
            summary[r.name].update(pool_hits=r.pool.hits, pool_misses=r.pool.misses)  # type: ignore[attr-defined]
    ratios = {f"{num}/{den}": g for num, den, how, goal in LATENCY_GOALS
              if (g := goal_ratio(times, num, den, how, goal)) is not None}
    benchmark.extra_info.update(correct=True, rounds=n, runners=summary, ratios=ratios,
                                order="each runner once a round, shuffled each round (seeded)",
                                settled="each runner's deferred work waited for between runs, untimed")
    lines = [f"{n} rounds, each runner once a round in a shuffled order (seed {SEED}); "
             "its deferred work waited for, untimed, before the next runner"]
    if runners.skipped:
        lines.append("not installed: " + "; ".join(f"{k} ({v})" for k, v in runners.skipped.items()))
    lines.append("the goals, as ratios of the interleaved medians:")
    lines += [goal_line(label, r) for label, r in ratios.items()]
    report.declare(LATENCY, base="floor", versus="fastcontain", order=RUNNERS, unit="ms per run").lines[:] = lines


@pytest.mark.parametrize("runners", [THROUGHPUT_RUNNERS], indirect=True, ids=[",".join(THROUGHPUT_RUNNERS)])
def test_throughput_interleaved(benchmark: Any, runners: Any, request: pytest.FixtureRequest) -> None:
    per_thread = 1 if request.config.getoption("benchmark_disable") else BLOCK
    benchmark.group = THROUGHPUT
    checks = checked_all(benchmark, runners)
    blocks: dict[str, list[float]] = {r.name: [] for r in runners.ready}
    rng = random.Random(SEED)

    def block(run: Callable[[], None], settle: Callable[[], None] | None) -> float:
        t = time.perf_counter()
        threaded(THREADS, per_thread, lambda _: run())
        if settle is not None:  # its deferred work is part of its rate
            settle()
        return time.perf_counter() - t

    def one_round() -> None:
        for r in shuffled(rng, runners.ready):
            blocks[r.name].append(block(r.run, r.settle))

    n = rounds(request, BLOCKS)
    if n > 1:
        one_round()
        for times in blocks.values():
            times.clear()
    benchmark.pedantic(one_round, rounds=n, iterations=1, warmup_rounds=0)

    made = THREADS * per_thread
    rates = {name: made / statistics.median(times) for name, times in blocks.items()}
    summary: dict[str, dict[str, Any]] = {}
    for r in runners.ready:
        r.steps.clear()
        report.record(benchmark, r.name, group=THROUGHPUT, data=blocks[r.name], correct=True,
                      containers_per_s=rates[r.name], threads=THREADS)
        summary[r.name] = {**checks[r.name], "containers_per_s": rates[r.name],
                           "block_rates": [made / t for t in blocks[r.name]]}
    benchmark.extra_info.update(correct=True, rounds=n, threads=THREADS, per_block=made, runners=summary,
                                order="one block per runner a round, shuffled each round (seeded)")
    lines = [f"{n} rounds of one block per runner ({THREADS} threads x {per_thread}), in a shuffled order; "
             "a block ends when its runner's deferred work is done"]
    if runners.skipped:
        lines.append("not installed: " + "; ".join(f"{k} ({v})" for k, v in runners.skipped.items()))
    ours, goal = RATE_GOAL
    if ours in rates:
        benchmark.extra_info["goal"] = {"containers_per_s": f">= {goal:g}", "met": rates[ours] >= goal}
        lines.append(f"  {ours} {rates[ours]:.0f} containers/s (goal >= {goal:g})"
                     + "".join(f", {rates[ours] / rates[o]:.2f}x {o}'s rate" for o in rates if o != ours))
    report.declare(THROUGHPUT, base=None, order=THROUGHPUT_RUNNERS, unit="ms per block").lines[:] = lines
