"""The image verbs of the `fastcontain` command, with docker's names and flags:

    pull [-q] [--platform OS/ARCH] [--tls-verify=false] NAME[:TAG|@DIGEST]
    load [-i FILE] [-q]             (stdin without -i)
    import FILE [REPOSITORY[:TAG]]
    images [-q] [--format json|table]
    rmi IMAGE...
    image ls | pull | load | import | rm | inspect IMAGE... | prune [-a] [-f]

Progress bars (bytes and rate, through tqdm) are drawn on stderr only when it is a
terminal and -q is not given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Callable

from .. import images as _images
from ..errors import FastcontainError, ImageError
from . import reference as _reference

EXIT_ERROR = 1


def _progress(args: argparse.Namespace) -> tuple[Callable[[str, int, int | None], None] | None, Callable[[], None]]:
    """A progress callback drawing one tqdm bar per blob, and a function closing them."""
    if getattr(args, "quiet", False) or not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    bars: dict[str, Any] = {}
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
        width, height = size.columns, size.lines
    except OSError:
        width = height = 0
    # A terminal that reports no size (a fresh pty) still gets bars: tqdm draws none in 0 rows.
    width, height = width or 80, height or 24

    def update(what: str, done: int, total: int | None) -> None:
        bar = bars.get(what)
        if bar is None:
            label = what.partition(":")[2][:12] if what.startswith("sha256:") else os.path.basename(what)[:24]
            bar = bars[what] = tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
                                    file=sys.stderr, leave=True, ncols=width, nrows=height)
        bar.update(done - bar.n)

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return update, close


def _tls(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {value!r}")


def add_parsers(commands: Any) -> None:
    """Add the image verbs to the CLI's subparsers; each sets `handler`."""
    def pull_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
        p.add_argument("--platform", metavar="OS/ARCH", help="the platform to pull from a manifest list (default: the host's)")
        p.add_argument("--tls-verify", type=_tls, default=True, metavar="BOOL",
                       help="false: the registry is insecure, talk plain http to it")
        p.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
        p.set_defaults(handler=cmd_pull)

    def load_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("-i", "--input", metavar="FILE", help="a docker save archive or an OCI layout (tar or directory); default stdin")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
        p.add_argument("--platform", metavar="OS/ARCH", help="the platform to take from a multi-platform layout")
        p.add_argument("--tag", "-t", metavar="NAME[:TAG]", help="tag the loaded image (an OCI layout entry with that tag)")
        p.set_defaults(handler=cmd_load)

    def import_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
        p.add_argument("file", metavar="FILE", help="a root filesystem tarball (gzip, zstd or plain)")
        p.add_argument("name", nargs="?", metavar="REPOSITORY[:TAG]")
        p.set_defaults(handler=cmd_import)

    def ls_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("-q", "--quiet", action="store_true", help="only image ids")
        p.add_argument("-a", "--all", action="store_true", help="accepted for docker compatibility")
        p.add_argument("--format", default="table", metavar="table|json", help="json: one JSON object per line")
        p.set_defaults(handler=cmd_images)

    def rm_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("-f", "--force", action="store_true", help="accepted for docker compatibility")
        p.add_argument("images", nargs="+", metavar="IMAGE")
        p.set_defaults(handler=cmd_rmi)

    pull_args(commands.add_parser("pull", help="pull an image from a registry"))
    load_args(commands.add_parser("load", help="load images from a docker archive or an OCI layout"))
    import_args(commands.add_parser("import", help="make an image of a root filesystem tarball"))
    ls_args(commands.add_parser("images", help="list images"))
    rm_args(commands.add_parser("rmi", help="remove images"))

    image = commands.add_parser("image", help="manage images")
    verbs = image.add_subparsers(dest="image_command", required=True, metavar="COMMAND")
    pull_args(verbs.add_parser("pull", help="pull an image from a registry"))
    load_args(verbs.add_parser("load", help="load images from an archive"))
    import_args(verbs.add_parser("import", help="import a root filesystem tarball"))
    ls_args(verbs.add_parser("ls", aliases=["list"], help="list images"))
    rm_args(verbs.add_parser("rm", help="remove images"))
    inspect = verbs.add_parser("inspect", help="show images' details as JSON")
    inspect.add_argument("images", nargs="+", metavar="IMAGE")
    inspect.set_defaults(handler=cmd_inspect)
    prune = verbs.add_parser("prune", help="remove unused images and layers")
    prune.add_argument("-a", "--all", action="store_true", help="every image no container uses, not only untagged ones")
    prune.add_argument("-f", "--force", action="store_true", help="do not ask (fastcontain never asks)")
    prune.set_defaults(handler=cmd_prune)


