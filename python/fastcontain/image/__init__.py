"""Images: what a container's root filesystem is made of.

`resolve(name)` turns an image name into an `Image`: read-only lower layers
(the container's overlay puts its own writable layer on top, so an image is
never modified nor copied), extra read-only mounts, and the defaults the
image gives a container (env, command, working directory, user).

Sources in this version:
  busybox          embedded: assembled once from the host's static busybox
  host             embedded: the host's /usr, /lib*, /bin, /sbin and /etc, read-only
  /path, dir:/path a directory used as the single lower layer
  NAME[:TAG], ID   an image in the layer store (layers.py), put there by load, import
                   or pull (fastcontain.images); pulled on a miss with pull="missing"

The modules: layers.py (the shared layer store), unpack.py (safe layer unpacking),
oci.py (OCI layouts, docker archives, rootfs imports), registry.py (pulls),
reference.py (image names), commands.py (the image CLI verbs).
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from dataclasses import dataclass
from typing import Any, Iterable

from ..config import Mount
from ..errors import ImageError
from . import store as _store
from .store import DEFAULT_PATH, default_store

__all__ = ["Image", "resolve", "default_store", "EMBEDDED", "DEFAULT_PATH", "PULL_POLICIES"]

PULL_POLICIES = ("never", "missing", "always")
MAX_LOWERDIR = 3800  # of the 4096-byte page overlayfs' mount options get, leaving room for upper and work
USE_FILE = "image.json"  # in a container's state dir: the layers it mounts (for garbage collection)

EMBEDDED = ("busybox", "host")


@dataclass(frozen=True)
class Image:
    name: str
    layers: tuple[str, ...]
    """Lower directories, topmost first."""
    env: tuple[str, ...] = (f"PATH={DEFAULT_PATH}",)
    cmd: tuple[str, ...] = ()
    workdir: str = "/"
    user: str = ""
    mounts: tuple[Mount, ...] = ()
    """Mounts the image needs, before the container's volumes."""
    entrypoint: tuple[str, ...] = ()
    """Prepended to the command (the image's Cmd or the user's), as docker does."""
    id: str = ""
    """A stored image's id (its config's digest); empty for the others."""

    def read_etc(self, name: str) -> str | None:
        """The image's /etc/<name> (passwd, group, ...), or None if it has none."""
        for m in reversed(self.mounts):
            if m.target.rstrip("/") == "/etc":
                return _read_regular(os.path.join(m.source, name))
        path = lookup_layered(self.layers, ("etc", name))
        return _read_regular(path) if path is not None else None


def _opaque(path: str) -> bool:
    for name in ("trusted.overlay.opaque", "user.overlay.opaque"):  # root's store, a rootless one's
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            pass
    return False


def lookup_layered(layers: Iterable[str], parts: tuple[str, ...]) -> str | None:
    """The file overlayfs would show at /<parts> of these lower layers (topmost first), or
    None when no layer has it, a whiteout or an opaque directory hides it, or a parent is
    not a directory (symlinks are not followed: they could lead out of the image)."""
    for layer in layers:
        path, hidden_below = layer, False
        for i, part in enumerate(parts):
            path = os.path.join(path, part)
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                break
            last = i == len(parts) - 1
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                return None  # a whiteout
            if last:
                return path
            if not stat.S_ISDIR(st.st_mode):
                return None  # a file or link here hides the lower layers' directory
            if _opaque(path):
                hidden_below = True
        if hidden_below:
            return None
    return None


def _read_regular(path: str) -> str | None:
    # Never follow a link out of the image: an absolute link would read the host's file.
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _directory(name: str, path: str) -> Image:
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        what = "is not a directory" if os.path.exists(path) else "does not exist"
        raise ImageError(f"image {name!r}: the directory {path} {what}")
    if ":" in path or "," in path:
        raise ImageError(f"image {name!r}: an overlay layer's path cannot contain ':' or ',' ({path})")
    return Image(name=name, layers=(path,))


