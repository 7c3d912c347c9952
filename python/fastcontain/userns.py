"""The root filesystem of a container in a user namespace.

Three ways, chosen once per process (and per filesystem of the image store):

- `parent-idmap` (root on a kernel and filesystem that allow it): the parent
  builds the overlay with the new mount API over idmapped clones of the image's
  layers (open_tree + mount_setattr(MOUNT_ATTR_IDMAP) through the container's
  own user namespace, once its maps are written) and hands the detached mount
  to the child, which attaches it (rust/src/idmap.rs). No copy of the image is
  made; a file owned by 0 in a layer is owned by the container's root, and what
  the container writes lands in its upper directory owned by the mapped host ids.
- `parent` (the fallback, when the probe is refused): the same overlay built by
  the parent, over copies of the layers chowned into the mapping and cached in
  the store (security.shifted_layer). The reason is logged once, at debug level,
  and kept in `idmap_refusal()`.
- `child` (rootless, see rootless.py): the child mounts the overlay itself in
  its user namespace with `userxattr`.

Built by the host's root, the overlay reads `trusted.overlay.opaque` and the
whiteouts of the image's layers as without a user namespace, so an opaque
directory hides the layers below it (an overlay mounted inside the namespace
cannot read `trusted.*`).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

from . import _native
from .errors import SpawnError

if TYPE_CHECKING:
    from .security import Userns

log = logging.getLogger("fastcontain")

#: Set to 0 to skip idmapped layers and use the chowned copies (for tests and comparisons).
IDMAP_ENV = "FASTCONTAIN_IDMAP"

_lock = threading.Lock()
_probed: dict[int, str | None] = {}  # st_dev of the store's layers -> None (idmap works) or the reason it does not


def _map_text(m: tuple[tuple[int, int, int], ...]) -> str:
    return "".join(f"{i} {o} {c}\n" for i, o, c in m)


def idmap_refusal(layer: str, userns: Userns) -> str | None:
    """None when layers on `layer`'s filesystem can be idmapped and stacked by an
    overlay here, else why not (the syscall and errno). Probed once per filesystem."""
    if os.environ.get(IDMAP_ENV, "1") == "0":
        return f"${IDMAP_ENV}=0"
    dev = os.stat(layer).st_dev
    with _lock:
        if dev in _probed:
            return _probed[dev]
        try:
            _native.probe_idmap(layer, _map_text(userns.uid_map), _map_text(userns.gid_map))
            reason = None
        except SpawnError as e:
            reason = str(e)
            log.debug("idmapped layers refused, using chowned copies of the layers instead: %s", reason)
        _probed[dev] = reason
        return reason


def overlay_by(layers: tuple[str, ...] | list[str], userns: Userns) -> str:
    """How a container with `userns` over `layers` gets its root filesystem (see above)."""
    if not layers:
        return "parent"
    return "parent" if idmap_refusal(layers[0], userns) else "parent-idmap"
