"""Layer unpacking with hand-made tars: what a layer keeps, how whiteouts become overlayfs's,
and every hostile layer refused, naming the layer and the entry, with nothing kept and
nothing outside the store touched."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path
from typing import Any, Callable

import pytest

from fastcontain import ImageError
from fastcontain.image import lookup_layered
from fastcontain.image.layers import LayerStore
from fastcontain.image.unpack import OPAQUE_XATTR

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: chown, mknod and trusted.* xattrs")


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **attrs: Any) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode = attrs.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
    info.mtime = attrs.pop("mtime", 1_600_000_000)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def make_tar(*entries: tuple[tarfile.TarInfo, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def add(store: LayerStore, data: bytes, *, diff_id: str | None = None, **kw: Any) -> str:
    return store.add_layer(lambda: io.BytesIO(data), diff_id=diff_id, **kw)


@pytest.fixture
def store(tmp_path: Path) -> LayerStore:
    return LayerStore(str(tmp_path / "fastcontain-store"))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A host folder a hostile layer tries to reach; it must stay as it is."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "victim").write_text("original\n")
    return d


def nothing_kept(store: LayerStore) -> None:
    assert os.listdir(store.layers_dir) == [] or all(n.startswith(".lock-") for n in os.listdir(store.layers_dir))


def untouched(outside: Path) -> None:
    assert sorted(os.listdir(outside)) == ["victim"]
    assert (outside / "victim").read_text() == "original\n"


# -- what a layer keeps ---------------------------------------------------------------

@root_only
def test_files_keep_mode_owner_mtime_links_xattrs_and_devices(store: LayerStore) -> None:
    cap = b"\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"  # cap_net_bind_service+ep
    tar = make_tar(
        entry("./", tarfile.DIRTYPE, mode=0o755),
        entry("bin/", tarfile.DIRTYPE, mode=0o711, uid=12, gid=34, mtime=1_500_000_000),
        entry("bin/tool", data=b"#!/bin/sh\n", mode=0o4755, uid=0, gid=0,
              pax_headers={"SCHILY.xattr.security.capability": cap.decode("utf-8", "surrogateescape"),
                           "SCHILY.xattr.trusted.overlay.redirect": "/etc"}),
        entry("bin/owned", data=b"x", mode=0o640, uid=1000, gid=2000, mtime=1_234_567_890),
        entry("bin/link", tarfile.SYMTYPE, linkname="/bin/tool", uid=5, gid=6),
        entry("bin/hard", tarfile.LNKTYPE, linkname="bin/owned"),
        entry("dev/", tarfile.DIRTYPE),
        entry("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
        entry("dev/fifo", tarfile.FIFOTYPE, mode=0o620),
        entry("no/parent/file", data=b"deep"),
    )
    root = Path(store.layer_root(add(store, tar, diff_id=digest(tar), name="keep")))
    tool = os.lstat(root / "bin/tool")
    assert stat.S_IMODE(tool.st_mode) == 0o4755 and (root / "bin/tool").read_bytes() == b"#!/bin/sh\n"
    assert os.getxattr(root / "bin/tool", "security.capability") == cap
    assert "trusted.overlay.redirect" not in os.listxattr(root / "bin/tool")  # a layer cannot forge overlay metadata
    owned = os.lstat(root / "bin/owned")
    assert (owned.st_uid, owned.st_gid, stat.S_IMODE(owned.st_mode), owned.st_mtime) == (1000, 2000, 0o640, 1_234_567_890)
    bindir = os.lstat(root / "bin")
    assert (bindir.st_uid, bindir.st_gid, stat.S_IMODE(bindir.st_mode), bindir.st_mtime) == (12, 34, 0o711, 1_500_000_000)
    assert os.readlink(root / "bin/link") == "/bin/tool" and os.lstat(root / "bin/link").st_uid == 5
    assert os.lstat(root / "bin/hard").st_ino == owned.st_ino and owned.st_nlink == 2
    null = os.lstat(root / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3) and stat.S_IMODE(null.st_mode) == 0o666
    assert stat.S_ISFIFO(os.lstat(root / "dev/fifo").st_mode)
    assert (root / "no/parent/file").read_bytes() == b"deep" and stat.S_IMODE(os.lstat(root / "no").st_mode) == 0o755
    info = store.layer_info(digest(tar))
    assert info["entries"] == 10 and info["bytes"] == len(b"#!/bin/sh\n") + 1 + 4


@root_only
def test_whiteouts_become_overlayfs_whiteouts_and_opaque_dirs(store: LayerStore) -> None:
    lower = make_tar(entry("etc/", tarfile.DIRTYPE), entry("etc/gone", data=b"1"), entry("etc/kept", data=b"1"),
                     entry("opq/", tarfile.DIRTYPE), entry("opq/old", data=b"1"))
    upper = make_tar(
        entry("etc/.wh.gone"),
        entry("opq/", tarfile.DIRTYPE), entry("opq/.wh..wh..opq"), entry("opq/new", data=b"2"),
        entry("same/", tarfile.DIRTYPE), entry("same/mine", data=b"3"), entry(".wh.same"),  # hides only lower layers
        entry(".wh..wh.plnk"),  # aufs metadata: ignored
    )
    low = store.layer_root(add(store, lower, diff_id=digest(lower), name="lower"))
    up = store.layer_root(add(store, upper, diff_id=digest(upper), name="upper"))
    gone = os.lstat(os.path.join(up, "etc/gone"))
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(os.path.join(up, "opq"), OPAQUE_XATTR) == b"y"
    assert os.getxattr(os.path.join(up, "same"), OPAQUE_XATTR) == b"y"
    assert os.path.exists(os.path.join(up, "same/mine"))
    assert not [n for n in os.listdir(up) if n.startswith(".wh.")]
    layers = (up, low)  # topmost first, as overlayfs takes them
    assert lookup_layered(layers, ("etc", "gone")) is None
    assert lookup_layered(layers, ("etc", "kept")) == os.path.join(low, "etc/kept")
    assert lookup_layered(layers, ("opq", "old")) is None
    assert lookup_layered(layers, ("opq", "new")) == os.path.join(up, "opq/new")


@pytest.mark.parametrize("compress", ["plain", "gzip", "zstd"])
def test_compressions_and_digests(store: LayerStore, compress: str) -> None:
    tar = make_tar(entry("hello", data=b"hi\n"))
    if compress == "gzip":
        blob = gzip.compress(tar)
    elif compress == "zstd":
        import zstandard

        blob = zstandard.ZstdCompressor().compress(tar)
    else:
        blob = tar
    diff_id = add(store, blob, diff_id=digest(tar), blob=digest(blob), size=len(blob), name="c")
    assert Path(store.layer_root(diff_id), "hello").read_bytes() == b"hi\n"
    # the same layer again (another compression, another process) is not unpacked twice
    assert add(store, gzip.compress(tar), diff_id=digest(tar)) == diff_id


@pytest.mark.parametrize("wrong", ["blob", "size", "diff_id"])
def test_a_digest_or_size_mismatch_names_the_blob_and_keeps_nothing(store: LayerStore, wrong: str) -> None:
    tar = make_tar(entry("file", data=b"content"))
    blob = gzip.compress(tar)
    kw: dict[str, Any] = {"diff_id": digest(tar), "blob": digest(blob), "size": len(blob)}
    bad = "sha256:" + "0" * 64
    kw[wrong] = {"blob": bad, "size": len(blob) - 1, "diff_id": bad}[wrong]
    with pytest.raises(ImageError) as e:
        add(store, blob, name="mismatch", **kw)
    if wrong == "diff_id":
        assert "diff_id" in str(e.value) and bad in str(e.value)
    else:
        assert f"blob {digest(blob) if wrong == 'size' else bad}" in str(e.value)
    nothing_kept(store)


def test_a_crashed_unpack_is_never_taken_for_a_layer(store: LayerStore) -> None:
    tar = make_tar(entry("file", data=b"content"))
    hex = digest(tar).partition(":")[2]
    crashed = Path(store.layers_dir, f".tmp-{hex}-crashed")
    (crashed / "root").mkdir(parents=True)
    assert not store.has_layer(digest(tar))
    add(store, tar, diff_id=digest(tar))
    assert not crashed.exists() and store.has_layer(digest(tar))


def test_concurrent_loads_of_one_layer_from_threads_and_processes(store: LayerStore) -> None:
    import concurrent.futures
    import multiprocessing

    tar = make_tar(*[entry(f"d{i}/f{j}", data=b"x" * 4096) for i in range(20) for j in range(20)])
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: add(store, tar, diff_id=digest(tar)), range(8)))
    assert set(results) == {digest(tar)}
    tar2 = make_tar(*[entry(f"p{i}", data=b"y" * 1000) for i in range(300)])
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=add, args=(store, tar2), kwargs={"diff_id": digest(tar2)}) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 4
    assert sorted(n for n in os.listdir(store.layers_dir) if not n.startswith(".lock-")) == sorted(
        [digest(tar)[7:], digest(tar2)[7:]]
    )
    assert len(os.listdir(store.layer_root(digest(tar2)))) == 300


# -- hostile layers -------------------------------------------------------------------

Hostile = Callable[[Path], bytes]
HOSTILE: dict[str, tuple[Hostile, str, str]] = {
    # name: (the tar, the entry the error names, what it says)
    "dotdot": (lambda out: make_tar(entry("ok", data=b"1"), entry(f"a/../../{out.name}/victim", data=b"pwned")),
               "a/../../outside/victim", "'..'"),
    "dotdot-deep": (lambda out: make_tar(entry("../" * 20 + str(out)[1:] + "/new", data=b"x")), "../", "'..'"),
    "absolute": (lambda out: make_tar(entry(str(out / "victim"), data=b"pwned")), str(Path("outside/victim")), "absolute"),
    "symlink-out-then-through": (
        lambda out: make_tar(entry("link", tarfile.SYMTYPE, linkname=str(out)), entry("link/victim", data=b"pwned")),
        "link/victim", "climbs through the symlink link -> "),
    "relative-symlink-out-then-through": (
        lambda out: make_tar(entry("up", tarfile.SYMTYPE, linkname="../../../../../../../../" + str(out)[1:]),
                             entry("up/new", data=b"pwned")),
        "up/new", "climbs through the symlink up -> "),
    "climb-through-inner-symlink": (
        lambda out: make_tar(entry("real/", tarfile.DIRTYPE), entry("alias", tarfile.SYMTYPE, linkname="real"),
                             entry("alias/x", data=b"1")),
        "alias/x", "climbs through the symlink alias -> real"),
    "dir-symlink-out-then-mkdir-through": (
        lambda out: make_tar(entry("d", tarfile.SYMTYPE, linkname=str(out)), entry("d/sub/", tarfile.DIRTYPE)),
        "'d/sub'", "climbs through the symlink d"),
    "hardlink-out-dotdot": (
        lambda out: make_tar(entry("h", tarfile.LNKTYPE, linkname=f"../../{out.name}/victim")),
        "'h'", "hard link"),
    "hardlink-out-absolute": (
        lambda out: make_tar(entry("h", tarfile.LNKTYPE, linkname=str(out / "victim"))), "'h'", "absolute"),
    "hardlink-through-symlink": (
        lambda out: make_tar(entry("link", tarfile.SYMTYPE, linkname=str(out)), entry("h", tarfile.LNKTYPE, linkname="link/victim"),
                             entry("h", data=b"pwned")),
        "'h'", "climbs through the symlink link"),
    "whiteout-parent": (lambda out: make_tar(entry("dir/", tarfile.DIRTYPE), entry("dir/.wh..")), "dir/.wh..", "names its parent"),
    "whiteout-self": (lambda out: make_tar(entry(".wh.")), ".wh.", "names its parent"),
    "absurd-size": (lambda out: _absurd(), "huge", "absurd"),
}


def _absurd() -> bytes:
    info = tarfile.TarInfo("huge")
    info.size = 1 << 50
    return info.tobuf(tarfile.GNU_FORMAT) + b"x" * 1024


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layers_are_refused_and_nothing_is_kept(store: LayerStore, outside: Path, case: str) -> None:
    make, named, says = HOSTILE[case]
    if case.startswith("whiteout") and os.geteuid() != 0:
        pytest.skip("needs root: whiteouts are device nodes")
    tar = make(outside)
    with pytest.raises(ImageError) as e:
        add(store, tar, diff_id=digest(tar), name=f"hostile-{case}")
    message = str(e.value)
    assert f"layer hostile-{case}: entry" in message and named in message and says in message, message
    assert "not kept" in message
    nothing_kept(store)
    untouched(outside)


def test_a_later_entry_replaces_a_symlink_instead_of_writing_through_it(store: LayerStore, outside: Path) -> None:
    tar = make_tar(entry("victim", tarfile.SYMTYPE, linkname=str(outside / "victim")), entry("victim", data=b"mine"),
                   entry("h", tarfile.SYMTYPE, linkname=str(outside / "victim")), entry("h", tarfile.LNKTYPE, linkname="victim"))
    root = Path(store.layer_root(add(store, tar, diff_id=digest(tar))))
    assert not (root / "victim").is_symlink() and (root / "victim").read_bytes() == b"mine"
    assert os.lstat(root / "h").st_ino == os.lstat(root / "victim").st_ino
    untouched(outside)


def test_not_a_tar_and_a_truncated_tar(store: LayerStore) -> None:
    with pytest.raises(ImageError, match="layer junk: not a tar archive"):
        add(store, b"\x00garbage" * 100, name="junk")
    tar = make_tar(entry("big", data=b"z" * 100_000))
    with pytest.raises(ImageError, match="layer cut: .*(broken tar|unexpected end)"):
        add(store, tar[:50_000], name="cut")
    nothing_kept(store)


@pytest.mark.parametrize("where", [0.1, 0.5, 0.95])
def test_a_corrupt_gzip_layer_names_the_blob(store: LayerStore, where: float) -> None:
    import random

    tar = make_tar(*[entry(f"f{i}", data=random.Random(i).randbytes(3000)) for i in range(30)])
    blob = bytearray(gzip.compress(tar))
    blob[int(len(blob) * where)] ^= 0xFF
    with pytest.raises(ImageError, match=f"blob {digest(bytes(blob))}|layer {digest(bytes(blob))}"):
        add(store, bytes(blob), diff_id=digest(tar), blob=digest(bytes(blob)), size=len(blob), name=digest(bytes(blob)))
    nothing_kept(store)
