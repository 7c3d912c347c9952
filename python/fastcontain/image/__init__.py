"""Images: what a container's root filesystem is made of.

`resolve(name)` turns an image name into an `Image`: read-only lower layers
(the container's overlay puts its own writable layer on top, so an image is
never modified nor copied), extra read-only mounts, and the defaults the
image gives a container (env, command, working directory, user).

Sources in this version:
  busybox          embedded: assembled once from the host's static busybox
  host             embedded: the host's /usr, /lib*, /bin, /sbin and /etc, read-only
  /path, dir:/path a directory used as the single lower layer
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from ..config import Mount
from ..errors import ImageError
from . import store as _store
from .store import DEFAULT_PATH, default_store

__all__ = ["Image", "resolve", "default_store", "EMBEDDED", "DEFAULT_PATH"]

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

    def read_etc(self, name: str) -> str | None:
        """The image's /etc/<name> (passwd, group, ...), or None if it has none."""
        for m in reversed(self.mounts):
            if m.target.rstrip("/") == "/etc":
                return _read_regular(os.path.join(m.source, name))
        for layer in self.layers:
            path = os.path.join(layer, "etc", name)
            if os.path.lexists(path):
                return _read_regular(path)
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


def resolve(name: str, store: str | None = None) -> Image:
    """The image called `name`; embedded images are assembled in `store` on first use."""
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
    raise ImageError(
        f"unknown image {name!r}: tried the embedded images ({', '.join(EMBEDDED)}) and a directory "
        "(an absolute path, ./path or dir:/path); OCI archives and registries come later"
    )
