"""`fastcontain-oci`: runc's command line on OCI bundles, for podman (conmon), containerd
(its runc shim, `ctr run --runc-binary`) and CRI-O.

    fastcontain-oci [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND ...

Every call is a fresh interpreter: imports are lazy (only what the command needs) and
the work is what runc does. Errors go to stderr and, with --log, to the log file in the
format asked (json: one {"level", "msg", "time"} object a line, what containerd and
podman read back); the exit status is then 1.
"""

from __future__ import annotations

import os
import sys

# typing (~4 ms) is not imported at run time: this module starts every call
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any, NoReturn, Sequence

PROG = "fastcontain-oci"
VERSION_SPEC = "1.1.0"


def build_parser() -> argparse.ArgumentParser:
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            self.print_usage(sys.stderr)
            self.exit(1, f"{PROG}: {message}\n")

    p = _Parser(prog=PROG, description="An OCI runtime (runc's command line) backed by fastcontain.")
    p.add_argument("--root", default=None, help="the runtime's state folder (default /run/fastcontain-oci)")
    p.add_argument("--log", default=None, help="append errors (and --debug messages) to this file")
    p.add_argument("--log-format", default="text", choices=("text", "json"))
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true", help="refused: only cgroupfs paths are supported")
    p.add_argument("--rootless", default="false", help="refused unless false: rootless is not supported yet")
    p.add_argument("-v", "--version", action="store_true")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def container(name: str, help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help)
        return c

    for name in ("create", "run"):
        c = container(name, "create a container from a bundle" if name == "create" else "create, start and wait")
        c.add_argument("-b", "--bundle", default=".", help="the bundle folder (default: the current one)")
        c.add_argument("--pid-file", default=None)
        c.add_argument("--console-socket", default=None)
        c.add_argument("--no-pivot", action="store_true", help="accepted: pivot_root is always used")
        c.add_argument("--no-new-keyring", action="store_true", help="accepted: no session keyring is made")
        c.add_argument("--preserve-fds", type=int, default=0)
        if name == "run":
            c.add_argument("-d", "--detach", action="store_true")
        c.add_argument("id")
    for name, help in (("start", "start a created container"), ("state", "print a container's state (JSON)"),
                       ("pause", "freeze every process of a container"), ("resume", "thaw a paused container")):
        container(name, help).add_argument("id")
    c = container("kill", "send a signal to a container's init (--all: every process)")
    c.add_argument("-a", "--all", action="store_true")
    c.add_argument("id")
    c.add_argument("signal", nargs="?", default="SIGTERM")
    c = container("delete", "delete a stopped container (--force: any)")
    c.add_argument("-f", "--force", action="store_true")
    c.add_argument("id")
    c = container("list", "list containers")
    c.add_argument("-f", "--format", default="table", choices=("table", "json"))
    c.add_argument("-q", "--quiet", action="store_true")
    c = container("ps", "the processes of a container")
    c.add_argument("-f", "--format", default="table", choices=("table", "json"))
    c.add_argument("id")
    c.add_argument("ps_args", nargs=argparse.REMAINDER)
    c = container("exec", "run a process in a running container")
    c.add_argument("-p", "--process", default=None)
    c.add_argument("-d", "--detach", action="store_true")
    c.add_argument("--pid-file", default=None)
    c.add_argument("-t", "--tty", action="store_true")
    c.add_argument("--console-socket", default=None)
    c.add_argument("--cwd", default=None)
    c.add_argument("-e", "--env", action="append", default=[])
    c.add_argument("-u", "--user", default=None)
    c.add_argument("--preserve-fds", type=int, default=0)
    c.add_argument("id")
    c.add_argument("cmd", nargs=argparse.REMAINDER)
    container("features", "what this runtime supports (JSON)")
    c = container("spec", "write a default config.json")
    c.add_argument("-b", "--bundle", default=".")
    c.add_argument("--rootless", dest="spec_rootless", action="store_true")
    return p


# -- the engines' calls without argparse -------------------------------------------------------
# argparse with gettext and locale costs ~5 ms of every call. The calls engines make
# (containerd's shim, conmon, CRI-O) are parsed here by a table of runc's flags; anything
# else (help, a flag not listed, a bad value, another command) goes to argparse, which
# gives the same answer or the error. tests/unit/test_oci_cli_parse.py compares the two.

_GLOBAL_VALUE = {"--root": "root", "--log": "log", "--log-format": "log_format", "--rootless": "rootless"}
_GLOBAL_FLAG = {"--debug": "debug", "--systemd-cgroup": "systemd_cgroup"}
_GLOBAL_DEFAULTS = {"root": None, "log": None, "log_format": "text", "debug": False, "systemd_cgroup": False,
                    "rootless": "false", "version": False}
