"""The layer store: each layer unpacked once, shared read-only by every image and container.

Layout, beside the embedded images of store.py (default /var/lib/fastcontain):

    <store>/layers/<hex>/root         a layer's files: an overlayfs lower directory, never written
    <store>/layers/<hex>/layer.json   its diff_id, size and entry count
    <store>/layers/.tmp-<hex>-*       an unpack in progress (or a crashed one)
    <store>/layers/.lock-<hex>        flock'ed while that layer is being unpacked
    <store>/oci/images/<hex>.json     an image: its config (verbatim), layers and names
    <store>/oci/refs.json             name:tag -> image id
    <store>/oci/lock                  flock'ed while refs.json or an image record changes
    <store>/gc.lock                   shared by every load, exclusive for garbage collection

<hex> is the sha256 of the layer's uncompressed tar (its diff_id, as an image
config lists it), so one layer is stored once whether it came gzip'd from a
registry or plain from a docker archive. A layer is unpacked into a temporary
directory and renamed into place only once its digests are verified: a directory
named by a digest is complete; anything else is removed by the next unpack of that
layer or by `gc`. Image records are written to a temporary file and renamed, so
readers see the old or the new one.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterator

from ..errors import ImageError
from . import unpack as _unpack

_HEX = re.compile(r"[0-9a-f]{64}\Z")


def digest_hex(digest: str, what: str = "digest") -> str:
    algorithm, _, hex = digest.partition(":")
    if algorithm != "sha256" or not _HEX.match(hex):
        raise ImageError(f"{what} {digest!r} is not a sha256 digest")
    return hex


@contextmanager
def flocked(path: str, how: int = fcntl.LOCK_EX) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, how)
        yield
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class ImageRecord:
    """An image as the store keeps it: the id is its config's digest."""

    id: str
    config: dict[str, Any]  # the image config JSON (architecture, os, config, rootfs, history)
    layers: tuple[str, ...]  # diff_ids, bottom first
    tags: tuple[str, ...] = ()  # normalized references: docker.io/library/busybox:latest
    digests: tuple[str, ...] = ()  # repo@sha256:manifest-digest, for images from registries
    source: str = ""
    created: float = 0.0  # when it was added to the store
    manifest: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "config": self.config, "layers": list(self.layers), "tags": list(self.tags),
            "digests": list(self.digests), "source": self.source, "created": self.created, "manifest": self.manifest,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ImageRecord:
        return cls(
            id=d["id"], config=d["config"], layers=tuple(d["layers"]), tags=tuple(d.get("tags", ())),
            digests=tuple(d.get("digests", ())), source=d.get("source", ""), created=d.get("created", 0.0),
            manifest=d.get("manifest", {}),
        )


