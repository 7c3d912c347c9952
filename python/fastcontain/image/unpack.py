"""Unpack one layer (a tar stream, gzip, zstd or plain) into one empty directory, confined to it.

The result is an overlayfs lower directory: OCI whiteouts become overlayfs's own
form (`.wh.NAME` -> a 0/0 character device NAME; `.wh..wh..opq` -> the
`trusted.overlay.opaque` xattr on its directory), so layers stack by mounting
them as lowerdirs.

Confinement: every path is resolved one component at a time from an open
directory descriptor with O_NOFOLLOW, never by joining strings. Parents must be
real directories of this layer: an entry whose path climbs through a symlink (or
names `..`, or is absolute) is refused, not followed, so nothing outside the
layer's directory can be reached however the tar is crafted. Files are created
with O_EXCL after removing what was there, so a later entry replaces an earlier
symlink instead of writing through it. Hard links name a target in this layer by
the same rules.

A refused or failed layer raises ImageError naming the layer and the entry; the
caller (store.py) unpacks into a temporary directory and removes it.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass
from typing import IO, BinaryIO, Callable

from ..errors import ImageError

# A single entry, or the layer as a whole, larger than this is absurd whatever the disk.
MAX_ENTRY_SIZE = 1 << 40
# xattrs taken from a layer: file capabilities, ACLs and user attributes. trusted.* (overlayfs's
# own metadata: a layer must not forge redirects or opaque marks) and security.selinux are dropped.
XATTR_PREFIXES = ("security.capability", "user.", "system.posix_acl_access", "system.posix_acl_default")
OPAQUE_XATTR = "trusted.overlay.opaque"
# A rootless store's mark (its overlay is mounted in a user namespace with userxattr:
# rootless.py); a layer's own user.overlay.* are dropped like trusted.*.
USER_OPAQUE_XATTR = "user.overlay.opaque"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20
_GZIP, _ZSTD = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"


def _corrupt_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (EOFError, zlib.error, gzip.BadGzipFile)
    try:
        import zstandard

        errors += (zstandard.ZstdError,)
    except ImportError:  # pragma: no cover
        pass
    return errors


CORRUPT = _corrupt_errors()
"""What a decompressor raises on damaged data."""


@dataclass
class Stats:
    entries: int = 0
    bytes: int = 0  # regular files' data written


class DigestReader(io.RawIOBase):
    """Reads through `raw`, hashing and counting; `verify()` checks the digest and size."""

    def __init__(self, raw: IO[bytes], digest: str | None, size: int | None, what: str) -> None:
        self.raw, self.digest, self.size, self.what = raw, digest, size, what
        algorithm = (digest or "sha256:").partition(":")[0]
        if algorithm not in ("sha256", "sha512"):
            raise ImageError(f"{what}: unsupported digest algorithm in {digest!r} (sha256 and sha512 are)")
        self.hash = hashlib.new(algorithm)
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self.hash.update(memoryview(buffer)[:n])
            self.count += n
            if self.size is not None and self.count > self.size:
                raise ImageError(f"{self.what}: larger than its recorded size of {self.size} bytes")
        return n or 0

    def drain(self) -> None:
        buf = bytearray(_CHUNK)
        while self.readinto(buf):
            pass

    @property
    def actual(self) -> str:
        return f"{self.hash.name}:{self.hash.hexdigest()}"

    def verify(self) -> None:
        self.drain()
        if self.size is not None and self.count != self.size:
            raise ImageError(f"{self.what}: {self.count} bytes, but its descriptor says {self.size}")
        if self.digest is not None and self.actual != self.digest:
            raise ImageError(f"{self.what}: its content has digest {self.actual}, expected {self.digest}")


def decompressed(raw: IO[bytes], what: str) -> IO[bytes]:
    """`raw` read through gzip or zstd when its first bytes say so, else as it is."""
    buffered = io.BufferedReader(raw, _CHUNK) if not isinstance(raw, io.BufferedReader) else raw  # type: ignore[arg-type,type-var]
    magic = buffered.peek(4)[:4]
    if magic[:2] == _GZIP:
        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    if magic == _ZSTD:
        try:
            import zstandard
        except ImportError:  # pragma: no cover - a declared dependency
            raise ImageError(f"{what} is zstd-compressed: install the zstandard package") from None
        return zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True)  # type: ignore[return-value]
    return buffered


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


class _NotDirectory(_Refused):
    """A parent in the path is a file or a symlink of this layer."""


def split_name(name: str) -> list[str]:
    """A tar name's components, refusing what could leave the layer. [] is the root."""
    if name.startswith("/"):
        raise _Refused("an absolute name")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _Refused("a '..' component")
    return parts