_CREATE_VALUE = {"-b": "bundle", "--bundle": "bundle", "--pid-file": "pid_file", "--console-socket": "console_socket",
                 "--preserve-fds": "preserve_fds"}
_CREATE_FLAG = {"--no-pivot": "no_pivot", "--no-new-keyring": "no_new_keyring"}
_CREATE_DEFAULTS = {"bundle": ".", "pid_file": None, "console_socket": None, "no_pivot": False,
                    "no_new_keyring": False, "preserve_fds": 0}
# command: (options taking a value, flags, defaults, positional names, how many of them are required)
_VERBS: dict[str, tuple[dict[str, str], dict[str, str], dict[str, Any], tuple[str, ...], int]] = {
    "create": (_CREATE_VALUE, _CREATE_FLAG, _CREATE_DEFAULTS, ("id",), 1),
    "run": (_CREATE_VALUE, {**_CREATE_FLAG, "-d": "detach", "--detach": "detach"},
            {**_CREATE_DEFAULTS, "detach": False}, ("id",), 1),
    "start": ({}, {}, {}, ("id",), 1),
    "state": ({}, {}, {}, ("id",), 1),
    "pause": ({}, {}, {}, ("id",), 1),
    "resume": ({}, {}, {}, ("id",), 1),
    "kill": ({}, {"-a": "all", "--all": "all"}, {"all": False, "signal": "SIGTERM"}, ("id", "signal"), 1),
    "delete": ({}, {"-f": "force", "--force": "force"}, {"force": False}, ("id",), 1),
}


def fast_parse(argv: Sequence[str]) -> Any:
    """The arguments of an engine's call as argparse would give them, or None when
    argparse must decide (anything unusual)."""
    from types import SimpleNamespace

    out: dict[str, Any] = dict(_GLOBAL_DEFAULTS)
    i, n = 0, len(argv)
    values, flags = _GLOBAL_VALUE, _GLOBAL_FLAG
    positionals: list[str] = []
    verb = None
    while i < n:
        arg = argv[i]
        if arg.startswith("-") and arg != "-":
            name, eq, value = arg.partition("=")
            if name in values:
                if not eq:
                    i += 1
                    if i >= n or argv[i].startswith("-"):
                        return None
                    value = argv[i]
                out[values[name]] = value
            elif name in flags and not eq:
                out[flags[name]] = True
            else:
                return None
        elif verb is None:
            if arg not in _VERBS:
                return None
            verb = arg
            values, flags, defaults, _, _ = _VERBS[verb]
            for k, v in defaults.items():
                out.setdefault(k, v)
        else:
            positionals.append(arg)
        i += 1
    if verb is None:
        return None
    names, required = _VERBS[verb][3], _VERBS[verb][4]
    if not required <= len(positionals) <= len(names):
        return None
    out.update(zip(names, positionals))
    if out["log_format"] not in ("text", "json"):
        return None
    if "preserve_fds" in out:
        try:
            out["preserve_fds"] = int(out["preserve_fds"])
        except ValueError:
            return None
    out["command"] = verb
    return SimpleNamespace(**out)


class _Log:
    def __init__(self, path: str | None, fmt: str, debug: bool) -> None:
        self.path, self.fmt, self.debug_on = path, fmt, debug

    def write(self, level: str, msg: str) -> None:
        if not self.path:
            return
        if self.fmt == "json":
            import json
            import time

            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
            line = json.dumps({"level": level, "msg": msg, "time": stamp})
        else:
            line = f"{level}: {msg}"
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass

    def debug(self, msg: str) -> None:
        if self.debug_on:
            self.write("debug", msg)


def features() -> dict[str, Any]:
    from . import oci

    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": VERSION_SPEC,
        "hooks": list(oci.HOOK_KINDS),
        "mountOptions": sorted(oci.MOUNT_FLAGS),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": _capabilities(),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True, "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                                                     "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                                                     "SCMP_ACT_LOG", "SCMP_ACT_TRAP"],
                        "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                                      "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                        "archs": ["SCMP_ARCH_X86_64"]},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runc.version": "fastcontain-oci"},
    }


def _capabilities() -> list[str]:
    from . import _native

    return list(_native.CAPABILITIES)


def rootless_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """What `runc spec --rootless` makes of it: a user namespace mapping the caller's ids
    to root, no network or cgroup namespace of its own, the host's /sys bound, no
    resources, devpts without gid=5 (unmapped)."""
    linux = spec["linux"]
    linux.pop("resources", None)
    linux["uidMappings"] = [{"containerID": 0, "hostID": os.getuid(), "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": os.getgid(), "size": 1}]
    linux["namespaces"] = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "user")]
    for m in spec["mounts"]:
        if m["destination"] == "/sys":
            m.update(type="none", source="/sys", options=["rbind", "nosuid", "noexec", "nodev", "ro"])
        if m["type"] == "devpts":
            m["options"] = [o for o in m["options"] if o != "gid=5"]
    return spec


