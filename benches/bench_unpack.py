"""Unpacking one OCI image (built by umoci: busybox, then a layer of 2,000 files in 100
directories, ~45 MB, text-like and random) by fastcontain's layer store and by `umoci unpack`, in the
same run, reported as a ratio; and a container started from the cached image, which must
unpack and copy nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pytest
import report

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import imagetools  # noqa: E402

UNPACKERS = ("umoci", "fastcontain")  # umoci first: the ratio to it goes in the JSON too
GROUP = "unpack an OCI image (busybox + Python stdlib layers)"
report.declare(GROUP, base="umoci", order=UNPACKERS)
_ids = count()


@pytest.fixture(scope="module")
def layout(workdir: Path) -> Path:
    imagetools.need("umoci")
    base = workdir / "unpack-image"
    rootfs = imagetools.busybox_rootfs(base / "rootfs")
    layout = base / "oci"
    imagetools.run("umoci", "init", "--layout", layout)
    imagetools.run("umoci", "new", "--image", f"{layout}:bench")
    imagetools.run("umoci", "insert", "--image", f"{layout}:bench", rootfs, "/")
    imagetools.run("umoci", "insert", "--image", f"{layout}:bench", synthetic_tree(base / "tree"), "/usr/lib/data")
    return layout


def synthetic_tree(root: Path) -> Path:
    """2,000 files in 100 directories: mostly small compressible text (sizes 1-64 KiB, like a
    distribution's /usr), ten 2 MiB random files, and a symlink per directory. Deterministic."""
    import random

    rng = random.Random(0)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(500)]
    for d in range(100):
        folder = root / f"d{d:03}"
        folder.mkdir(parents=True)
        for f in range(20):
            size = rng.choice((1, 2, 4, 8, 16, 64)) * 1024
            text = b" ".join(rng.choice(words) for _ in range(size // 5))[:size]
            (folder / f"f{f:02}.txt").write_bytes(text)
        os.symlink("f00.txt", folder / "link")
    for i in range(10):
        (root / f"blob{i}.bin").write_bytes(rng.randbytes(2 << 20))
    return root


@pytest.fixture
def scratch(workdir: Path) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fastcontain-unpack-", dir=workdir))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _fastcontain(layout: Path, scratch: Path) -> None:
    import fastcontain.images as images

    store = scratch / f"store-{next(_ids)}"
    [image] = images.load(str(layout), "bench/unpack:1", store=str(store))
    assert len(image.layers) == 2 and (store / "layers" / image.layers[1][7:] / "root/usr/lib/data/d099/f19.txt").is_file()


def _umoci(layout: Path, scratch: Path) -> None:
    bundle = scratch / f"bundle-{next(_ids)}"
    r = subprocess.run(["umoci", "unpack", "--image", f"{layout}:bench", str(bundle)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (bundle / "rootfs/usr/lib/data/d099/f19.txt").is_file()


@pytest.mark.parametrize("unpacker", UNPACKERS)
def test_unpack_image(benchmark, layout: Path, scratch: Path, unpacker: str) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = GROUP
    run = {"fastcontain": _fastcontain, "umoci": _umoci}[unpacker]
    benchmark.extra_info.update(unpacker=unpacker, correct=True)  # each run asserts its output is there

    def clean() -> None:
        # The previous round's output is removed, and everything written back, outside the
        # timing: otherwise one runner's dirty pages slow the next one's writes.
        for entry in os.listdir(scratch):
            shutil.rmtree(scratch / entry)
        os.sync()

    benchmark.pedantic(run, args=(layout, scratch), setup=clean, rounds=5, warmup_rounds=1)
    report.record(benchmark, unpacker)


def test_start_from_a_cached_image_unpacks_and_copies_nothing(benchmark, layout: Path, scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import fastcontain
    import fastcontain.images as images
    from fastcontain.image import unpack

    store = scratch / "fastcontain-store"
    monkeypatch.setenv("FASTCONTAIN_STORE", str(store))
    images.load(str(layout), "bench/cached:1")

    def snapshot() -> dict[str, tuple[int, int, int]]:
        out = {}
        for dirpath, dirnames, filenames in os.walk(store / "layers"):
            for name in dirnames + filenames:
                st = os.lstat(os.path.join(dirpath, name))
                out[os.path.join(dirpath, name)] = (st.st_ino, st.st_mtime_ns, st.st_blocks)
        return out

    before = snapshot()
    calls: list[str] = []
    real = unpack.Unpacker.unpack
    monkeypatch.setattr(unpack.Unpacker, "unpack", lambda self, s: calls.append(self.layer) or real(self, s))
    copies: list[str] = []
    for name in ("copyfile", "copy", "copy2", "copytree"):
        original = getattr(shutil, name)
        monkeypatch.setattr(shutil, name, lambda *a, _o=original, **k: copies.append(str(a[0])) or _o(*a, **k))

    def start() -> None:
        r = fastcontain.run("bench/cached:1", ["sh", "-c", "test -f /usr/lib/data/d099/f19.txt"])
        assert r.returncode == 0

    benchmark.group = "start a container from a stored image"
    t = time.perf_counter()
    benchmark(start)
    benchmark.extra_info["first_start_ms"] = (time.perf_counter() - t) * 1e3
    assert calls == [] and copies == [], (calls, copies)  # nothing unpacked, nothing copied
    assert snapshot() == before  # the layers are the same files, untouched
