"""The `fastcontain` command: docker's conventions over fastcontain.run.

Exit status: the container's own; 128+N when it died of signal N; 125 when
fastcontain itself failed (a bad option, an unknown image, a failed set-up
step); 126 when the command could not be executed; 127 when it was not found.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from types import FrameType
from typing import Any, NoReturn, Sequence

from .errors import FastcontainError, SpawnError

# The API, the image and network verbs and importlib.metadata (for --version) are imported
# where used: `fastcontain exec` (cli_exec.main_argv) needs none of them (~100 ms a call).

EXIT_RUNTIME = 125
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_RUNTIME, f"fastcontain: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .image import commands as _image_commands
    from .net import cli as _netcli

    parser = _Parser(prog="fastcontain", description="Run commands in Linux containers.")
    parser.add_argument("--version", action="version", version=f"fastcontain {__version__}")
    commands = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")
    run_p = commands.add_parser(
        "run",
        help="run a command in a new container",
        description="Run CMD (default: the image's command) in a new container of IMAGE, in the foreground "
        "with the terminal's stdin, stdout and stderr. IMAGE is busybox, host, or a directory "
        "(/path, ./path or dir:/path). Everything after IMAGE is the command. In the foreground "
        "the container is removed when it exits, with or without --rm. With -d it runs detached "
        "under its own supervisor, kept after its exit until `fastcontain rm` (or removed at its "
        "exit with --rm). IMAGE may also be an image in the store (NAME[:TAG] or an id): "
        "see pull, load, import and images.",
        epilog="Exit status: the command's; 128+N if killed by signal N; 125 if fastcontain failed; "
        "126 if the command cannot be executed; 127 if it is not found.",
    )
    add_container_options(run_p)
    run_p.add_argument("-d", "--detach", action="store_true",
                       help="run in the background under a supervisor; print the container's id")
    from . import cli_lifecycle  # the verbs on detached containers: create, start, ps, stop, ...

    cli_lifecycle.add_commands(commands)
    _image_commands.add_parsers(commands)  # pull, load, import, images, rmi, image ...
    _netcli.add_parser(commands)
    return parser


def add_container_options(p: argparse.ArgumentParser) -> None:
    """The options `run` and `create` share, then IMAGE and CMD."""
    p.add_argument("--rm", action="store_true", help="remove the container when it exits (a foreground run always is)")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V",
               help="set an environment variable; a bare K passes the host's value")
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory inside the container")
    p.add_argument("--hostname", metavar="H", help="hostname (default: the container id's first 12 digits)")
    p.add_argument("-u", "--user", metavar="USER", help="UID[:GID] or names from the image's /etc/passwd")
    p.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]",
               help="bind-mount the host path SRC at DST (read-only with :ro)")
    p.add_argument("--name", metavar="N", help="a unique name for the container")
    p.add_argument("--network", default="none", metavar="NETWORK",
                   help="none (the default, unlike docker's bridge): an isolated network with only lo; "
                   "host: the host's network; container:NAME: another container's; or a bridge network's "
                   "name (bridge: the default one, made on first use)")
    p.add_argument("-p", "--publish", action="append", default=[], metavar="[HOSTIP:]HOSTPORT:PORT[/udp]",
                   help="publish a container port on the host (bridge networks)")
    p.add_argument("--ip", metavar="ADDR", help="a static IPv4 address on the bridge network")
    p.add_argument("--dns", action="append", default=[], metavar="ADDR",
                   help="a nameserver for /etc/resolv.conf (default: the host's)")
    add_limit_options(p)
    p.add_argument("--read-only", action="store_true", help="mount the container's root filesystem read-only")
    p.add_argument("--entrypoint", metavar="CMD", help="replace the image's entrypoint (its Cmd is then not used)")
    p.add_argument("--pull", default="never", choices=("never", "missing", "always"),
               help="pull a stored image from its registry: never (default), when missing, or always")
    sec = p.add_argument_group("security (docker's options)")
    sec.add_argument("--cap-add", action="append", default=[], metavar="CAP", help="add a capability (or ALL)")
    sec.add_argument("--cap-drop", action="append", default=[], metavar="CAP", help="drop a capability (or ALL)")
    sec.add_argument("--privileged", action="store_true",
                     help="every capability, no seccomp filter, no masked or read-only /proc paths")
    sec.add_argument("--security-opt", action="append", default=[], metavar="OPT",
                     help="no-new-privileges=false, seccomp=unconfined or seccomp=PROFILE.json")
    sec.add_argument("--tmpfs", action="append", default=[], metavar="PATH[:OPTS]", help="mount a tmpfs at PATH")
    sec.add_argument("--device", action="append", default=[], metavar="HOST[:CONTAINER][:rwm]",
                     help="make a host device node available, allowed with any of r, w, m (default rwm)")
    sec.add_argument("--device-cgroup-rule", action="append", default=[], metavar="'TYPE MAJOR:MINOR PERMS'",
                     help="allow devices by number, e.g. 'c 1:11 r' or 'c 13:* rw' (the node itself is not made)")
    sec.add_argument("--group-add", action="append", default=[], metavar="GROUP",
                     help="a supplementary group (name from the image's /etc/group, or a number)")
    sec.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]", help="e.g. nofile=1024:2048")
    sec.add_argument("--oom-score-adj", type=int, metavar="N", help="-1000..1000")
    sec.add_argument("--userns", metavar="auto|host|[INSIDE:]OUTSIDE:COUNT",
                     help="a user namespace: root inside is an unprivileged uid outside "
                     "(auto: the range of user fastcontain in /etc/subuid and /etc/subgid)")
    p.add_argument("--init", action="store_true",
                   help="run a minimal init as PID 1 that reaps zombies and forwards signals to the command")
    p.add_argument("-i", "--interactive", action="store_true",
                   help="keep stdin open to the command (otherwise it reads /dev/null; with -d it stays open, "
                   "unwritten)")
    p.add_argument("-t", "--tty", action="store_true",
                   help="give the command a terminal (with -i, the user's terminal is put in raw mode and "
                   "relayed; with -d the supervisor holds it and its output goes to the logs)")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD", help="the command and its arguments")


def add_limit_options(p: argparse.ArgumentParser) -> None:
    """docker's resource options; values are checked by Config (fastcontain.cgroups.Resources)."""
    g = p.add_argument_group("resource limits (docker's options)")
    g.add_argument("-m", "--memory", metavar="BYTES", help="memory limit, e.g. 64m or 1g")
    g.add_argument("--memory-swap", metavar="BYTES", help="memory plus swap limit; -1: unlimited swap")
    g.add_argument("--memory-reservation", metavar="BYTES", help="soft memory limit")
    g.add_argument("--cpus", type=float, metavar="N", help="CPU quota in CPUs, e.g. 0.5")
    g.add_argument("-c", "--cpu-shares", type=int, metavar="N", help="relative CPU weight (default 1024)")
    g.add_argument("--cpu-period", type=int, metavar="US", help="CFS period in microseconds")
    g.add_argument("--cpu-quota", type=int, metavar="US", help="CFS quota in microseconds per period")
    g.add_argument("--pids-limit", type=int, metavar="N", help="maximum number of processes; -1: unlimited")
    g.add_argument("--cpuset-cpus", "--cpus-affinity", metavar="LIST",
                   help="CPUs the container may run on, e.g. 0-2,4 (cpuset and affinity)")
    g.add_argument("--cpuset-mems", metavar="LIST", help="memory nodes the container may use, e.g. 0")
    g.add_argument("--blkio-weight", type=int, metavar="N", help="block I/O weight, 10 to 1000")
    g.add_argument("--device-read-bps", action="append", default=[], metavar="DEV:RATE",
                   help="limit reads from a block device, e.g. /dev/vda:1m")
    g.add_argument("--device-write-bps", action="append", default=[], metavar="DEV:RATE",
                   help="limit writes to a block device, e.g. /dev/vda:1m")