def _run(body: Callable[[], int]) -> int:
    try:
        return body()
    except (FastcontainError, OSError) as e:
        print(f"fastcontain: {e}", file=sys.stderr)
        return EXIT_ERROR


def _names(image: _images.Image) -> str:
    return ", ".join(_reference.short(t) for t in image.tags) or image.id


def cmd_pull(args: argparse.Namespace) -> int:
    def body() -> int:
        progress, close = _progress(args)
        try:
            image = _images.pull(args.name, progress=progress, platform=args.platform, insecure=not args.tls_verify)
        finally:
            close()
        if not args.quiet:
            print(f"Digest: {image.digests[-1].partition('@')[2] if image.digests else image.id}")
            print(f"Status: downloaded {_names(image)}")
        print(_reference.short(_reference.parse(args.name).tagged()) if not args.quiet else image.id)
        return 0
    return _run(body)


def cmd_load(args: argparse.Namespace) -> int:
    def body() -> int:
        progress, close = _progress(args)
        tmp = None
        try:
            path = args.input
            if path is None:
                if sys.stdin.isatty():
                    raise ImageError("load: give -i FILE, or an archive on stdin")
                fd, tmp = tempfile.mkstemp(prefix="fastcontain-load-", suffix=".tar")
                with os.fdopen(fd, "wb") as f:
                    shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
                path = tmp
            loaded = _images.load(path, args.tag, platform=args.platform, progress=progress)
        finally:
            close()
            if tmp is not None:
                os.unlink(tmp)
        for image in loaded:
            if image.tags:
                for tag in image.tags:
                    print(f"Loaded image: {_reference.short(tag)}")
            else:
                print(f"Loaded image ID: {image.id}")
        return 0
    return _run(body)


def cmd_import(args: argparse.Namespace) -> int:
    def body() -> int:
        progress, close = _progress(args)
        try:
            image = _images.import_rootfs(args.file, args.name, progress=progress)
        finally:
            close()
        print(image.id)
        return 0
    return _run(body)


def _age(created: str) -> str:
    try:
        t = time.mktime(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    except ValueError:
        return created or "-"
    seconds = max(0, time.time() - t)
    for unit, span in (("years", 365 * 86400), ("months", 30 * 86400), ("weeks", 7 * 86400), ("days", 86400),
                       ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * span:
            return f"{int(seconds // span)} {unit} ago"
    return "About a minute ago" if seconds >= 60 else "Less than a minute ago"


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{n}B"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def cmd_images(args: argparse.Namespace) -> int:
    def body() -> int:
        rows = []
        for image in _images.list():
            names = [_reference.short(t) for t in image.tags] or ["<none>:<none>"]
            for name in names:
                repo, _, tag = name.rpartition(":")
                rows.append((repo, tag, image))
        if args.quiet:
            for image_id in dict.fromkeys(r[2].short_id for r in rows):
                print(image_id)
            return 0
        if args.format == "json":
            for repo, tag, image in rows:
                print(json.dumps({"Repository": repo, "Tag": tag, "ID": image.short_id, "Id": image.id,
                                  "CreatedAt": image.created, "Size": image.size, "Digests": list(image.digests)}))
            return 0
        if args.format != "table":
            raise ImageError(f"--format {args.format!r}: only table and json")
        table = [("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")]
        table += [(repo, tag, image.short_id, _age(image.created), _size(image.size)) for repo, tag, image in rows]
        widths = [max(len(r[i]) for r in table) for i in range(4)]
        for r in table:
            print("   ".join(c.ljust(w) for c, w in zip(r, widths)) + "   " + r[4])
        return 0
    return _run(body)


def cmd_rmi(args: argparse.Namespace) -> int:
    status = 0
    for ref in args.images:
        try:
            for line in _images.remove(ref):
                print(line)
        except (FastcontainError, OSError) as e:
            print(f"fastcontain: {e}", file=sys.stderr)
            status = EXIT_ERROR
    return status


def cmd_inspect(args: argparse.Namespace) -> int:
    out, status = [], 0
    for ref in args.images:
        try:
            out.append(_images.get(ref).inspect())
        except (FastcontainError, OSError) as e:
            print(f"fastcontain: {e}", file=sys.stderr)
            status = EXIT_ERROR
    print(json.dumps(out, indent=4))
    return status


def cmd_prune(args: argparse.Namespace) -> int:
    def body() -> int:
        result = _images.prune(all=args.all)
        if result["ImagesDeleted"] or result["LayersDeleted"]:
            print("Deleted Images:")
            for image_id in result["ImagesDeleted"]:
                print(f"deleted: {image_id}")
            for layer in result["LayersDeleted"]:
                print(f"deleted: {layer}")
            print()
        print(f"Total reclaimed space: {_size(result['SpaceReclaimed'])}")
        return 0
    return _run(body)
