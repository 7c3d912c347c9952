"""Images from files: OCI image layouts (a directory or a tar), `docker save` archives (the
legacy manifest.json layout and the OCI layout newer docker writes beside it), and plain
root filesystem tarballs (`import`).

Every blob is checked against the digest (and size) that names it before it is used:
manifests and configs before they are parsed, layers while they are unpacked into a
temporary directory the store renames into place only when both the blob's digest and
the uncompressed digest (the config's diff_id) match.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import platform as _platform
import tarfile
import time
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Protocol

from ..errors import ImageError
from . import reference as _reference
from .layers import ImageRecord, LayerStore, digest_hex

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
LAYER_TYPES = (
    "application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd", "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x"}

Progress = Callable[[str, int, "int | None"], None]
"""progress(what, bytes_done, bytes_total): called as a blob is read."""


def host_platform() -> str:
    machine = _platform.machine()
    return f"linux/{_ARCH.get(machine, machine)}"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify_bytes(data: bytes, digest: str, size: int | None, what: str) -> bytes:
    actual = sha256(data) if digest.startswith("sha256:") else "sha512:" + hashlib.sha512(data).hexdigest()
    if actual != digest:
        raise ImageError(f"{what} {digest}: its content has digest {actual}; refusing it")
    if size is not None and len(data) != size:
        raise ImageError(f"{what} {digest}: {len(data)} bytes, but its descriptor says {size}")
    return data


def parse_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageError(f"{what} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ImageError(f"{what} is not a JSON object")
    return value


def _platform_of(desc: dict[str, Any]) -> str | None:
    p = desc.get("platform")
    if not isinstance(p, dict):
        return None
    s = f"{p.get('os')}/{p.get('architecture')}"
    return s + (f"/{p['variant']}" if p.get("variant") else "")


def choose(manifests: list[dict[str, Any]], wanted: str, what: str) -> dict[str, Any]:
    """The descriptor for `wanted` (os/arch[/variant]) in an index's manifests."""
    candidates = [m for m in manifests if m.get("mediaType") in INDEX_TYPES + MANIFEST_TYPES or "platform" in m]
    for m in candidates:
        p = _platform_of(m)
        if p == wanted or (p is not None and "/".join(p.split("/")[:2]) == wanted):
            return m
    unplatformed = [m for m in candidates if _platform_of(m) is None]
    if len(unplatformed) == 1 and len(candidates) == 1:
        return unplatformed[0]
    have = ", ".join(sorted({_platform_of(m) or "unspecified" for m in candidates})) or "none"
    raise ImageError(f"{what} has no image for {wanted} (it has: {have})")


@dataclass(frozen=True)
class LayerSource:
    open: Callable[[], BinaryIO]
    blob: str | None  # the compressed blob's digest, when the source names it
    size: int | None
    diff_id: str
    name: str


def record_image(
    store: LayerStore,
    config_bytes: bytes,
    layers: list[LayerSource],
    *,
    tags: tuple[str, ...],
    digests: tuple[str, ...] = (),
    source: str,
    manifest: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> ImageRecord:
    """Unpack the layers the store lacks (verified), then record the image."""
    config = parse_json(config_bytes, "the image config")
    for layer in layers:
        if store.has_layer(layer.diff_id):
            continue
        counted = _counting(layer, progress)
        store.add_layer(counted, diff_id=layer.diff_id, blob=layer.blob, size=layer.size, name=layer.name)
    record = ImageRecord(
        id=sha256(config_bytes), config=config, layers=tuple(l.diff_id for l in layers), tags=tags,
        digests=digests, source=source, created=time.time(), manifest=manifest or {},
    )
    return store.put_image(record)


def diff_ids(config: dict[str, Any], what: str) -> list[str]:
    rootfs = config.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list) or not all(isinstance(d, str) for d in ids):
        raise ImageError(f"{what}: the config has no rootfs.diff_ids list")
    for d in ids:
        digest_hex(d, f"{what}: diff_id")
    return ids


