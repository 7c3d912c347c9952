"""The `fastcontain` verbs on detached containers, docker's way: create, start, ps,
inspect, stop, kill, rm, wait, logs, exec (cli_exec). A thin layer over fastcontain.containers.

Exit status: 0, or 1 when a named container could not be acted on (docker's); `wait`
prints each exit status (128+N for signal N); `create` and `start` fail with 125/126/127
as `run` does.
"""

from __future__ import annotations

import json
import signal
import sys
import time

TYPE_CHECKING = False  # fastcontain-oci kill imports parse_signal: no argparse or typing at run time
if TYPE_CHECKING:
    import argparse
    from typing import Any

from .errors import FastcontainError


def add_commands(commands: Any) -> None:
    from .cli import add_container_options

    p = commands.add_parser("create", help="create a detached container (started later by `start`)",
                            description="Create a container of IMAGE under its own supervisor; its process "
                            "waits before exec until `fastcontain start`. Prints its id.")
    add_container_options(p)
    p = commands.add_parser("start", help="start created containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p = commands.add_parser("ps", help="list containers", description="List running containers (-a: all).")
    p.add_argument("-a", "--all", action="store_true", help="also created and stopped containers")
    p.add_argument("-q", "--quiet", action="store_true", help="only the ids")
    p = commands.add_parser("inspect", help="a container's record as JSON")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p = commands.add_parser("stop", help="stop containers: SIGTERM, then SIGKILL after the grace period")
    p.add_argument("-t", "--time", type=float, default=10.0, metavar="SECONDS",
                   help="seconds to wait after SIGTERM before SIGKILL (default 10)")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p = commands.add_parser("kill", help="send a signal to containers (default SIGKILL)")
    p.add_argument("-s", "--signal", default="KILL", metavar="SIGNAL", help="a name (TERM, SIGTERM) or a number")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    for verb in ("pause", "unpause"):
        p = commands.add_parser(verb, help=f"{'freeze' if verb == 'pause' else 'thaw'} every process of containers")
        p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p = commands.add_parser("rm", help="remove stopped containers (-f: running ones too)")
    p.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p = commands.add_parser("wait", help="wait for containers to stop; print their exit statuses")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p = commands.add_parser("stats", help="resource usage of running containers, read from their cgroups",
                            description="CPU time, memory (current and peak), pids and OOM kills of running "
                            "containers (all of them when none is named). Refreshed every second until "
                            "interrupted; --no-stream prints once.")
    p.add_argument("--no-stream", action="store_true", help="print one table and exit")
    p.add_argument("--format", choices=("table", "json"), default="table", help="a table (default) or JSON")
    p.add_argument("containers", nargs="*", metavar="CONTAINER")
    from . import cli_exec

    cli_exec.add_parser(commands)
    p = commands.add_parser("logs", help="a container's output (stdout to stdout, stderr to stderr)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the container stops")
    p.add_argument("--tail", type=int, default=None, metavar="N", help="only the last N lines of each stream")
    p.add_argument("container", metavar="CONTAINER")


def parse_signal(text: str) -> int:
    """TERM, SIGTERM, sigterm or 15."""
    if text.isdigit():
        n = int(text)
        if not 0 < n < signal.NSIG:
            raise ValueError(f"signal number {n} out of range (1..{signal.NSIG - 1})")
        return n
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ValueError(f"unknown signal {text!r}") from None


def _each(names: list[str], act: Any) -> int:
    status = 0
    for name in names:
        try:
            act(name)
        except FastcontainError as e:
            print(f"fastcontain: {e}", file=sys.stderr)
            status = 1
    return status


def _age(t: float | None) -> str:
    if not t:
        return ""
    s = max(0, int(time.time() - t))
    for unit, n in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if s >= n:
            return f"{s // n} {unit} ago"
    return f"{s} seconds ago"


def _status_text(c: Any) -> str:
    st = c.status
    if st == "running":
        return f"Up {_age(c._record.get('started')).removesuffix(' ago')}"
    if st == "stopped":
        code = c.exit_code
        shown = "?" if code is None else (128 - code if code < 0 else code)
        return f"Exited ({shown}) {_age(c._record.get('finished'))}".rstrip()
    return st.capitalize()


def dispatch(args: argparse.Namespace) -> int:
    from . import containers
    from .cli import config_fields, error_status, exit_status

    cmd = args.subcommand
    if cmd == "exec":
        from . import cli_exec

        return cli_exec.main(args)
    if cmd == "create":
        try:
            c = containers.create(args.image, args.command or None, autoremove=args.rm, tty=args.tty,
                                  stdin_open=args.interactive, **config_fields(args))
        except (FastcontainError, OSError) as e:
            print(f"fastcontain: {e}", file=sys.stderr)
            return error_status(e)
        print(c.id)
        return 0
    if cmd == "start":
        def start(n: str) -> None:
            containers.get(n).start()
            print(n)

        failed = 0
        for n in args.containers:
            try:
                start(n)
            except (FastcontainError, OSError) as e:
                print(f"fastcontain: {e}", file=sys.stderr)
                failed = error_status(e) if error_status(e) != 125 else 1
        return failed
    if cmd == "ps":
        rows = containers.list(all=args.all)
        if args.quiet:
            for c in rows:
                print(c.id)
            return 0
        table = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")]
        for c in rows:
            command = " ".join(c._record.get("argv") or [])
            command = command if len(command) <= 22 else command[:19] + "..."
            table.append((c.id[:12], str(c._record.get("image")), f'"{command}"', _age(c._record.get("created")),
                          _status_text(c), c.name or ""))
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        for r in table:
            print("   ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
        return 0
    if cmd == "inspect":
        found = []

        def inspect(n: str) -> None:
            found.append(containers.get(n).inspect())

        status = _each(args.containers, inspect)
        json.dump(found, sys.stdout, indent=4, sort_keys=True)
        print()
        return status
    if cmd == "stop":
        def stop(n: str) -> None:
            containers.get(n).stop(timeout=args.time)
            print(n)

        return _each(args.containers, stop)
    if cmd == "kill":
        try:
            sig = parse_signal(args.signal)
        except ValueError as e:
            print(f"fastcontain: {e}", file=sys.stderr)
            return 125

        def kill(n: str) -> None:
            containers.get(n).kill(sig)
            print(n)

        return _each(args.containers, kill)
    if cmd in ("pause", "unpause"):
        def freeze(n: str) -> None:
            c = containers.get(n)
            c.pause() if cmd == "pause" else c.unpause()
            print(n)

        return _each(args.containers, freeze)
    if cmd == "rm":
        def rm(n: str) -> None:
            containers.get(n).remove(force=args.force)
            print(n)

        return _each(args.containers, rm)
    if cmd == "wait":
        def wait(n: str) -> None:
            code = containers.get(n).wait()
            if code is None:
                raise FastcontainError(f"container {n} was removed at its exit: its status is gone")
            print(exit_status(code), flush=True)

        return _each(args.containers, wait)
    if cmd == "stats":
        return _stats(args)
    if cmd == "logs":
        try:
            c = containers.get(args.container)
            out = {1: sys.stdout.buffer, 2: sys.stderr.buffer}
            for stream, data in c.stream_logs(tail=args.tail, follow=args.follow):
                out[stream].write(data)
                out[stream].flush()
        except FastcontainError as e:
            print(f"fastcontain: {e}", file=sys.stderr)
            return 1
        return 0
    raise AssertionError(cmd)


def _size(n: int | None) -> str:
    if n is None:
        return "--"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _stats(args: argparse.Namespace) -> int:
    """docker stats: one row per running container, from its cgroup (no sampling delay)."""
    from . import containers

    while True:
        status = 0
        if args.containers:
            found = []
            for n in args.containers:
                try:
                    found.append(containers.get(n))
                except (FastcontainError, OSError) as e:
                    print(f"fastcontain: {e}", file=sys.stderr)
                    status = 1
        else:
            found = [c for c in containers.list() if c.status in ("running", "paused")]
        rows: list[dict[str, Any]] = []
        for c in found:
            try:
                rows.append({"id": c.id, "name": c.name, **c.stats()})
            except (FastcontainError, OSError) as e:
                print(f"fastcontain: {e}", file=sys.stderr)
                status = 1
        if args.format == "json":
            print(json.dumps(rows, sort_keys=True), flush=True)
        else:
            table = [("CONTAINER ID", "NAME", "CPU TIME", "MEM USAGE", "MEM PEAK", "PIDS", "OOM KILLS")]
            for r in rows:
                cpu = "--" if r["cpu_usage_us"] is None else f"{r['cpu_usage_us'] / 1e6:.2f}s"
                table.append((r["id"][:12], r["name"] or "", cpu, _size(r["memory_current"]),
                              _size(r["memory_peak"]), "--" if r["pids_current"] is None else str(r["pids_current"]),
                              "--" if r["oom_kills"] is None else str(r["oom_kills"])))
            widths = [max(len(t[i]) for t in table) for i in range(len(table[0]))]
            if not args.no_stream:
                print("\x1b[H\x1b[J", end="")  # redraw in place, as docker stats does
            for t in table:
                print("   ".join(v.ljust(w) for v, w in zip(t, widths)).rstrip(), flush=True)
        if args.no_stream:
            return status
        try:
            time.sleep(1.0)
        except KeyboardInterrupt:
            return status
