"""`fastcontain exec [-i] [-t] [-d] [-u USER] [-e K=V] [-w DIR] [--privileged] CONTAINER CMD...`

Runs CMD in a running detached container from this process (fastcontain.exec_detached):
the exec'd process is this command's child, so its exit status is the command's (128+N
when it died of signal N). Without -t its stdout and stderr are ours, unbuffered and in
order; -i gives it our stdin (otherwise it reads /dev/null, as docker's). -t gives it a
new terminal the size of ours, relayed (with -i our terminal is put in raw mode: keys
such as ^C go to it as typed). SIGINT, SIGTERM, SIGHUP and SIGQUIT that reach this
command are passed on to the process. -d starts it and returns at once; it then reads
/dev/null and writes nowhere, and is reaped by whoever adopts it (init, or a subreaper).

Exit status: the process's; 1 when the container is missing, not running or paused;
125 for a bad option; 126/127 when CMD cannot be executed / is not found.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from contextlib import ExitStack
from typing import Any

from .errors import ConfigError, ContainerError, FastcontainError

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def add_parser(commands: Any) -> None:
    _options(commands.add_parser("exec", help="run a command in a running container", **_TEXTS))


def main_argv(argv: list[str]) -> int:
    """`fastcontain exec ARGS`, parsed by its own parser (the same options as `fastcontain
    --help` shows), without building the others'."""
    from .cli import _Parser

    p = _Parser(prog="fastcontain exec", description=_TEXTS["description"], epilog=_TEXTS["epilog"])
    _options(p)
    return main(p.parse_args(argv))


_TEXTS = dict(description="Run CMD in the running container CONTAINER (a name, an id or a unique "
              "prefix of one), in its namespaces, cgroup and root, with its security settings.",
              epilog="Exit status: CMD's; 128+N if killed by signal N; 1 if the container is not "
              "running; 125 for a bad option; 126 if CMD cannot be executed; 127 if it is not found.")


def _options(p: Any) -> None:
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open to the command")
    p.add_argument("-t", "--tty", action="store_true", help="give the command a terminal")
    p.add_argument("-d", "--detach", action="store_true", help="start the command and return at once")
    p.add_argument("-u", "--user", metavar="USER[:GROUP]", help="names from the image's /etc/passwd, or numbers")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V",
                   help="set an environment variable; a bare K passes the host's value")
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory inside the container")
    p.add_argument("--privileged", action="store_true", help="every capability and no seccomp filter")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD")


def _env(items: list[str]) -> list[str]:
    out = []
    for item in items:
        if "=" in item:
            out.append(item)
        elif item in os.environ:  # docker: -e NAME passes the host's value, if it has one
            out.append(f"{item}={os.environ[item]}")
    return out


def main(args: argparse.Namespace) -> int:
    from .cli import EXIT_RUNTIME, error_status, exit_status

    try:
        if not args.command:
            raise ConfigError("command", None, "give the command to run in the container")
        if args.detach and (args.tty or args.interactive):
            raise ConfigError("detach", True, "-d leaves no terminal or stdin to relay: drop -i and -t")
        with ExitStack() as stack:
            return exit_status(_exec(args, stack))
    except ConfigError as e:
        print(f"fastcontain: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    except ContainerError as e:
        print(f"fastcontain: {e}", file=sys.stderr)
        return 1
    except (FastcontainError, OSError) as e:
        print(f"fastcontain: {e}", file=sys.stderr)
        return error_status(e)


def _exec(args: argparse.Namespace, stack: ExitStack) -> int:
    from . import containers
    from . import exec as _exec
    from . import exec_detached
    from . import stdio as _stdio

    c = containers.get(args.container)
    target = exec_detached.target(c.paths, c._record, c.status, stack, privileged=args.privileged)
    argv = _exec.check_command(args.command, args.workdir)
    options = dict(user=args.user, env=_env(args.env), workdir=args.workdir)

    def opened(path: str, flags: int) -> int:
        fd = os.open(path, flags | os.O_CLOEXEC)
        stack.callback(os.close, fd)
        return fd

    if args.detach:
        null_in, null_out = opened(os.devnull, os.O_RDONLY), opened(os.devnull, os.O_WRONLY)
        child = _exec.spawn(target, argv, tty=False, stdio=[null_in, null_out, null_out], **options)
        child.release()  # it goes on; once we exit, init (or our subreaper) adopts and reaps it
        return 0
    if args.tty:
        terminal = next((fd for fd in (1, 0) if os.isatty(fd)), None)
        master, slave = _stdio.open_pty(_stdio.get_winsize(terminal) if terminal is not None else None)
        stack.callback(os.close, master)
        forward = Forward(stack, (signal.SIGTERM, signal.SIGHUP))  # ^C is a key on its terminal
        try:
            child = _exec.spawn(target, argv, tty=True, stdio=[slave, slave, slave], **options)
        finally:
            os.close(slave)
        stack.callback(child.close)
        forward.to(child)
        with _stdio.raw_terminal(0 if args.interactive else None):
            _stdio.relay_terminal(child.pidfd, lambda: child.wait() is not None, master, lambda: None,
                                  lambda: None, in_fd=0 if args.interactive else None, out_fd=1,
                                  size_from=terminal)
    else:
        stdin = 0 if args.interactive else opened(os.devnull, os.O_RDONLY)
        sys.stdout.flush()
        forward = Forward(stack, FORWARDED)
        child = _exec.spawn(target, argv, tty=False, stdio=[stdin, 1, 2], **options)
        stack.callback(child.close)
        forward.to(child)
    rc = child.wait()
    assert rc is not None
    return int(rc)


class Forward:
    """Signals to pass on to the exec'd process: installed before it is spawned (a signal
    that comes in between is kept and sent once it exists), restored with the stack."""

    def __init__(self, stack: ExitStack, signals: tuple[int, ...]) -> None:
        self.child: Any = None
        self.pending: list[int] = []
        for sig in signals:
            stack.callback(signal.signal, sig, signal.signal(sig, self._got))

    def _got(self, signum: int, _frame: Any) -> None:
        if self.child is None:
            self.pending.append(signum)
        else:
            self.child.send_signal(signum)

    def to(self, child: Any) -> None:
        self.child = child
        for sig in self.pending:
            child.send_signal(sig)
        self.pending.clear()