def default_spec() -> dict[str, Any]:
    """What `runc spec` writes (runtime-spec's example), with a cgroup namespace."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    return {
        "ociVersion": VERSION_SPEC,
        "process": {
            "terminal": True, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "fastcontain",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                            "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def _print_json(value: Any) -> None:
    import json

    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def dispatch(args: argparse.Namespace, log: _Log) -> int:
    from . import oci_runtime as rt

    root = os.path.abspath(args.root or rt.DEFAULT_ROOT)
    cmd = args.command
    if cmd == "create":
        rt.create(root, args.id, args.bundle, pid_file=args.pid_file, console_socket=args.console_socket,
                  preserve_fds=args.preserve_fds)
    elif cmd == "run":
        return rt.run(root, args.id, args.bundle, pid_file=args.pid_file, console_socket=args.console_socket,
                      detach=args.detach, preserve_fds=args.preserve_fds)
    elif cmd == "start":
        rt.start(root, args.id)
    elif cmd == "state":
        _print_json(rt.state(root, args.id))
    elif cmd == "kill":
        from .cli_lifecycle import parse_signal  # one parser for both command lines

        try:
            sig = parse_signal(args.signal)
        except ValueError as e:
            return _fail(log, str(e))
        rt.kill(root, args.id, sig, all=args.all)
    elif cmd == "delete":
        rt.delete(root, args.id, force=args.force)
    elif cmd in ("pause", "resume"):
        rt.pause(root, args.id, cmd == "pause")
    elif cmd == "ps":
        pids = rt.ps(root, args.id)
        if args.format == "json":
            _print_json(pids)
        else:
            import subprocess

            out = subprocess.run(["ps", *(args.ps_args or ["-ef"])], capture_output=True, text=True).stdout
            lines = out.splitlines()
            if lines:
                header = lines[0].split()
                col = header.index("PID") if "PID" in header else 1
                print(lines[0])
                for line in lines[1:]:
                    fields = line.split()
                    if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
                        print(line)
    elif cmd == "list":
        rows = rt.list_all(root)
        if args.quiet:
            for r in rows:
                print(r["id"])
        elif args.format == "json":
            _print_json(rows)
        else:
            print(f"{'ID':<20}{'PID':<10}{'STATUS':<10}BUNDLE")
            for r in rows:
                print(f"{r['id']:<20}{r['pid']:<10}{r['status']:<10}{r['bundle']}")
    elif cmd == "exec":
        return _exec(root, args)
    elif cmd == "features":
        _print_json(features())
    elif cmd == "spec":
        import json

        path = os.path.join(args.bundle, "config.json")
        if os.path.exists(path):
            return _fail(log, f"File {path} exists. Remove it first")
        spec = rootless_spec(default_spec()) if args.spec_rootless else default_spec()
        with open(path, "w") as f:
            json.dump(spec, f, indent="\t")
    return 0


def _exec(root: str, args: argparse.Namespace) -> int:
    from .oci_exec import exec_

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    return exec_(root, args.id, process_path=args.process, args=cmd, cwd=args.cwd, env=args.env, tty=args.tty,
                 user=args.user, detach=args.detach, pid_file=args.pid_file, console_socket=args.console_socket,
                 preserve_fds=args.preserve_fds)


def _fail(log: _Log, msg: str) -> int:
    print(f"{PROG}: {msg}", file=sys.stderr)
    log.write("error", msg)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = fast_parse(argv) or build_parser().parse_args(argv)
    log = _Log(args.log, args.log_format, args.debug)
    if args.version:
        from importlib import metadata

        try:
            version = metadata.version("fastcontain")
        except metadata.PackageNotFoundError:
            version = "0+unknown"
        print(f"{PROG} version {version}\nspec: {VERSION_SPEC}")
        return 0
    if args.command is None:
        build_parser().print_usage(sys.stderr)
        return 1
    log.debug(f"{' '.join(sys.argv)}")
    if args.systemd_cgroup:
        return _fail(log, "--systemd-cgroup is not supported: use cgroupfs (podman: cgroup_manager = \"cgroupfs\")")
    if args.rootless not in ("false", "auto"):
        return _fail(log, f"--rootless {args.rootless}: rootless containers are not supported yet")
    try:
        return dispatch(args, log)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        from .errors import FastcontainError

        if isinstance(e, (FastcontainError, OSError)):
            return _fail(log, str(e))
        import traceback

        log.write("error", traceback.format_exc())
        raise


if __name__ == "__main__":
    sys.exit(main())
