"""Images: the embedded busybox and host images assembled in a store, directory images, lookup errors."""

from __future__ import annotations

import os
import shutil
import stat
import threading
from pathlib import Path

import pytest

from fastcontain import ImageError
from fastcontain.image import DEFAULT_PATH, resolve, store


@pytest.fixture(scope="module")
def busybox() -> str:
    try:
        return store.find_busybox()
    except ImageError as e:
        pytest.skip(f"no static busybox on this host (apt install busybox-static): {e}")


def test_elf_interpreter_tells_static_from_dynamic(busybox: str, tmp_path: Path) -> None:
    assert store.elf_interpreter(busybox) is False
    text = tmp_path / "script"
    text.write_text("#!/bin/sh\n")
    assert store.elf_interpreter(str(text)) is None
    (tmp_path / "short").write_bytes(b"\x7fELF\x02\x01")
    assert store.elf_interpreter(str(tmp_path / "short")) is None
    ls = shutil.which("ls")
    if ls is None or os.path.samefile(ls, busybox):
        pytest.skip("no dynamically linked ls on this host to compare with")
    assert store.elf_interpreter(ls) is True


def test_busybox_image_is_assembled_in_the_store(busybox: str, tmp_path: Path) -> None:
    image = resolve("busybox", store=str(tmp_path))
    rootfs = Path(tmp_path, "images", "busybox", "rootfs")
    assert image.layers == (str(rootfs),) and image.cmd == ("sh",) and image.mounts == ()
    assert image.env == (f"PATH={DEFAULT_PATH}",) and image.workdir == "/"
    binary = rootfs / "bin" / "busybox"
    assert binary.is_file() and not binary.is_symlink() and os.access(binary, os.X_OK)
    assert binary.stat().st_size == os.stat(busybox).st_size
    assert os.readlink(rootfs / "bin" / "sh") == "/bin/busybox"
    linked = [p for p in rootfs.rglob("*") if p.is_symlink()]
    assert len(linked) > 100 and all(os.readlink(p) == "/bin/busybox" for p in linked)
    assert any(p.name == "ls" for p in linked) and not (rootfs / "linuxrc").exists()
    passwd = (rootfs / "etc" / "passwd").read_text()
    assert passwd.startswith("root:x:0:0:") and "nobody:x:65534:65534:" in passwd
    assert "root:x:0:" in (rootfs / "etc" / "group").read_text()
    assert "localhost" in (rootfs / "etc" / "hosts").read_text()
    assert stat.S_IMODE((rootfs / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE(rootfs.stat().st_mode) == 0o755
    for d in ("proc", "sys", "dev", "root", "home", "run", "var/tmp"):
        assert (rootfs / d).is_dir() and not any((rootfs / d).iterdir()), d
    assert (rootfs / "usr" / "bin").is_dir() and (rootfs / "sbin").is_dir()
    assert image.read_etc("passwd") == passwd
    assert not [n for n in os.listdir(tmp_path / "images") if n.startswith(".tmp-")]


def test_busybox_is_built_once_and_rebuilt_when_its_source_changes(busybox: str, tmp_path: Path) -> None:
    rootfs = resolve("busybox", store=str(tmp_path)).layers[0]
    first = os.stat(rootfs).st_ino
    assert os.stat(resolve("busybox", store=str(tmp_path)).layers[0]).st_ino == first
    Path(tmp_path, "images", "busybox", "source").write_text("busybox /elsewhere 1 1\n")
    os.mkdir(tmp_path / "images" / ".tmp-busybox-crashed")  # a crashed assembly
    again = resolve("busybox", store=str(tmp_path)).layers[0]
    assert again == rootfs and os.stat(again).st_ino != first
    assert sorted(os.listdir(tmp_path / "images")) == ["busybox"]


def test_concurrent_first_use_builds_one_image(busybox: str, tmp_path: Path) -> None:
    results: list[object] = []

    def use() -> None:
        try:
            results.append(resolve("busybox", store=str(tmp_path)))
        except BaseException as e:  # noqa: BLE001 - reported below
            results.append(e)

    threads = [threading.Thread(target=use) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and all(r == results[0] for r in results), results
    assert sorted(os.listdir(tmp_path / "images")) == ["busybox"]


def test_store_follows_the_environment(busybox: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTCONTAIN_STORE", str(tmp_path))
    assert store.default_store() == str(tmp_path)
    assert resolve("busybox").layers[0].startswith(str(tmp_path))
    monkeypatch.delenv("FASTCONTAIN_STORE")
    assert store.default_store() == "/var/lib/fastcontain"


def test_no_static_busybox_is_an_image_error(busybox: str, tmp_path: Path) -> None:
    script = tmp_path / "busybox"
    script.write_text("#!/bin/sh\n")
    dynamic = shutil.which("ls") or "/usr/bin/ls"
    with pytest.raises(ImageError) as info:
        store.find_busybox([str(script), dynamic, str(tmp_path / "missing")])
    message = str(info.value)
    assert "busybox-static" in message and f"{script} (not an ELF executable)" in message
    assert f"{tmp_path / 'missing'} (missing)" in message
    if store.elf_interpreter(dynamic):
        assert f"{dynamic} (dynamically linked)" in message
    assert store.find_busybox([str(script), busybox]) == os.path.realpath(busybox)


def fake_host(tmp_path: Path) -> Path:
    host = tmp_path / "host"
    for d in ("usr/bin", "usr/lib", "etc", "lib64", "opt"):
        (host / d).mkdir(parents=True)
    (host / "bin").symlink_to("usr/bin")
    (host / "lib").symlink_to("usr/lib")
    return host


def test_host_layout_mirrors_links_and_shares_directories(tmp_path: Path) -> None:
    layout = store.host_layout(str(fake_host(tmp_path)))
    assert layout == [("usr", "dir"), ("bin", "link:usr/bin"), ("lib", "link:usr/lib"), ("lib64", "dir"),
                      ("etc", "dir")]
    rootfs = Path(store.host_rootfs(str(tmp_path / "store"), layout))
    assert os.readlink(rootfs / "bin") == "usr/bin" and os.readlink(rootfs / "lib") == "usr/lib"
    for d in ("usr", "lib64", "etc", "proc", "sys", "dev", "tmp", "root"):
        assert (rootfs / d).is_dir() and not (rootfs / d).is_symlink()
    assert not any((rootfs / "usr").iterdir()) and not any((rootfs / "etc").iterdir())  # mount points only
    assert not (rootfs / "opt").exists()


def test_host_image_shares_the_host_directories_read_only(tmp_path: Path) -> None:
    image = resolve("host", store=str(tmp_path))
    expected = [d for d in store.HOST_DIRS if os.path.isdir(f"/{d}") and not os.path.islink(f"/{d}")]
    assert [m.target for m in image.mounts] == [f"/{d}" for d in expected]
    assert all(m.readonly and m.recursive and m.type == "bind" and m.source == m.target for m in image.mounts)
    rootfs = image.layers[0]
    for d in store.HOST_DIRS:
        if os.path.islink(f"/{d}"):
            assert os.readlink(os.path.join(rootfs, d)) == os.readlink(f"/{d}")
    assert image.cmd == ("sh",)
    assert image.read_etc("passwd") == Path("/etc/passwd").read_text()  # through the /etc mount


def test_directory_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rootfs").mkdir()
    path = str(tmp_path / "rootfs")
    for name in (path, f"dir:{path}", path + "/"):
        image = resolve(name)
        assert image.layers == (path,) and image.cmd == () and image.mounts == () and image.name == name
    monkeypatch.chdir(tmp_path)
    assert resolve("./rootfs").layers == (path,)


@pytest.mark.parametrize(
    ("name", "in_message"),
    [
        ("/nonexistent-fastcontain-image", "/nonexistent-fastcontain-image does not exist"),
        ("dir:/etc/passwd", "/etc/passwd is not a directory"),
        ("alpine", "unknown image 'alpine'"),
        ("busybox:latest", "busybox, host"),
    ],
)
def test_image_errors_say_what_was_tried(name: str, in_message: str) -> None:
    with pytest.raises(ImageError) as info:
        resolve(name)
    assert in_message in str(info.value)


def test_an_overlay_layer_path_cannot_hold_separators(tmp_path: Path) -> None:
    (tmp_path / "a:b").mkdir()
    with pytest.raises(ImageError, match="':' or ','"):
        resolve(str(tmp_path / "a:b"))