LIMITS = ("memory", "memory_swap", "memory_reservation", "cpus", "cpu_shares", "cpu_period", "cpu_quota",
          "pids_limit", "cpuset_cpus", "cpuset_mems", "blkio_weight")


def config_fields(args: argparse.Namespace) -> dict[str, Any]:
    """Config's fields from `fastcontain run` options."""
    env = []
    for item in args.env:
        if "=" in item:
            env.append(item)
        elif item in os.environ:  # docker: -e NAME passes the host's value, if it has one
            env.append(f"{item}={os.environ[item]}")
    fields: dict[str, Any] = {
        "env": env,
        "workdir": args.workdir,
        "hostname": args.hostname,
        "user": args.user,
        "volumes": args.volume,
        "name": args.name,
        "network": args.network,
        "ports": args.publish,
        "ip": args.ip,
        "dns": args.dns,
        "readonly_rootfs": args.read_only,
        "pull": args.pull,
        "cap_add": args.cap_add,
        "cap_drop": args.cap_drop,
        "privileged": args.privileged,
        "security_opt": args.security_opt,
        "tmpfs": args.tmpfs,
        "devices": args.device,
        "device_cgroup_rules": args.device_cgroup_rule,
        "group_add": args.group_add,
        "ulimits": args.ulimit,
        "oom_score_adj": args.oom_score_adj,
        "userns": args.userns,
        "init": args.init,
    }
    fields.update({name: getattr(args, name) for name in LIMITS if getattr(args, name) is not None})
    for name in ("device_read_bps", "device_write_bps"):
        if getattr(args, name):
            fields[name] = tuple(getattr(args, name))
    if args.entrypoint is not None:
        fields["entrypoint"] = [args.entrypoint] if args.entrypoint else []
    return fields