class _Counter(io.RawIOBase):
    def __init__(self, raw: BinaryIO, what: str, total: int | None, progress: Progress) -> None:
        self.raw, self.what, self.total, self.progress, self.done = raw, what, total, progress, 0
        progress(what, 0, total)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self.raw.readinto(b)  # type: ignore[attr-defined]
        if n:
            self.done += n
            self.progress(self.what, self.done, self.total)
        return n or 0

    def close(self) -> None:
        self.raw.close()
        super().close()


def _counting(layer: LayerSource, progress: Progress | None) -> Callable[[], BinaryIO]:
    if progress is None:
        return layer.open
    return lambda: _Counter(layer.open(), layer.name, layer.size, progress)  # type: ignore[return-value]


# -- files: a directory or a tar, read by path ---------------------------------

class Files(Protocol):
    def exists(self, path: str) -> bool: ...
    def open(self, path: str) -> BinaryIO: ...
    def size(self, path: str) -> int: ...
    def close(self) -> None: ...


class DirFiles:
    def __init__(self, root: str) -> None:
        self.root = root

    def _path(self, path: str) -> str:
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if ".." in parts or path.startswith("/"):
            raise ImageError(f"{self.root}: refusing the path {path!r}, which leaves the archive")
        return os.path.join(self.root, *parts)

    def exists(self, path: str) -> bool:
        return os.path.isfile(self._path(path))

    def open(self, path: str) -> BinaryIO:
        try:
            return open(self._path(path), "rb")
        except FileNotFoundError:
            raise ImageError(f"{self.root}: {path} is missing") from None

    def size(self, path: str) -> int:
        return os.path.getsize(self._path(path))

    def close(self) -> None:
        pass


class TarFiles:
    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.tar = tarfile.open(path, "r:*")
        except (tarfile.TarError, OSError) as e:
            raise ImageError(f"{path}: not a readable tar archive ({e})") from None
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in self.tar.getmembers():
            if m.isreg() or m.islnk():
                self.members[os.path.normpath(m.name.lstrip("/"))] = m

    def _member(self, path: str) -> tarfile.TarInfo:
        m = self.members.get(os.path.normpath(path))
        if m is None:
            raise ImageError(f"{self.path}: {path} is missing from the archive")
        return m

    def exists(self, path: str) -> bool:
        return os.path.normpath(path) in self.members

    def open(self, path: str) -> BinaryIO:
        f = self.tar.extractfile(self._member(path))
        assert f is not None
        return f  # type: ignore[return-value]

    def size(self, path: str) -> int:
        return self._member(path).size

    def close(self) -> None:
        self.tar.close()


def open_files(path: str) -> Files:
    if os.path.isdir(path):
        return DirFiles(path)
    if os.path.isfile(path):
        return TarFiles(path)
    raise ImageError(f"{path} does not exist" if not os.path.lexists(path) else f"{path} is not a file or directory")


def read(files: Files, path: str, limit: int = 16 << 20) -> bytes:
    with files.open(path) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ImageError(f"{path} is larger than {limit} bytes: not a manifest or config")
    return data


# -- OCI image layout -------------------------------------------------------

def _blob_path(digest: str) -> str:
    algorithm, _, hex = digest.partition(":")
    if algorithm not in ("sha256", "sha512") or not hex.isalnum():
        raise ImageError(f"bad digest {digest!r}")
    return f"blobs/{algorithm}/{hex}"


def _read_blob(files: Files, desc: dict[str, Any], what: str) -> bytes:
    digest, size = desc.get("digest"), desc.get("size")
    if not isinstance(digest, str):
        raise ImageError(f"{what}: a descriptor without a digest")
    return verify_bytes(read(files, _blob_path(digest)), digest, size if isinstance(size, int) else None, what)


