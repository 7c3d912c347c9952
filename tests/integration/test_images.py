"""Images built by umoci and skopeo, from every source, run as busybox containers: the OCI
layout (directory and tar), docker archives (legacy and OCI-style), a rootfs import, and
pulls from a real docker-registry on 127.0.0.1 (anonymous, bearer tokens, basic auth).
In each, the layers stack as the OCI spec says: a file deleted in a later layer is gone,
a directory replaced by a file is a file, an opaque directory shows only its new content."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import fastcontain
import fastcontain.images as images
import imagetools
from fastcontain import ImageError, cli

from .util import LIMIT

pytestmark = pytest.mark.privileged

# What the container sees of the layered test image: one line per check.
PROBE = (
    "test -e /etc/deleted-later && echo deleted-later-present || echo deleted-later-gone; "
    "cat /etc/added-in-3; test -f /replaced && cat /replaced; ls /opq | tr '\\n' ' '; echo; "
    "stat -c '%U %a' /data; cat /data/keep; busybox true && echo busybox-ok"
)
EXPECTED = "deleted-later-gone\nlayer 3\nnow a file\nnew-c \napp 755\nkept\nbusybox-ok\n"


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> imagetools.Built:
    return imagetools.build_layout(tmp_path_factory.mktemp("fastcontain-images"))


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh store for each test, so each source is unpacked by that test."""
    path = tmp_path / "fastcontain-store"
    monkeypatch.setenv("FASTCONTAIN_STORE", str(path))
    return path


def probe(image: str, **kw: object) -> str:
    r = fastcontain.run(image, ["sh", "-c", PROBE], capture_output=True, text=True, timeout=LIMIT, **kw)
    assert r.returncode == 0, r
    return r.stdout


def test_oci_layout_directory(built: imagetools.Built, store: Path) -> None:
    loaded = images.load(str(built.layout), "fc/busybox:layers")
    assert [i.tags for i in loaded] == [("docker.io/fc/busybox:layers",)] and len(loaded[0].layers) == 4
    assert probe("fc/busybox:layers") == EXPECTED