class LayerStore:
    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.layers_dir = os.path.join(self.path, "layers")
        self.oci_dir = os.path.join(self.path, "oci")
        self.images_dir = os.path.join(self.oci_dir, "images")
        for d in (self.layers_dir, self.images_dir):
            os.makedirs(d, mode=0o755, exist_ok=True)

    # -- layers ---------------------------------------------------------------

    def layer_dir(self, diff_id: str) -> str:
        return os.path.join(self.layers_dir, digest_hex(diff_id, "layer diff_id"))

    def layer_root(self, diff_id: str) -> str:
        """The overlay lower directory of a stored layer."""
        return os.path.join(self.layer_dir(diff_id), "root")

    def has_layer(self, diff_id: str) -> bool:
        return os.path.isdir(os.path.join(self.layer_dir(diff_id), "root"))

    @contextmanager
    def loading(self) -> Iterator[None]:
        """Held around a whole load or pull: garbage collection waits for it."""
        with flocked(os.path.join(self.path, "gc.lock"), fcntl.LOCK_SH):
            yield

    def add_layer(
        self,
        open_blob: Callable[[], BinaryIO],
        *,
        diff_id: str | None,
        blob: str | None = None,
        size: int | None = None,
        name: str = "",
        progress: Callable[[int], None] | None = None,
    ) -> str:
        """Unpack a layer unless stored; its diff_id. `open_blob()` gives the (compressed) blob,
        whose digest `blob`, `size` and uncompressed digest `diff_id` are verified before the
        layer is kept. diff_id=None (a rootfs import) stores it under the digest it turns out to have."""
        if diff_id is not None:
            hex = digest_hex(diff_id, f"diff_id of layer {name or blob}")
            if self.has_layer(diff_id):
                return diff_id
            with flocked(os.path.join(self.layers_dir, f".lock-{hex}")):
                if self.has_layer(diff_id):
                    return diff_id
                self._remove_stale(f".tmp-{hex}-")
                return self._unpack(open_blob, diff_id, blob, size, name or blob or diff_id, hex, progress)
        return self._unpack(open_blob, None, blob, size, name, "import", progress)

    def _remove_stale(self, prefix: str) -> None:
        # Temporary dirs of this prefix are only made under its lock, which we hold: crashed runs'.
        for entry in os.listdir(self.layers_dir):
            if entry.startswith(prefix):
                shutil.rmtree(os.path.join(self.layers_dir, entry), ignore_errors=True)

    def _unpack(
        self, open_blob: Callable[[], BinaryIO], diff_id: str | None, blob: str | None, size: int | None,
        name: str, tag: str, progress: Callable[[int], None] | None,
    ) -> str:
        tmp = tempfile.mkdtemp(prefix=f".tmp-{tag}-", dir=self.layers_dir)
        try:
            os.chmod(tmp, 0o700)
            root = os.path.join(tmp, "root")
            os.mkdir(root, 0o755)
            with open_blob() as raw:
                reader, finish = _unpack.open_verified(raw, blob=blob, size=size, diff_id=diff_id, what=f"layer {name}")
                stats = _unpack.Unpacker(root, name, progress=progress).unpack(reader)
                actual = finish()
            info = {"diff_id": actual, "blob": blob, "entries": stats.entries, "bytes": stats.bytes, "unpacked": time.time()}
            with open(os.path.join(tmp, "layer.json"), "w") as f:
                json.dump(info, f)
            os.chmod(tmp, 0o755)
            hex = digest_hex(actual)
            if diff_id is None:
                with flocked(os.path.join(self.layers_dir, f".lock-{hex}")):
                    if self.has_layer(actual):
                        shutil.rmtree(tmp)
                    else:
                        os.rename(tmp, os.path.join(self.layers_dir, hex))
            else:
                os.rename(tmp, os.path.join(self.layers_dir, hex))
            return actual
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def layer_info(self, diff_id: str) -> dict[str, Any]:
        try:
            with open(os.path.join(self.layer_dir(diff_id), "layer.json")) as f:
                info: dict[str, Any] = json.load(f)
                return info
        except FileNotFoundError:
            return {}

    # -- images ---------------------------------------------------------------

    @contextmanager
    def _refs_locked(self) -> Iterator[dict[str, str]]:
        """refs.json, to read and change under the lock; written back on success."""
        with flocked(os.path.join(self.oci_dir, "lock")):
            refs = self._read_refs()
            before = dict(refs)
            yield refs
            if refs != before:
                write_atomic(os.path.join(self.oci_dir, "refs.json"), json.dumps(refs, indent=1, sort_keys=True).encode())

    def _read_refs(self) -> dict[str, str]:
        try:
            with open(os.path.join(self.oci_dir, "refs.json")) as f:
                refs: dict[str, str] = json.load(f)
                return refs
        except FileNotFoundError:
            return {}

    def _record_path(self, id: str) -> str:
        return os.path.join(self.images_dir, digest_hex(id, "image id") + ".json")

    def get(self, id: str) -> ImageRecord | None:
        try:
            with open(self._record_path(id)) as f:
                return ImageRecord.from_json(json.load(f))
        except FileNotFoundError:
            return None

    def put_image(self, record: ImageRecord) -> ImageRecord:
        """Record an image (all its layers stored) and point its tags at it; a tag held by
        another image moves, as docker does. Returns the record as stored (tags merged)."""
        for diff_id in record.layers:
            if not self.has_layer(diff_id):
                raise ImageError(f"image {record.id}: layer {diff_id} is not in the store")
        with self._refs_locked() as refs:
            old = self.get(record.id)
            tags = tuple(dict.fromkeys((old.tags if old else ()) + record.tags))
            digests = tuple(dict.fromkeys((old.digests if old else ()) + record.digests))
            for tag in record.tags:
                previous = refs.get(tag)
                if previous and previous != record.id:
                    self._untag(previous, tag)
                refs[tag] = record.id
            stored = ImageRecord(
                id=record.id, config=record.config, layers=record.layers, tags=tags, digests=digests,
                source=record.source, created=old.created if old else (record.created or time.time()),
                manifest=record.manifest or (old.manifest if old else {}),
            )
            write_atomic(self._record_path(record.id), json.dumps(stored.to_json()).encode())
        return stored

    def _untag(self, id: str, tag: str) -> None:
        old = self.get(id)
        if old is not None:
            rec = ImageRecord.from_json({**old.to_json(), "tags": [t for t in old.tags if t != tag]})
            write_atomic(self._record_path(id), json.dumps(rec.to_json()).encode())

    def lookup(self, ref: str) -> ImageRecord | None:
        """An image by normalized reference, repo@digest, full id or a unique id prefix (>= 4 hex)."""
        id = self._read_refs().get(ref)
        if id:
            return self.get(id)
        if "@" in ref:
            for rec in self.images():
                if ref in rec.digests:
                    return rec
        hex = ref[len("sha256:"):] if ref.startswith("sha256:") else ref
        if re.fullmatch(r"[0-9a-f]{4,64}", hex):
            found = [n for n in os.listdir(self.images_dir) if n.startswith(hex) and n.endswith(".json")]
            if len(found) == 1:
                return self.get("sha256:" + found[0][: -len(".json")])
            if len(found) > 1:
                raise ImageError(f"the image id prefix {hex!r} is ambiguous: {len(found)} images match")
        return None

    def images(self) -> list[ImageRecord]:
        out = []
        for name in sorted(os.listdir(self.images_dir)):
            if name.endswith(".json") and not name.startswith("."):
                rec = self.get("sha256:" + name[: -len(".json")])
                if rec is not None:
                    out.append(rec)
        return out

    def untag(self, ref: str) -> tuple[ImageRecord, bool]:
        """Remove the tag `ref` (or, given an id, the image): (the image, whether it is now gone)."""
        with self._refs_locked() as refs:
            rec = self.get(refs[ref]) if ref in refs else self.lookup(ref)
            if rec is None:
                raise ImageError(f"no such image: {ref}")
            by_tag = ref in refs and refs[ref] == rec.id
            tags = [t for t in rec.tags if t != ref] if by_tag else []
            for t in rec.tags:
                if t not in tags:
                    refs.pop(t, None)
            if tags:
                write_atomic(self._record_path(rec.id), json.dumps({**rec.to_json(), "tags": tags}).encode())
                return rec, False
            os.unlink(self._record_path(rec.id))
            return rec, True

    # -- garbage collection ---------------------------------------------------

    def gc(self, in_use: Callable[[], set[str]], *, dangling: bool = False) -> tuple[list[str], list[str], int]:
        """Remove layers no image and no live container uses, and crashed unpacks.
        With dangling=True, untagged images first. (images removed, layers removed, bytes freed)"""
        removed_images: list[str] = []
        removed_layers: list[str] = []
        freed = 0
        with flocked(os.path.join(self.path, "gc.lock"), fcntl.LOCK_EX):
            if dangling:
                with self._refs_locked():
                    for rec in self.images():
                        if not rec.tags:
                            os.unlink(self._record_path(rec.id))
                            removed_images.append(rec.id)
            keep = {digest_hex(d) for rec in self.images() for d in rec.layers}
            used_dirs = in_use()
            for entry in os.listdir(self.layers_dir):
                path = os.path.join(self.layers_dir, entry)
                if entry.startswith(".tmp-"):  # no load runs (we hold gc.lock): a crashed one
                    shutil.rmtree(path, ignore_errors=True)
                    continue
                if not _HEX.match(entry) or entry in keep or os.path.join(path, "root") in used_dirs:
                    continue
                info = self.layer_info("sha256:" + entry)
                freed += int(info.get("bytes", 0))
                shutil.rmtree(path)
                removed_layers.append("sha256:" + entry)
                lock = os.path.join(self.layers_dir, f".lock-{entry}")
                if os.path.exists(lock):
                    os.unlink(lock)
        return removed_images, removed_layers, freed