def _resolve_manifest(files: Files, desc: dict[str, Any], wanted: str, where: str, depth: int = 0) -> tuple[dict[str, Any], bytes]:
    """Follow (nested) indexes down to the image manifest for `wanted`."""
    if depth > 8:
        raise ImageError(f"{where}: indexes nested more than 8 deep")
    data = _read_blob(files, desc, "manifest")
    doc = parse_json(data, f"{where}: manifest {desc.get('digest')}")
    media = doc.get("mediaType") or desc.get("mediaType")
    if media in INDEX_TYPES or ("manifests" in doc and "layers" not in doc):
        inner = choose(doc.get("manifests") or [], wanted, f"{where}: index {desc.get('digest')}")
        return _resolve_manifest(files, inner, wanted, where, depth + 1)
    return doc, data


def _image_names(desc: dict[str, Any]) -> list[str]:
    """The names an index entry carries: containerd's full name, or a full ref.name."""
    ann = desc.get("annotations") or {}
    out = []
    for key in (CONTAINERD_NAME, REF_NAME):
        value = ann.get(key)
        if isinstance(value, str) and ("/" in value or ":" in value) and _reference.looks_like_reference(value):
            out.append(_reference.parse(value).tagged())
    return list(dict.fromkeys(out))


def load_layout(
    store: LayerStore, files: Files, where: str, *, name: str | None, platform: str, progress: Progress | None,
    select: str | None = None,
) -> list[ImageRecord]:
    if not files.exists("oci-layout"):
        raise ImageError(f"{where}: no oci-layout file: not an OCI image layout")
    layout = parse_json(read(files, "oci-layout"), f"{where}: oci-layout")
    if not str(layout.get("imageLayoutVersion", "")).startswith("1."):
        raise ImageError(f"{where}: unsupported imageLayoutVersion {layout.get('imageLayoutVersion')!r}")
    index = parse_json(read(files, "index.json"), f"{where}: index.json")
    entries = [d for d in index.get("manifests") or [] if isinstance(d, dict)]
    if not entries:
        raise ImageError(f"{where}: index.json lists no manifests")
    wanted_ref = _reference.parse(name) if name else None
    if any(_platform_of(d) is not None for d in entries):
        # The layout's index is itself a multi-platform list: one image, for our platform.
        entries = [choose(entries, platform, f"{where}: index.json")]
    elif select is not None or (wanted_ref is not None and len(entries) > 1):
        wanted = [select] if select is not None else [wanted_ref.tag or "latest", str(name)]  # type: ignore[union-attr]
        named = [d for d in entries if (d.get("annotations") or {}).get(REF_NAME) in wanted]
        if len(named) != 1:
            refs = ", ".join(str((d.get("annotations") or {}).get(REF_NAME)) for d in entries)
            raise ImageError(f"{where} holds {len(entries)} image(s) ({refs}): none or several are tagged {wanted[0]!r}")
        entries = named
    out = []
    for desc in entries:
        manifest, _ = _resolve_manifest(files, desc, platform, where)
        tags = (wanted_ref.tagged(),) if wanted_ref is not None else tuple(_image_names(desc))
        out.append(_from_manifest(store, files, manifest, where, tags=tags, progress=progress))
    return out


def _from_manifest(
    store: LayerStore, files: Files, manifest: dict[str, Any], where: str, *, tags: tuple[str, ...], progress: Progress | None
) -> ImageRecord:
    config_desc = manifest.get("config")
    if not isinstance(config_desc, dict):
        raise ImageError(f"{where}: the manifest has no config descriptor")
    config_bytes = _read_blob(files, config_desc, "image config")
    config = parse_json(config_bytes, f"{where}: image config")
    ids = diff_ids(config, where)
    descs = manifest.get("layers") or []
    if len(descs) != len(ids):
        raise ImageError(f"{where}: the manifest lists {len(descs)} layers but the config {len(ids)} diff_ids")
    layers = []
    for desc, diff_id in zip(descs, ids):
        digest = desc.get("digest")
        if not isinstance(digest, str):
            raise ImageError(f"{where}: a layer descriptor without a digest")
        path = _blob_path(digest)
        layers.append(LayerSource(
            open=functools.partial(files.open, path), blob=digest, size=desc.get("size"), diff_id=diff_id,
            name=digest,
        ))
    return record_image(store, config_bytes, layers, tags=tags, source=where, manifest=manifest, progress=progress)