def test_oci_archive_tar_loaded_by_the_cli(built: imagetools.Built, store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = imagetools.oci_archive(built.layout, "layers", tmp_path / "oci.tar")
    assert cli.main(["load", "-i", str(archive), "--tag", "fc/ociarchive:1"]) == 0
    assert "Loaded image: fc/ociarchive:1" in capsys.readouterr().out
    assert probe("fc/ociarchive:1") == EXPECTED


def test_docker_archive_legacy_layout(built: imagetools.Built, store: Path, tmp_path: Path) -> None:
    archive = imagetools.docker_archive(built.layout, "layers", tmp_path / "docker.tar", "fc/dockerarchive:v1")
    [image] = images.load(str(archive))
    assert image.tags == ("docker.io/fc/dockerarchive:v1",)
    assert probe("fc/dockerarchive:v1") == EXPECTED


def test_docker_archive_oci_style_layout(built: imagetools.Built, store: Path, tmp_path: Path) -> None:
    legacy = imagetools.docker_archive(built.layout, "entry", tmp_path / "legacy.tar", "fc/newdocker:v2")
    archive = imagetools.docker_oci_archive(legacy, tmp_path / "docker25.tar")
    [image] = images.load(str(archive))
    assert image.tags == ("docker.io/fc/newdocker:v2",)
    assert probe("fc/newdocker:v2", entrypoint=[]) == EXPECTED


def test_rootfs_import(built: imagetools.Built, store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tarball = tmp_path / "rootfs.tar.gz"
    subprocess.run(["tar", "-czf", str(tarball), "-C", str(built.rootfs), "."], check=True)
    assert cli.main(["import", str(tarball), "fc/imported"]) == 0
    image_id = capsys.readouterr().out.strip()
    image = images.get("fc/imported:latest")
    assert image.id == image_id and len(image.layers) == 1 and image.cmd == ()
    with pytest.raises(fastcontain.ConfigError, match="no default command"):
        fastcontain.run("fc/imported", timeout=LIMIT)
    out = fastcontain.run("fc/imported", ["sh", "-c", "cat /etc/deleted-later; ls /opq"], capture_output=True, text=True, timeout=LIMIT)
    assert out.stdout == "layer 1\nold-a\nold-b\n"


def test_image_config_applies_unless_overridden(built: imagetools.Built, store: Path) -> None:
    [image] = images.load(str(built.layout), "fc/busybox:entry")
    assert image.entrypoint == ("/bin/echo", "entry") and image.cmd == ("from-cmd",)
    assert image.exposed_ports == ("8080/tcp",) and image.labels == {"org.example.kind": "test"}
    assert image.user == "app" and image.workdir == "/data"
    run = lambda *cmd, **kw: fastcontain.run("fc/busybox:entry", list(cmd) or None, capture_output=True,
                                              text=True, timeout=LIMIT, **kw).stdout
    assert run() == "entry from-cmd\n"  # Entrypoint + Cmd
    assert run("mine") == "entry mine\n"  # Entrypoint + the user's command
    assert run("-c", "pwd; id; echo $FROM_IMAGE $PATH", entrypoint="/bin/sh") == (
        "/data\nuid=1000(app) gid=1000(app) groups=2000(extra)\nyes /bin:/usr/bin\n"
    )
    assert run("id -u", entrypoint=["sh", "-c"], user="nobody", workdir="/tmp", env={"FROM_IMAGE": "no"}) == "65534\n"
    with pytest.raises(fastcontain.ConfigError, match="no default command"):
        fastcontain.run("fc/busybox:entry", entrypoint=[], timeout=LIMIT)


def test_unknown_store_image_is_an_error(store: Path) -> None:
    with pytest.raises(ImageError, match="unknown image 'fc/nothere:1'.*pull='missing'"):
        fastcontain.run("fc/nothere:1", ["true"])


# -- registries ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def anonymous(built: imagetools.Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[imagetools.Registry]:
    with imagetools.registry(tmp_path_factory.mktemp("fastcontain-registry")) as reg:
        imagetools.multi_platform(built.layout, "layers", "entry", "multi")
        reg.push(built.layout, "layers", "fc/busybox:oci", fmt="oci")
        reg.push(built.layout, "layers", "fc/busybox:v2s2", fmt="v2s2")
        subprocess.run(["skopeo", "copy", "--quiet", "--all", "--dest-tls-verify=false", f"oci:{built.layout}:multi",
                        f"docker://{reg.host}/fc/busybox:multi"], check=True)
        yield reg


@pytest.mark.parametrize("tag", ["oci", "v2s2"])
def test_pull_anonymous_oci_and_docker_schema2(anonymous: imagetools.Registry, store: Path, tag: str) -> None:
    seen: list[tuple[str, int, int | None]] = []
    image = images.pull(f"{anonymous.host}/fc/busybox:{tag}", insecure=True, progress=lambda *a: seen.append(a))
    assert image.tags == (f"{anonymous.host}/fc/busybox:{tag}",) and len(image.layers) == 4
    assert image.digests and image.digests[0].startswith(f"{anonymous.host}/fc/busybox@sha256:")
    assert seen and all(done <= (total or done) for _, done, total in seen)
    assert {what for what, done, total in seen if done == total} >= {d for d in image.layers} or len(seen) >= 4
    assert probe(f"{anonymous.host}/fc/busybox:{tag}") == EXPECTED
    again = images.pull(f"{anonymous.host}/fc/busybox:{tag}", insecure=True, progress=lambda *a: seen.append(a))
    assert again.id == image.id  # layers were all stored: nothing more was downloaded


def test_pull_a_manifest_list_picks_the_platform(anonymous: imagetools.Registry, store: Path) -> None:
    amd64 = images.pull(f"{anonymous.host}/fc/busybox:multi", insecure=True)
    arm64 = images.pull(f"{anonymous.host}/fc/busybox:multi", insecure=True, platform="linux/arm64")
    assert amd64.entrypoint == () and arm64.entrypoint == ("/bin/echo", "entry")
    with pytest.raises(ImageError, match=r"has no image for linux/s390x \(it has: linux/amd64, linux/arm64\)"):
        images.pull(f"{anonymous.host}/fc/busybox:multi", insecure=True, platform="linux/s390x")


def test_pull_by_digest_and_run_with_pull_missing(anonymous: imagetools.Registry, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTCONTAIN_INSECURE_REGISTRIES", anonymous.host)
    ref = f"{anonymous.host}/fc/busybox:oci"
    with pytest.raises(ImageError, match="unknown image"):
        fastcontain.run(ref, ["true"])
    assert probe(ref, pull="missing") == EXPECTED
    digest = images.get(ref).digests[0]
    assert images.get(digest).id == images.get(ref).id
    images.remove(ref)
    assert probe(digest, pull="missing") == EXPECTED


def test_plain_http_only_for_insecure_registries(anonymous: imagetools.Registry, store: Path) -> None:
    with pytest.raises(ImageError, match=r"cannot reach https://.*--tls-verify=false"):
        images.pull(f"{anonymous.host}/fc/busybox:oci")
    with pytest.raises(ImageError, match="not found in the registry"):
        images.pull(f"{anonymous.host}/fc/nothere:1", insecure=True)


def test_pull_with_bearer_tokens(built: imagetools.Built, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with imagetools.registry(tmp_path / "fastcontain-registry", auth="token") as reg:
        ref = reg.push(built.layout, "layers", "fc/private:1")
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-credentials"))
        with pytest.raises(ImageError, match="token server .* refused: HTTP 401"):
            images.pull(ref, insecure=True)
        monkeypatch.setenv("DOCKER_CONFIG", str(reg.docker_config(tmp_path / "docker")))
        assert reg.tokens is not None
        issued = len(reg.tokens)
        image = images.pull(ref, insecure=True)
        assert reg.tokens[issued:] == ["repository:fc/private:pull"]  # one token, for our scope, from the challenge
        assert probe(ref) == EXPECTED and image.tags == (ref,)


def test_pull_with_basic_auth(built: imagetools.Built, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with imagetools.registry(tmp_path / "fastcontain-registry", auth="htpasswd") as reg:
        ref = reg.push(built.layout, "layers", "fc/basic:1", fmt="v2s2")
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty"))
        with pytest.raises(ImageError, match="basic credentials"):
            images.pull(ref, insecure=True)
        monkeypatch.setenv("DOCKER_CONFIG", str(reg.docker_config(tmp_path / "docker")))
        assert cli.main(["pull", "--tls-verify=false", ref]) == 0
        assert f"Status: downloaded {ref}" in capsys.readouterr().out
        assert probe(ref) == EXPECTED


# -- garbage collection ------------------------------------------------------------------

def test_rmi_and_prune_keep_what_a_live_container_uses(built: imagetools.Built, store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    [image] = images.load(str(built.layout), "fc/busybox:layers")
    archive = imagetools.docker_archive(built.layout, "entry", tmp_path / "entry.tar", "fc/entry:1")
    images.load(str(archive))  # the same four layers, another config
    layer_dirs = [Path(store, "layers", d.partition(":")[2]) for d in image.layers]
    with fastcontain.Container.create("fc/busybox:layers", ["sleep", "60"]) as c:
        c.start()
        assert cli.main(["rmi", "fc/busybox:layers", "fc/entry:1"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert "Untagged: fc/busybox:layers" in lines and f"Deleted: {image.id}" in lines
        assert images.list() == [] and all(d.is_dir() for d in layer_dirs)  # the container still uses them
        assert cli.main(["image", "prune", "-f"]) == 0
        assert all(d.is_dir() for d in layer_dirs)
        c.kill()
        c.wait(LIMIT)
    assert cli.main(["image", "prune", "-f"]) == 0
    out = capsys.readouterr().out
    assert all(f"deleted: sha256:{d.name}" in out for d in layer_dirs) and "Total reclaimed space: 1.98MB" in out
    assert not any(d.exists() for d in layer_dirs)
    assert sorted(os.listdir(Path(store, "layers"))) == []


def test_images_table_and_json_and_inspect(built: imagetools.Built, store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images.load(str(built.layout), "fc/busybox:entry")
    assert cli.main(["images"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert row.split()[:3] == ["fc/busybox", "entry", images.get("fc/busybox:entry").short_id]
    assert cli.main(["images", "--format", "json"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["Repository"] == "fc/busybox"
    assert cli.main(["image", "inspect", "fc/busybox:entry"]) == 0
    [info] = json.loads(capsys.readouterr().out)
    assert info["Config"]["Entrypoint"] == ["/bin/echo", "entry"] and len(info["RootFS"]["Layers"]) == 4
    assert cli.main(["image", "inspect", "fc/nothere"]) == 1


def test_run_from_the_cli_with_a_stored_image(built: imagetools.Built, store: Path) -> None:
    images.load(str(built.layout), "fc/busybox:entry")
    r = subprocess.run([sys.executable, "-m", "fastcontain", "run", "fc/busybox:entry", "from-cli"],
                       capture_output=True, text=True, timeout=LIMIT)
    assert (r.returncode, r.stdout) == (0, "entry from-cli\n"), r.stderr


def test_a_tampered_blob_is_refused_by_name_and_nothing_is_kept(built: imagetools.Built, store: Path, tmp_path: Path) -> None:
    import shutil

    layout = tmp_path / "tampered"
    shutil.copytree(built.layout, layout)
    manifest = images_manifest(layout, "layers")
    victim = manifest["layers"][-1]["digest"]
    blob = layout / "blobs" / "sha256" / victim.partition(":")[2]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=f"{victim}"):
        images.load(str(layout), "fc/tampered:1", ref="layers")
    kept = [n for n in os.listdir(store / "layers") if not n.startswith(".lock-")]
    assert len(kept) == 3 and images.list() == []  # the three intact layers, no image, nothing of the bad one
    config = layout / "blobs" / "sha256" / manifest["config"]["digest"].partition(":")[2]
    config.write_text(config.read_text().replace("amd64", "arm64"))
    with pytest.raises(ImageError, match=f"image config {manifest['config']['digest']}: its content has digest"):
        images.load(str(layout), "fc/tampered:1", ref="layers")


def images_manifest(layout: Path, tag: str) -> dict[str, object]:
    index = json.loads((layout / "index.json").read_text())
    [desc] = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    return json.loads((layout / "blobs" / "sha256" / desc["digest"].partition(":")[2]).read_text())  # type: ignore[no-any-return]


def test_concurrent_loads_of_one_image(built: imagetools.Built, store: Path) -> None:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        loaded = list(pool.map(lambda i: images.load(str(built.layout), f"fc/race:{i}", ref="layers")[0], range(4)))
    assert len({i.id for i in loaded}) == 1
    assert len([n for n in os.listdir(store / "layers") if not n.startswith(".")]) == 4
    assert sorted(images.get(loaded[0].id).tags) == sorted(f"docker.io/fc/race:{i}" for i in range(4))
    assert probe("fc/race:2") == EXPECTED


def test_progress_bars_on_a_terminal_and_quiet_otherwise(built: imagetools.Built, store: Path, tmp_path: Path) -> None:
    import pty

    archive = imagetools.docker_archive(built.layout, "layers", tmp_path / "p.tar", "fc/progress:1")
    argv = [sys.executable, "-m", "fastcontain", "load", "-i", str(archive)]
    quiet = subprocess.run(argv, capture_output=True, text=True, timeout=LIMIT)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "Loaded image: fc/progress:1\n", "")
    images.remove("fc/progress:1")
    master, slave = pty.openpty()
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=slave, text=True, timeout=LIMIT)
        os.close(slave)
        slave = -1
        drawn = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert r.returncode == 0 and r.stdout == "Loaded image: fc/progress:1\n"
    text = drawn.decode(errors="replace")
    assert "100%" in text and "B/s" in text, text  # tqdm's bar: bytes, percentage and rate
