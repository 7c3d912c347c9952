"""Images in the local store: load, import, pull, list, inspect, remove, prune.

    import fastcontain.images as images
    images.load("busybox-oci.tar")                 # an OCI layout (dir or tar) or a docker save archive
    images.import_rootfs("rootfs.tar.gz", "mybox:1")
    images.pull("127.0.0.1:5000/busybox:1", insecure=True, progress=print)
    [i.tags for i in images.list()]
    images.get("mybox:1").config["Entrypoint"]
    images.remove("mybox:1"); images.prune()

Then `fastcontain.run("mybox:1", ...)` runs it; `run(..., pull="missing")` pulls on a miss.
Layers are stored once (by their uncompressed digest) and shared by every image and
container; removing an image removes the layers nothing else uses (not those a live
container has mounted).
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any, Iterable

from .errors import ImageError
from .image import default_store, layers_in_use
from .image import oci as _oci
from .image import reference as _reference
from .image import registry as _registry
from .image.layers import ImageRecord, LayerStore

__all__ = ["Image", "load", "pull", "import_rootfs", "list", "get", "remove", "prune", "Progress"]

Progress = _oci.Progress


@dataclass(frozen=True)
class Image:
    """A stored image. `config` is the container config of its image config (Entrypoint,
    Cmd, Env, WorkingDir, User, ExposedPorts, Labels, ...); `raw_config` all of it."""

    id: str
    tags: tuple[str, ...]
    digests: tuple[str, ...]
    layers: tuple[str, ...]
    size: int
    raw_config: dict[str, Any]
    source: str

    @property
    def short_id(self) -> str:
        return self.id.partition(":")[2][:12]

    @property
    def config(self) -> dict[str, Any]:
        c = self.raw_config.get("config")
        return c if isinstance(c, dict) else {}

    @property
    def entrypoint(self) -> tuple[str, ...]:
        return tuple(self.config.get("Entrypoint") or ())

    @property
    def cmd(self) -> tuple[str, ...]:
        return tuple(self.config.get("Cmd") or ())

    @property
    def env(self) -> tuple[str, ...]:
        return tuple(self.config.get("Env") or ())

    @property
    def workdir(self) -> str:
        return str(self.config.get("WorkingDir") or "")

    @property
    def user(self) -> str:
        return str(self.config.get("User") or "")

    @property
    def exposed_ports(self) -> tuple[str, ...]:
        return tuple(sorted(self.config.get("ExposedPorts") or {}))

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.config.get("Labels") or {})

    @property
    def created(self) -> str:
        return str(self.raw_config.get("created") or "")

    @property
    def platform(self) -> str:
        return f"{self.raw_config.get('os', '?')}/{self.raw_config.get('architecture', '?')}"

    def inspect(self) -> dict[str, Any]:
        """docker image inspect's fields that apply."""
        return {
            "Id": self.id,
            "RepoTags": [_reference.short(t) for t in self.tags],
            "RepoDigests": [_reference.short(d) for d in self.digests],
            "Created": self.created,
            "Architecture": self.raw_config.get("architecture"),
            "Os": self.raw_config.get("os"),
            "Size": self.size,
            "Config": self.config,
            "RootFS": {"Type": "layers", "Layers": builtins.list(self.layers)},
            "Source": self.source,
        }


def _store(store: str | None) -> LayerStore:
    return LayerStore(store or default_store())


def _image(s: LayerStore, rec: ImageRecord) -> Image:
    size = sum(int(s.layer_info(d).get("bytes", 0)) for d in rec.layers)
    return Image(rec.id, rec.tags, rec.digests, rec.layers, size, rec.config, rec.source)


def _key(ref: str) -> str:
    """What a user's reference is stored under: name:tag, name@digest, or an id (prefix)."""
    try:
        parsed = _reference.parse(ref)
    except ImageError:
        return ref
    if parsed.digest and not parsed.tag:
        return f"{parsed.name}@{parsed.digest}"
    return parsed.tagged()


def load(
    path: str, name: str | None = None, *, ref: str | None = None, platform: str | None = None,
    progress: Progress | None = None, store: str | None = None,
) -> builtins.list[Image]:
    """Load an OCI image layout (directory or tar) or a `docker save` archive; its images.
    `name` tags the image. For an OCI layout holding several, `ref` picks the entry by its
    ref.name annotation (by default, the one named like `name`'s tag)."""
    s = _store(store)
    return [_image(s, r) for r in _oci.load(s, path, name=name, platform=platform, progress=progress, select=ref)]


def import_rootfs(
    tar: str, name: str | None = None, *, config: dict[str, Any] | None = None, progress: Progress | None = None,
    store: str | None = None,
) -> Image:
    """A one-layer image from a root filesystem tarball (gzip, zstd or plain), like docker import.
    `config` is its container config (e.g. {"Cmd": ["sh"]}); none by default, as docker's."""
    s = _store(store)
    return _image(s, _oci.import_rootfs(s, tar, name, config=config, progress=progress))


def pull(
    ref: str, *, progress: Progress | None = None, platform: str | None = None,
    insecure: bool | Iterable[str] = False, store: str | None = None,
) -> Image:
    """Pull [REGISTRY/]NAME[:TAG|@DIGEST] (plain http only if insecure, or the registry is in it)."""
    s = _store(store)
    return _image(s, _registry.pull(s, ref, platform=platform, insecure=insecure, progress=progress))


def list(store: str | None = None) -> builtins.list[Image]:  # noqa: A001 (docker-py's name)
    s = _store(store)
    return [_image(s, r) for r in s.images()]


def get(ref: str, store: str | None = None) -> Image:
    s = _store(store)
    rec = s.lookup(_key(ref)) or s.lookup(ref)
    if rec is None:
        raise ImageError(f"no such image: {ref}")
    return _image(s, rec)


def remove(ref: str, store: str | None = None) -> builtins.list[str]:
    """Untag `ref` (an id removes the image and all its tags); once an image has no tag left it
    is deleted with the layers nothing else uses. docker's lines: Untagged:/Deleted:."""
    s = _store(store)
    key = _key(ref)
    if s.lookup(key) is None and s.lookup(ref) is not None:
        key = ref
    rec, gone = s.untag(key)
    lines = [f"Untagged: {_reference.short(t)}" for t in rec.tags if gone or t == key]
    if gone:
        lines.append(f"Deleted: {rec.id}")
        _, layers, _ = s.gc(layers_in_use)
        lines += [f"Deleted: {d}" for d in layers]
    return lines


def prune(all: bool = False, store: str | None = None) -> dict[str, Any]:  # noqa: A002 (docker's flag)
    """Remove untagged images (all=True: every image no live container uses) and the layers
    nothing uses. {"ImagesDeleted": [...], "LayersDeleted": [...], "SpaceReclaimed": bytes}."""
    s = _store(store)
    removed: builtins.list[str] = []
    if all:
        used = layers_in_use()
        for rec in s.images():
            if not any(s.layer_root(d) in used for d in rec.layers):
                s.untag(rec.id)
                removed.append(rec.id)
    images, layers, freed = s.gc(layers_in_use, dangling=True)
    return {"ImagesDeleted": removed + images, "LayersDeleted": layers, "SpaceReclaimed": freed}