def exit_status(returncode: int) -> int:
    """A shell's exit status for a returncode (-N: killed by signal N)."""
    return 128 - returncode if returncode < 0 else returncode


def error_status(error: BaseException) -> int:
    """The exit status docker gives for a failure to run the container."""
    if isinstance(error, SpawnError) and error.step == "execve":
        return EXIT_NOT_FOUND if error.errno in (errno.ENOENT, errno.ENOTDIR) else EXIT_CANNOT_EXECUTE
    return EXIT_RUNTIME


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the container's teardown


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["exec"]:  # the short way: its own parser, and only what exec imports
        from . import cli_exec

        return cli_exec.main_argv(words[1:])
    from . import teardown
    from .api import DEVNULL, run
    from .net import cli as _netcli
    from .stdio import raw_terminal

    args = build_parser().parse_args(words)
    if getattr(args, "handler", None) is not None:
        return int(args.handler(args))
    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        if args.subcommand == "network":
            return _netcli.main(args)
        if args.subcommand != "run":
            from . import cli_lifecycle

            return cli_lifecycle.dispatch(args)
        if args.detach:
            from . import containers

            # -t: a terminal held by its supervisor, its output in the logs; -i: stdin kept open
            c = containers.run(args.image, args.command or None, autoremove=args.rm, tty=args.tty,
                               stdin_open=args.interactive, **config_fields(args))
            print(c.id)
            return 0
        fields = config_fields(args)
        with raw_terminal(0 if args.tty and args.interactive else None):
            # -i: the user's stdin, given as is (a terminal relays it: fd 0); without -i, /dev/null
            stdin = (0 if args.tty else None) if args.interactive else DEVNULL
            result = run(args.image, args.command or None, stdin=stdin, tty=args.tty, **fields)
        if getattr(result, "oom_killed", False):
            print("fastcontain: the container was killed by the OOM killer (its memory limit)", file=sys.stderr)
        return exit_status(result.returncode)
    except (FastcontainError, OSError) as e:
        print(f"fastcontain: {e}", file=sys.stderr)
        return error_status(e)
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        teardown.flush_reporting()  # the command returns once its container's state is gone


if __name__ == "__main__":
    sys.exit(main())
