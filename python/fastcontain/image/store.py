"""The image store: images assembled once on the host, then shared read-only.

Layout (default /var/lib/fastcontain, or $FASTCONTAIN_STORE):

    <store>/lock                       flock'ed while an image is being assembled
    <store>/images/<name>/rootfs       an image's root filesystem (an overlay lower layer)
    <store>/images/<name>/source       what it was built from; a change rebuilds it
    <store>/images/.tmp-*              an assembly in progress (or a crashed one, removed under the lock)

An image is built in a temporary directory next to its final place and
renamed into it, so a reader sees either nothing or a complete image.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import struct
import subprocess
import tempfile
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from ..errors import ImageError

DEFAULT_STORE = "/var/lib/fastcontain"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Directories every embedded image has, with their modes.
BASE_DIRS = (
    ("etc", 0o755), ("root", 0o700), ("tmp", 0o1777), ("proc", 0o555), ("sys", 0o555), ("dev", 0o755),
    ("home", 0o755), ("run", 0o755), ("mnt", 0o755), ("var", 0o755), ("var/tmp", 0o1777),
)
BUSYBOX_DIRS = (("bin", 0o755), ("sbin", 0o755), ("usr", 0o755), ("usr/bin", 0o755), ("usr/sbin", 0o755))
BUSYBOX_ETC = {
    "passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    "group": "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
    "hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
}
# The host's top-level directories the `host` image shares (read-only) or mirrors (symlinks).
HOST_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")


def default_store() -> str:
    store = os.environ.get("FASTCONTAIN_STORE")
    if store:
        return store
    if os.geteuid() != 0:  # rootless: the user's own, as podman's (rootless.py)
        from ..rootless import data_home

        return data_home()
    return DEFAULT_STORE


@contextmanager
def locked(store: str) -> Iterator[None]:
    """Hold the store's lock: one assembler at a time, across processes."""
    os.makedirs(os.path.join(store, "images"), mode=0o755, exist_ok=True)
    fd = os.open(os.path.join(store, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def ensure(store: str, name: str, source: str, build: Callable[[str], None]) -> str:
    """The rootfs of image `name`, built by `build(rootfs)` unless already built from `source`."""
    final = os.path.join(store, "images", name)
    rootfs = os.path.join(final, "rootfs")
    if _read(os.path.join(final, "source")) == source:
        return rootfs
    with locked(store):
        if _read(os.path.join(final, "source")) == source:
            return rootfs
        images = os.path.dirname(final)
        for entry in os.listdir(images):
            if entry.startswith(".tmp-"):  # only ever made under this lock: a crashed assembly
                shutil.rmtree(os.path.join(images, entry), ignore_errors=True)
        tmp = tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=images)
        try:
            os.chmod(tmp, 0o755)
            os.mkdir(os.path.join(tmp, "rootfs"))
            os.chmod(os.path.join(tmp, "rootfs"), 0o755)
            build(os.path.join(tmp, "rootfs"))
            with open(os.path.join(tmp, "source"), "w") as f:
                f.write(source)
            if os.path.lexists(final):  # stale: built from another source
                old = tempfile.mkdtemp(prefix=f".tmp-old-{name}-", dir=images)
                os.rename(final, os.path.join(old, name))
                os.rename(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return rootfs


def _make_dirs(rootfs: str, dirs: tuple[tuple[str, int], ...]) -> None:
    for rel, mode in dirs:
        path = os.path.join(rootfs, rel)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)  # not subject to the umask


def _write(path: str, text: str, mode: int = 0o644) -> None:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


# --- busybox -------------------------------------------------------------

PT_INTERP = 3


def elf_interpreter(path: str) -> bool | None:
    """True if the ELF file has a PT_INTERP header (dynamically linked), False if
    static, None if it is not an ELF file."""
    with open(path, "rb") as f:
        ident = f.read(16)
        if len(ident) < 16 or ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] not in (1, 2):
            return None
        is64, end = ident[4] == 2, "<" if ident[5] == 1 else ">"
        header = f.read(48 if is64 else 36)
        if len(header) < (48 if is64 else 36):
            return None
        # offsets after e_ident: e_phoff at 16 (64-bit) or 12; e_phentsize, e_phnum at 38 or 26
        (phoff,) = struct.unpack_from(end + ("Q" if is64 else "I"), header, 16 if is64 else 12)
        phentsize, phnum = struct.unpack_from(end + "HH", header, 38 if is64 else 26)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            (p_type,) = struct.unpack(end + "I", f.read(4))
            if p_type == PT_INTERP:
                return True
    return False