class _Tree:
    """The layer directory, reached only through descriptors."""

    def __init__(self, root: str) -> None:
        self.root_fd = os.open(root, _DIR_FLAGS)
        self.dirs: dict[str, int] = {}  # "a/b" -> an open fd of that directory of the layer

    def close(self) -> None:
        for fd in self.dirs.values():
            os.close(fd)
        self.dirs.clear()
        os.close(self.root_fd)

    def trim(self) -> None:
        """Bound the cache; called between entries, when no cached fd is in use."""
        if len(self.dirs) >= 512:
            for fd in self.dirs.values():
                os.close(fd)
            self.dirs.clear()

    def forget(self, prefix: str) -> None:
        """Drop cached descriptors at and below `prefix` (it is being removed or replaced)."""
        for key in [k for k in self.dirs if k == prefix or k.startswith(prefix + "/")]:
            os.close(self.dirs.pop(key))

    def dir_fd(self, parts: list[str], create: bool) -> int:
        """The descriptor of the directory `parts` (each one a real directory of the layer)."""
        fd = self.root_fd
        for i, comp in enumerate(parts):
            key = "/".join(parts[: i + 1])
            cached = self.dirs.get(key)
            if cached is not None:
                fd = cached
                continue
            try:
                new = os.open(comp, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise _Refused(f"{key} does not exist in this layer") from None
                os.mkdir(comp, 0o755, dir_fd=fd)  # an implicit parent, as docker makes them
                new = os.open(comp, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                st = os.stat(comp, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    target = os.readlink(comp, dir_fd=fd)
                    raise _NotDirectory(f"its path climbs through the symlink {key} -> {target}") from None
                raise _NotDirectory(f"its parent {key} is not a directory") from None
            self.dirs[key] = new
            fd = new
        return fd


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove(tree: _Tree, parent: int, name: str, key: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        tree.forget(key)
        shutil.rmtree(name, dir_fd=parent)
    else:
        os.unlink(name, dir_fd=parent)


def _xattrs(member: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    out = []
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            name = key[len("SCHILY.xattr."):]
            if name.startswith(XATTR_PREFIXES) and not name.startswith("user.overlay."):
                out.append((name, value.encode("utf-8", "surrogateescape")))
    return out


def _is_whiteout_device(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


class Unpacker:
    """Unpack tar streams into `dest`, an empty directory the caller owns."""

    def __init__(self, dest: str, layer: str, *, progress: Callable[[int], None] | None = None) -> None:
        self.dest, self.layer, self.progress = dest, layer, progress
        self.root = os.geteuid() == 0
        self.opaque_xattr = OPAQUE_XATTR if self.root else USER_OPAQUE_XATTR
        self.stats = Stats()
        self.complete = True  # the last entry was read to its end
        vfs = os.statvfs(dest)
        self.room = min(MAX_ENTRY_SIZE, vfs.f_bavail * vfs.f_frsize)

    def error(self, name: str, reason: str) -> ImageError:
        return ImageError(f"layer {self.layer}: entry {name!r}: {reason}; the layer was not kept")

    def unpack(self, stream: IO[bytes]) -> Stats:
        tree = _Tree(self.dest)
        dir_times: list[tuple[list[str], int]] = []
        try:
            try:
                tar = tarfile.open(fileobj=stream, mode="r|", bufsize=_CHUNK)  # type: ignore[call-overload]
            except tarfile.ReadError as e:
                raise ImageError(f"layer {self.layer}: not a tar archive ({e})") from None
            except CORRUPT as e:
                raise ImageError(f"layer {self.layer}: its compressed data is corrupt ({e}); the layer was not kept") from None
            member = None
            try:
                members = iter(tar)
                while True:
                    try:
                        member = next(members)
                    except StopIteration:
                        break
                    except tarfile.ReadError:
                        # umoci 0.4's `insert` writes layers without the final padding and
                        # end-of-archive blocks: once the last entry's data is complete, EOF there ends it.
                        if member is not None and self.complete and stream.read(1) == b"":
                            break
                        raise
                    self.complete = False
                    self._entry(tree, tar, member, dir_times)
                    self.complete = True
            except _Refused as e:
                raise self.error(member.name if member else "?", e.reason) from None
            except CORRUPT as e:
                raise ImageError(f"layer {self.layer}: its compressed data is corrupt ({e}); the layer was not kept") from None
            except tarfile.TarError as e:
                where = f"after entry {member.name!r}" if member else "at its start"
                raise ImageError(f"layer {self.layer}: a broken tar archive {where}: {e}") from None
            except OSError as e:
                if isinstance(e, ImageError):
                    raise
                raise self.error(member.name if member else "?", f"{e.strerror or e} ({errno.errorcode.get(e.errno or 0, '?')})") from None
            for parts, mtime in reversed(dir_times):
                try:
                    fd = tree.dir_fd(parts, create=False) if parts else tree.root_fd
                    os.utime(fd, ns=(mtime, mtime))
                except (_Refused, OSError):
                    pass  # removed or replaced by a later entry
        finally:
            tree.close()
        return self.stats

    def _entry(self, tree: _Tree, tar: tarfile.TarFile, m: tarfile.TarInfo, dir_times: list[tuple[list[str], int]]) -> None:
        self.stats.entries += 1
        tree.trim()
        parts = split_name(m.name)
        mtime = int(m.mtime * 1_000_000_000) if m.mtime >= 0 else 0
        if not parts:
            if not m.isdir():
                raise _Refused("the layer's root must be a directory")
            self._meta_fd(tree.root_fd, m)
            dir_times.append(([], mtime))
            return
        if m.size < 0 or m.size > self.room - self.stats.bytes:
            raise _Refused(f"its size of {m.size} bytes is absurd (more than the {self.room - self.stats.bytes} "
                           "bytes left for this layer)")
        base, key = parts[-1], "/".join(parts)
        if base.startswith(WHITEOUT):
            try:
                parent = tree.dir_fd(parts[:-1], create=True)
            except _NotDirectory:
                # Below a file or symlink of this layer (umoci writes these when a directory
                # became a file): that non-directory already hides the lower layers' tree.
                return
            self._whiteout(tree, parent, parts, base)
            return
        parent = tree.dir_fd(parts[:-1], create=True)
        existing = _lstat(base, parent)
        if m.isdir():
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                _remove(tree, parent, base, key, existing)
                existing = None
            if existing is None:
                os.mkdir(base, 0o700, dir_fd=parent)
            fd = tree.dir_fd(parts, create=False)
            self._meta_fd(fd, m)
            dir_times.append((parts, mtime))
            return
        if existing is not None:
            _remove(tree, parent, base, key, existing)
        if m.isreg():
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
            try:
                src = tar.extractfile(m)
                assert src is not None
                left = m.size
                while left > 0:
                    chunk = src.read(min(left, _CHUNK))
                    if not chunk:
                        raise tarfile.ReadError("unexpected end of data")
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                    left -= len(chunk)
                    self.stats.bytes += len(chunk)
                    if self.progress is not None:
                        self.progress(len(chunk))
                self._meta_fd(fd, m)
                os.utime(fd, ns=(mtime, mtime))
            finally:
                os.close(fd)
        elif m.issym():
            os.symlink(m.linkname, base, dir_fd=parent)
            if self.root:
                os.chown(base, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
            for name, value in _xattrs(m):
                if name.startswith("user."):
                    continue  # the kernel allows user.* on regular files and directories only
                os.setxattr(f"/proc/self/fd/{parent}/{base}", name, value, follow_symlinks=False)
            os.utime(base, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
        elif m.islnk():
            try:
                target = split_name(m.linkname)
            except _Refused as e:
                raise _Refused(f"a hard link to {m.linkname!r}: {e.reason}") from None
            if not target:
                raise _Refused("a hard link to the layer's root")
            try:
                tparent = tree.dir_fd(target[:-1], create=False)
            except _Refused as e:
                raise _Refused(f"a hard link to {m.linkname!r}: {e.reason}") from None
            tst = _lstat(target[-1], tparent)
            if tst is None:
                raise _Refused(f"a hard link to {m.linkname!r}, which is not in this layer")
            if stat.S_ISDIR(tst.st_mode):
                raise _Refused(f"a hard link to the directory {m.linkname!r}")
            os.link(target[-1], base, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)
        elif m.ischr() or m.isblk() or m.isfifo():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
            device = os.makedev(m.devmajor, m.devminor) if kind != stat.S_IFIFO else 0
            # As runc and podman do as root: the node as the layer says (creating one is harmless;
            # what a container may open is its device cgroup's business).
            os.mknod(base, kind | 0o600, device, dir_fd=parent)
            if self.root:
                os.chown(base, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
            # It was just made by us under a descriptor, so following its (non-link) name is safe.
            os.chmod(base, stat.S_IMODE(m.mode), dir_fd=parent)
            os.utime(base, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
        else:
            raise _Refused(f"an entry of unsupported tar type {m.type!r}")

    def _meta_fd(self, fd: int, m: tarfile.TarInfo) -> None:
        if self.root:
            os.fchown(fd, m.uid, m.gid)  # before chmod: chown clears set-id bits
        os.fchmod(fd, stat.S_IMODE(m.mode))
        for name, value in _xattrs(m):
            os.setxattr(fd, name, value)

    def _whiteout(self, tree: _Tree, parent: int, parts: list[str], base: str) -> None:
        if base == OPAQUE:
            os.setxattr(parent, self.opaque_xattr, b"y")
            return
        if base.startswith(OPAQUE[:8]):  # .wh..wh.*: aufs' own metadata (hard-link dirs), not content
            return
        name = base[len(WHITEOUT):]
        if name in ("", ".", ".."):
            raise _Refused("a whiteout that names its parent directory")
        existing = _lstat(name, parent)
        if existing is not None:
            # A whiteout hides only the lower layers: what this layer has stays, and a
            # directory of this layer stops showing the lower layers' (it becomes opaque).
            if stat.S_ISDIR(existing.st_mode):
                os.setxattr(tree.dir_fd(parts[:-1] + [name], create=False), self.opaque_xattr, b"y")
            return
        os.mknod(name, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=parent)


def unpack_stream(stream: IO[bytes], dest: str, layer: str, progress: Callable[[int], None] | None = None) -> Stats:
    """Unpack the (possibly compressed) tar `stream` into the empty directory `dest`."""
    return Unpacker(dest, layer, progress=progress).unpack(decompressed(stream, f"layer {layer}"))


def open_verified(
    raw: BinaryIO, *, blob: str | None, size: int | None, diff_id: str | None, what: str
) -> tuple[IO[bytes], Callable[[], str]]:
    """`raw` decompressed, with its digest (blob) and the uncompressed digest (diff_id)
    checked by the returned `finish()`, which drains both streams and returns the diff_id.
    Call it only after the tar was read; it raises ImageError on a mismatch."""
    outer = DigestReader(raw, blob, size, f"blob {blob or what}")
    inner_raw = decompressed(outer, what)  # type: ignore[arg-type]
    inner = DigestReader(inner_raw, diff_id, None, f"the uncompressed content of {what} (diff_id)")
    reader = io.BufferedReader(inner, _CHUNK)

    def finish() -> str:
        try:
            inner.verify()
        except CORRUPT as e:
            raise ImageError(f"{what} (blob {blob or 'unnamed'}): its compressed data is corrupt ({e})") from None
        outer.verify()
        return inner.actual

    return reader, finish