# -- docker save ------------------------------------------------------------

def load_docker_archive(
    store: LayerStore, files: Files, where: str, *, name: str | None, progress: Progress | None
) -> list[ImageRecord]:
    entries = json.loads(read(files, "manifest.json"))
    if not isinstance(entries, list) or not entries:
        raise ImageError(f"{where}: manifest.json is not a list of images")
    out = []
    for entry in entries:
        config_path = entry.get("Config")
        layer_paths = entry.get("Layers")
        if not isinstance(config_path, str) or not isinstance(layer_paths, list):
            raise ImageError(f"{where}: a manifest.json entry without Config and Layers")
        config_bytes = read(files, config_path)
        # The config's file is named by its digest: <hex>.json (legacy) or blobs/sha256/<hex>.
        hex = os.path.basename(config_path).removesuffix(".json")
        verify_bytes(config_bytes, f"sha256:{digest_hex('sha256:' + hex, f'{where}: config file {config_path}')}", None,
                     f"{where}: image config")
        config = parse_json(config_bytes, f"{where}: image config")
        ids = diff_ids(config, where)
        if len(ids) != len(layer_paths):
            raise ImageError(f"{where}: {len(layer_paths)} layers in manifest.json but {len(ids)} diff_ids in the config")
        layers = []
        for path, diff_id in zip(layer_paths, ids):
            # blobs/sha256/<hex> (newer docker) names the blob; <id>/layer.tar (legacy) names nothing.
            parts = path.split("/")
            blob = f"sha256:{parts[2]}" if len(parts) == 3 and parts[:2] == ["blobs", "sha256"] else None
            layers.append(LayerSource(
                open=functools.partial(files.open, path), blob=blob, size=files.size(path), diff_id=diff_id, name=path,
            ))
        tags = tuple(_reference.parse(t).tagged() for t in entry.get("RepoTags") or [])
        if name:
            tags = (_reference.parse(name).tagged(),)
        out.append(record_image(store, config_bytes, layers, tags=tags, source=where, progress=progress))
    return out


def load(
    store: LayerStore, path: str, *, name: str | None = None, platform: str | None = None,
    progress: Progress | None = None, select: str | None = None,
) -> list[ImageRecord]:
    """Load every image of a docker archive or OCI layout (dir or tar) into the store."""
    files = open_files(path)
    try:
        with store.loading():
            if files.exists("manifest.json"):
                return load_docker_archive(store, files, path, name=name, progress=progress)
            if files.exists("index.json"):
                return load_layout(store, files, path, name=name, platform=platform or host_platform(), progress=progress,
                                   select=select)
            raise ImageError(f"{path}: neither a docker archive (manifest.json) nor an OCI layout (index.json)")
    finally:
        files.close()


# -- a root filesystem tarball ---------------------------------------------

def import_rootfs(
    store: LayerStore, path: str, name: str | None, *, config: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> ImageRecord:
    """One-layer image from a tarball (gzip, zstd or plain), like docker import."""
    tags = (_reference.parse(name).tagged(),) if name else ()
    if not os.path.isfile(path):
        raise ImageError(f"{path}: no such file to import")
    size = os.path.getsize(path)
    opener: Callable[[], BinaryIO] = lambda: open(path, "rb")
    if progress is not None:
        opener = lambda: _Counter(open(path, "rb"), os.path.basename(path), size, progress)  # type: ignore[assignment,return-value]
    with store.loading():
        diff_id = store.add_layer(opener, diff_id=None, name=os.path.basename(path))
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        doc = {
            "architecture": host_platform().split("/")[1], "os": "linux", "created": now,
            "config": config or {}, "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": now, "created_by": f"fastcontain import {os.path.basename(path)}"}],
        }
        config_bytes = json.dumps(doc, sort_keys=True).encode()
        record = ImageRecord(
            id=sha256(config_bytes), config=doc, layers=(diff_id,), tags=tags, source=path, created=time.time(),
        )
        return store.put_image(record)