def find_busybox(candidates: Sequence[str] | None = None) -> str:
    """The host's static busybox, or ImageError saying what was found."""
    if candidates is None:
        candidates = [p for p in (shutil.which("busybox"), "/bin/busybox", "/usr/bin/busybox") if p]
    tried = []
    for candidate in dict.fromkeys(candidates):
        if not os.path.isfile(candidate):
            tried.append(f"{candidate} (missing)")
            continue
        kind = elf_interpreter(candidate)
        if kind is False:
            return os.path.realpath(candidate)
        tried.append(f"{candidate} ({'dynamically linked' if kind else 'not an ELF executable'})")
    raise ImageError(
        "image 'busybox' needs a statically linked busybox on the host (Debian/Ubuntu: apt install busybox-static); "
        f"tried {', '.join(tried)}"
    )


def busybox_applets(busybox: str) -> list[str]:
    """The applets' paths relative to /, as `busybox --list-full` gives them."""
    full = subprocess.run([busybox, "--list-full"], capture_output=True, text=True)
    if full.returncode == 0 and full.stdout.strip():
        return full.stdout.split()
    short = subprocess.run([busybox, "--list"], capture_output=True, text=True)
    if short.returncode != 0:
        raise ImageError(f"{busybox} --list failed: {short.stderr.strip()}")
    return [f"bin/{applet}" for applet in short.stdout.split()]


def build_busybox(rootfs: str, busybox: str) -> None:
    _make_dirs(rootfs, BUSYBOX_DIRS + BASE_DIRS)
    shutil.copyfile(busybox, os.path.join(rootfs, "bin/busybox"))
    os.chmod(os.path.join(rootfs, "bin/busybox"), 0o755)
    for rel in busybox_applets(busybox) + ["bin/sh"]:
        link = os.path.join(rootfs, rel.strip("/"))
        if "/" in rel.strip("/") and os.path.normpath(link).startswith(rootfs + os.sep) and not os.path.lexists(link):
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink("/bin/busybox", link)
    for name, text in BUSYBOX_ETC.items():
        _write(os.path.join(rootfs, "etc", name), text)


def busybox_rootfs(store: str) -> str:
    busybox = find_busybox()
    st = os.stat(busybox)
    source = f"busybox {busybox} {st.st_size} {st.st_mtime_ns}\n"
    return ensure(store, "busybox", source, lambda rootfs: build_busybox(rootfs, busybox))


# --- host ----------------------------------------------------------------

def host_layout(host_root: str = "/") -> list[tuple[str, str]]:
    """The host's top-level system directories: ("dir", "") to share, ("link", target) to mirror."""
    out = []
    for name in HOST_DIRS:
        path = os.path.join(host_root, name)
        if os.path.islink(path):
            out.append((name, "link:" + os.readlink(path)))
        elif os.path.isdir(path):
            out.append((name, "dir"))
    return out


def build_host(rootfs: str, layout: list[tuple[str, str]]) -> None:
    for name, kind in layout:
        path = os.path.join(rootfs, name)
        if kind.startswith("link:"):
            os.symlink(kind[len("link:"):], path)
        else:
            os.mkdir(path, 0o755)  # a mount point for the host's directory
    shared = {name for name, _ in layout}
    _make_dirs(rootfs, tuple(d for d in BASE_DIRS if d[0].split("/")[0] not in shared))


def host_rootfs(store: str, layout: list[tuple[str, str]]) -> str:
    source = "host " + " ".join(f"{name}={kind}" for name, kind in layout) + "\n"
    return ensure(store, "host", source, lambda rootfs: build_host(rootfs, layout))
