"""The benches' one reporter. Each bench records its result here (`record`), per
pytest-benchmark group; the session ends with one table per group: each entry's median
(and p90/p99 where the entry has its own samples) as a ratio to the group's base entry
(the floor for the spawn runners, a plain run, no user namespace, ...) and, where the
group names one, to a second entry's (fastcontain: 5.00x fastcontain means fastcontain is
five times faster); the per-step
breakdown where a runner reports one; lines a bench adds (the interleaved ratios); and
a picture of the latency distribution per entry (matplotlib, written beside
--benchmark-json's file). A ratio is also put in the entry's extra_info when the base
was recorded first, so the JSON holds it."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Group:
    base: str | None = "floor"  # each median as a ratio to this entry's
    versus: str | None = "fastcontain"  # and as a ratio to this one's
    base_group: str | None = None  # where the base entry is, when not in this group
    order: tuple[str, ...] = ()  # the table's order (others follow, as recorded)
    note: str = ""  # printed under the group's title
    unit: str = "ms per round"  # what one sample of the picture is
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> entry
    lines: list[str] = field(default_factory=list)  # printed after the table


groups: dict[str, Group] = {}


def declare(group: str, *, base: str | None, versus: str | None = None, base_group: str | None = None,
            order: Sequence[str] = (), note: str = "", unit: str = "ms per round") -> Group:
    """How `group`'s table reads (undeclared groups: ratios to the floor and to
    fastcontain, the spawn runners' order). Callable again: the last call wins."""
    g = groups.setdefault(group, Group())
    g.base, g.versus, g.base_group, g.order, g.note, g.unit = base, versus, base_group, tuple(order), note, unit
    return g


def percentiles(data: Sequence[float]) -> dict[str, float]:
    s = sorted(data)
    at = lambda q: s[min(len(s) - 1, int(len(s) * q))]  # noqa: E731
    return {"median": statistics.median(s), "p90": at(0.90), "p99": at(0.99)}


def median(group: str, name: str) -> float | None:
    e = groups.get(group, Group()).entries.get(name)
    return e.get("median") if e else None


def record(bench: Any, name: str, steps: Iterable[dict[str, int]] = (), *, group: str | None = None,
           data: Sequence[float] | None = None, **extra: Any) -> dict[str, Any]:
    """Record `name`'s result in `group` (default: the bench's group): its samples from
    `data` (seconds) or else from pytest-benchmark's stats (none with
    --benchmark-disable), the medians of its per-step nanoseconds, and `extra`."""
    title = group if group is not None else bench.group or ""
    g = groups.setdefault(title, Group())
    own = data is not None  # samples of the bench's own, not its stats: its extra_info is the bench's
    entry: dict[str, Any] = {**({} if own else bench.extra_info), **extra}
    if not own and bench.stats:
        data = list(bench.stats.stats.data)
    if data:
        entry.update(percentiles(data), rounds=len(data), data=list(data))
    steps = list(steps)
    if steps:
        entry["steps"] = {k: statistics.median(s[k] for s in steps if k in s) for k in steps[0]}
    g.entries[name] = entry
    base = median(g.base_group or title, g.base) if g.base else None
    if not own and base and "median" in entry and name != g.base:
        bench.extra_info[f"ratio_to_{g.base}"] = round(entry["median"] / base, 3)
    return entry


SPREAD = 24  # the width of " p90 ... p99 ..."


def _spread(e: dict[str, Any]) -> str:
    return f" p90 {e['p90'] * 1e3:7.3f} p99 {e['p99'] * 1e3:7.3f}" if "p99" in e and e.get("rounds", 0) >= 20 else ""


def _row(name: str, e: dict[str, Any], g: Group, base: float | None, width: int, spread: int) -> str:
    flat = e.get("flatness")
    if flat is not None:
        how = f"from {flat['threads']} threads at {flat['containers_per_s']:.0f}/s" if "threads" in flat else "in a row"
        return (f"{name:{width}} {flat['count']} {how}: p50 {flat['p50_ms']:.2f} ms, p99 {flat['p99_ms']:.2f} ms "
                f"({flat['p99_over_p50']:.1f}x p50), max {flat.get('max_ms', 0):.1f} ms, "
                f"first {flat['window']} {flat['first_ms']:.2f} ms, last {flat['window']} {flat['last_ms']:.2f} ms")
    m = e["median"]
    rate = e.get("containers_per_s")
    if rate is not None:
        return (f"{name:{width}} {rate:8.1f} containers/s with {e.get('threads')} threads "
                f"(median round {m:.3f} s), correct={e.get('correct')}")
    ratio = f"{m / base:6.2f}x {g.base}" if base and name != g.base else ""
    ours = g.entries.get(g.versus or "", {}).get("median")
    versus = f"{m / ours:6.2f}x {g.versus}" if ours and name != g.versus else ""
    return (f"{name:{width}} median {m * 1e3:7.3f}{_spread(e).ljust(spread)} ms {ratio:>{len(g.base or '') + 8}}"
            f" {versus:>{len(g.versus or '') + 8}}  ({e.get('rounds')} rounds, correct={e.get('correct')})")


def summary(tr: pytest.TerminalReporter, config: pytest.Config, order: tuple[str, ...]) -> None:
    for title, g in groups.items():
        if not g.entries:
            continue
        tr.section(title or "benches")
        if g.note:
            tr.write_line(g.note)
        rank = g.order or order
        names = sorted(g.entries, key=lambda n: rank.index(n) if n in rank else len(rank))
        base = median(g.base_group or title, g.base) if g.base else None
        once = [n for n in names if "median" not in g.entries[n] and "flatness" not in g.entries[n]]
        if once:
            wrong = [n for n in once if not g.entries[n].get("correct")]
            tr.write_line(f"ran once each (benchmarks disabled): {', '.join(once)}; "
                          + (f"not marked correct: {', '.join(wrong)}" if wrong else "all correct"))
        width = max(len(n) for n in names)
        spread = SPREAD if any(_spread(e) for e in g.entries.values()) else 0
        for name in names:
            if name not in once:
                tr.write_line(_row(name, g.entries[name], g, base, width, spread))
        for name in names:
            s = g.entries[name].get("steps")
            if s:
                tr.write_line(f"  {name} steps (median µs): " + "  ".join(f"{k} {v / 1e3:.0f}" for k, v in s.items()))
        for line in g.lines:
            tr.write_line(line)
        _plot(title, g, config, tr)


def _plot(group: str, g: Group, config: pytest.Config, tr: pytest.TerminalReporter) -> None:
    json_path = config.getoption("benchmark_json", None)
    data = {n: e["data"] for n, e in g.entries.items() if len(e.get("data") or ()) > 1}
    if json_path is None or not data:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        tr.write_line("  (matplotlib is not installed: no latency picture)")
        return
    slug = "".join(c if c.isalnum() else "-" for c in group).strip("-") or "benches"
    out = Path(json_path).with_name(f"{Path(json_path).stem}-{slug}.png")
    names = list(data)
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(names) + 1.8))
    series = [[x * 1e3 for x in data[n]] for n in names]
    try:
        ax.violinplot(series, orientation="horizontal", showmedians=True)  # matplotlib >= 3.10
    except TypeError:
        ax.violinplot(series, vert=False, showmedians=True)
    ax.set_yticks(range(1, len(names) + 1), names)
    ax.set_xscale("log")
    ax.set_xlabel(f"{g.unit} (log scale)")
    ax.set_title(group)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    tr.write_line(f"  latency distribution: {out}")