def from_record(record: Any, layer_store: Any) -> Image:
    """The runtime Image of a stored image record (layers.ImageRecord)."""
    from .reference import short

    c = record.config.get("config") or {}
    name = short(record.tags[0]) if record.tags else record.id
    env = tuple(e for e in (c.get("Env") or ()) if isinstance(e, str) and "=" in e)
    layers = tuple(layer_store.layer_root(d) for d in reversed(record.layers))
    lowerdir = len(":".join(layers))
    if lowerdir > MAX_LOWERDIR:
        raise ImageError(
            f"image {name!r} has {len(layers)} layers: their overlayfs lowerdir list is {lowerdir} bytes, more than "
            f"fits in the kernel's one-page mount options (about {MAX_LOWERDIR}); a shorter FASTCONTAIN_STORE path helps"
        )
    return Image(
        name=name,
        layers=layers,
        env=env or (f"PATH={DEFAULT_PATH}",),
        cmd=tuple(c.get("Cmd") or ()),
        entrypoint=tuple(c.get("Entrypoint") or ()),
        workdir=c.get("WorkingDir") or "/",
        user=c.get("User") or "",
        id=record.id,
    )


def _stored(name: str, store: str, pull: str, insecure: bool | Iterable[str]) -> Image:
    from . import layers, reference, registry

    if pull not in PULL_POLICIES:
        raise ImageError(f"pull={pull!r}: expected one of {', '.join(PULL_POLICIES)}")
    layer_store = layers.LayerStore(store)
    try:
        ref = reference.parse(name)
    except ImageError:
        ref = None
    record = None
    if pull != "always":
        record = layer_store.lookup(str(ref) if ref is not None and ref.digest else ref.tagged() if ref else name)
        if record is None:
            record = layer_store.lookup(name)
    if record is None and ref is not None and pull in ("missing", "always"):
        record = registry.pull(layer_store, name, insecure=insecure)
    if record is None:
        raise ImageError(
            f"unknown image {name!r}: not an embedded image ({', '.join(EMBEDDED)}), a directory (an absolute "
            "path, ./path or dir:/path) or an image in the store (fastcontain images lists them; fastcontain "
            "pull, load or import adds them; run with pull='missing' to pull it)"
        )
    return from_record(record, layer_store)


class _GcHold:
    """A shared lock on the store's gc.lock, from resolving an image until its layers are
    noted in the container's state dir, so `prune` cannot remove them in between."""

    def __init__(self, store: str) -> None:
        self.fd = -1
        path = os.path.join(store, "gc.lock")
        if os.access(os.path.join(store, "layers"), os.F_OK):  # a store with layers (else nothing to hold)
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_SH)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> _GcHold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def gc_hold(store: str | None = None) -> _GcHold:
    return _GcHold(store or default_store())


def record_use(image: Image, container_dir: str) -> None:
    """Note in a container's state dir which stored layers it mounts, so garbage
    collection keeps them while the container lives."""
    if image.id:
        with open(os.path.join(container_dir, USE_FILE), "w") as f:
            json.dump({"image": image.id, "layers": list(image.layers)}, f)


def layers_in_use(root: str | None = None) -> set[str]:
    """The layer directories mounted by containers that are alive (their lock is held)."""
    from .. import state

    root = root or state.default_root()
    used: set[str] = set()
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return used
    for entry in entries:
        note = os.path.join(entry.path, USE_FILE)
        if entry.is_dir(follow_symlinks=False) and os.path.exists(note) and state._held(entry.path):
            try:
                with open(note) as f:
                    used.update(json.load(f).get("layers", ()))
            except (OSError, ValueError):
                continue
    return used


def resolve(name: str, store: str | None = None, *, pull: str = "never", insecure: bool | Iterable[str] = False) -> Image:
    """The image called `name`; embedded images are assembled in `store` on first use.
    `pull` ("never", "missing", "always") says when to pull a stored image from its registry."""
    store = store or default_store()
    if name == "busybox":
        return Image(name=name, layers=(_store.busybox_rootfs(store),), cmd=("sh",))
    if name == "host":
        layout = _store.host_layout()
        mounts = tuple(Mount(f"/{d}", f"/{d}", readonly=True) for d, kind in layout if kind == "dir")
        return Image(name=name, layers=(_store.host_rootfs(store, layout),), cmd=("sh",), mounts=mounts)
    if name.startswith("dir:"):
        return _directory(name, name[len("dir:"):])
    if name.startswith(("/", "./", "../")):
        return _directory(name, name)
    return _stored(name, store, pull, insecure)
