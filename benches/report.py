"""The benches' summary: per group, each runner's median as a ratio to the floor's and to
fastcontain's, the per-step breakdown where a runner reports one, and a picture of the
latency distribution per runner (matplotlib, written beside --benchmark-json's file)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest

# group -> runner -> entry (median, rounds, data, extra_info, steps)
results: dict[str, dict[str, dict[str, Any]]] = {}


def record(bench: Any, runner: str, steps: list[dict[str, int]]) -> None:
    entry: dict[str, Any] = dict(bench.extra_info)
    if bench.stats:
        entry["median"] = bench.stats.stats.median
        entry["rounds"] = bench.stats.stats.rounds
        entry["data"] = list(bench.stats.stats.data)
    if steps:
        entry["steps"] = {k: statistics.median(s[k] for s in steps if k in s) for k in steps[0]}
    results.setdefault(bench.group or "", {})[runner] = entry


def _ratio(value: float, base: Any, label: str) -> str:
    return f"{value / base:6.2f}x {label}" if isinstance(base, float) and base > 0 else ""


def summary(tr: pytest.TerminalReporter, config: pytest.Config, order: tuple[str, ...]) -> None:
    if not results:
        return
    for group, entries in results.items():
        tr.section(group or "benches")
        floor = entries.get("floor", {}).get("median")
        ours = entries.get("fastcontain", {}).get("median")
        for name in sorted(entries, key=lambda n: order.index(n) if n in order else len(order)):
            e = entries[name]
            median = e.get("median")
            if median is None and "flatness" not in e:
                tr.write_line(f"{name:18} ran once (benchmarks disabled), correct={e.get('correct')}")
                continue
            flat = e.get("flatness")
            if flat is not None:
                tr.write_line(
                    f"{name:18} {flat['count']} in a row: p50 {flat['p50_ms']:.2f} ms, p99 {flat['p99_ms']:.2f} ms "
                    f"({flat['p99_over_p50']:.1f}x p50), max {flat.get('max_ms', 0):.1f} ms, "
                    f"first {flat['window']} {flat['first_ms']:.2f} ms, "
                    f"last {flat['window']} {flat['last_ms']:.2f} ms"
                )
                continue
            rate = e.get("containers_per_s")
            if rate is not None:
                tr.write_line(f"{name:18} {rate:8.1f} containers/s with {e.get('threads')} threads "
                              f"(median round {median:.3f} s), correct={e.get('correct')}")
                continue
            versus = ""
            if name != "fastcontain" and isinstance(ours, float):
                versus = f"fastcontain is {median / ours:5.2f}x faster"
            tr.write_line(
                f"{name:18} median {median * 1e3:8.3f} ms {_ratio(median, floor, 'floor'):>12}  {versus:28}"
                f" ({e.get('rounds')} rounds, correct={e.get('correct')})"
            )
        for name, e in entries.items():
            if "steps" in e:
                parts = "  ".join(f"{k} {v / 1e3:.0f}" for k, v in e["steps"].items())
                tr.write_line(f"  {name} steps (median µs): {parts}")
        _plot(group, entries, config, tr)


def _plot(group: str, entries: dict[str, dict[str, Any]], config: pytest.Config, tr: pytest.TerminalReporter) -> None:
    json_path = config.getoption("benchmark_json", None)
    data = {n: e["data"] for n, e in entries.items() if len(e.get("data") or ()) > 1}
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
    ax.set_xlabel("ms per round (log scale)")
    ax.set_title(group)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    tr.write_line(f"  latency distribution: {out}")
