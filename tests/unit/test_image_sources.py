"""Image references, registry credentials and challenges, platform choice, and docker's
Entrypoint/Cmd rules: the parts of image handling that need no root and no network."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from fastcontain import Config, ConfigError, ImageError
from fastcontain.image import Image, oci, reference, registry
from fastcontain.spec import compile
from fastcontain.state import Paths


@pytest.mark.parametrize("ref, parts", [
    ("busybox", ("docker.io", "library/busybox", None, None)),
    ("busybox:1.36", ("docker.io", "library/busybox", "1.36", None)),
    ("user/app", ("docker.io", "user/app", None, None)),
    ("localhost/app:dev", ("localhost", "app", "dev", None)),
    ("127.0.0.1:5000/fc/busybox:oci", ("127.0.0.1:5000", "fc/busybox", "oci", None)),
    ("quay.io/a/b/c@sha256:" + "a" * 64, ("quay.io", "a/b/c", None, "sha256:" + "a" * 64)),
    ("index.docker.io/library/x:1", ("docker.io", "library/x", "1", None)),
])
def test_references_normalize_as_docker_does(ref: str, parts: tuple[object, ...]) -> None:
    r = reference.parse(ref)
    assert (r.registry, r.repository, r.tag, r.digest) == parts


def test_reference_forms() -> None:
    assert reference.parse("busybox").tagged() == "docker.io/library/busybox:latest"
    assert reference.short("docker.io/library/busybox:latest") == "busybox:latest"
    assert reference.short("docker.io/fc/x:1") == "fc/x:1"
    assert reference.parse("busybox").api_host == "registry-1.docker.io"
    for bad, why in [("UPPER/case", "lowercase"), ("x@sha256:12", "digest"), ("a:b:c", "lowercase"), ("", "empty"),
                     ("x:" + "t" * 200, "bad tag")]:
        with pytest.raises(ImageError, match=why):
            reference.parse(bad)


def test_credentials_from_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert registry.credentials("127.0.0.1:5000") is None
    auth = base64.b64encode(b"me:p:w").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {
        "127.0.0.1:5000": {"auth": auth},
        "https://index.docker.io/v1/": {"username": "hub", "password": "pw"},
        "https://other.example:443/v2/": {"auth": base64.b64encode(b"o:x").decode()},
    }}))
    assert registry.credentials("127.0.0.1:5000") == ("me", "p:w")
    assert registry.credentials("docker.io") == ("hub", "pw")
    assert registry.credentials("other.example:443") == ("o", "x")
    assert registry.credentials("nowhere.example") is None
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ImageError, match="cannot read the docker credentials in .*config.json"):
        registry.credentials("x")


def test_challenges_parse() -> None:
    scheme, params = registry.parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"'
    )
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.example/token", "service": "registry.example", "scope": "repository:a/b:pull,push"}
    assert registry.parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})


def test_insecure_registries_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.INSECURE_ENV, "127.0.0.1:5000, localhost:1")
    assert registry.insecure_registries() == {"127.0.0.1:5000", "localhost:1"}


def test_platform_choice() -> None:
    manifests = [
        {"mediaType": oci.OCI_MANIFEST, "digest": "sha256:a", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"mediaType": oci.OCI_MANIFEST, "digest": "sha256:b", "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": oci.OCI_MANIFEST, "digest": "sha256:c", "platform": {"os": "windows", "architecture": "amd64"}},
    ]
    assert oci.choose(manifests, "linux/amd64", "i")["digest"] == "sha256:b"
    assert oci.choose(manifests, "linux/arm64", "i")["digest"] == "sha256:a"
    with pytest.raises(ImageError, match=r"index has no image for linux/s390x \(it has: linux/amd64, linux/arm64/v8, windows/amd64\)"):
        oci.choose(manifests, "linux/s390x", "index")
    assert oci.choose([{"mediaType": oci.OCI_MANIFEST, "digest": "sha256:d"}], "linux/amd64", "i")["digest"] == "sha256:d"


def test_verify_bytes_names_the_blob() -> None:
    data = b"{}"
    good = oci.sha256(data)
    assert oci.verify_bytes(data, good, 2, "config") == data
    with pytest.raises(ImageError, match=f"config {'sha256:' + '0' * 64}: its content has digest {good}"):
        oci.verify_bytes(data, "sha256:" + "0" * 64, None, "config")
    with pytest.raises(ImageError, match="2 bytes, but its descriptor says 3"):
        oci.verify_bytes(data, good, 3, "config")


def _argv(image: Image, **config: object) -> list[str]:
    spec = compile(Config(image="x", **config), image, Paths("/run/fc-test", "0" * 16), (-1, -1, -1))  # type: ignore[arg-type]
    return list(spec["argv"])


def test_entrypoint_and_cmd_combine_as_docker() -> None:
    image = Image(name="x", layers=("/nonexistent",), cmd=("from-cmd",), entrypoint=("/bin/echo", "entry"))
    assert _argv(image) == ["/bin/echo", "entry", "from-cmd"]
    assert _argv(image, command=["mine"]) == ["/bin/echo", "entry", "mine"]
    assert _argv(image, entrypoint="/bin/sh") == ["/bin/sh"]  # the user's entrypoint drops the image's Cmd
    assert _argv(image, entrypoint=["sh", "-c"], command=["id"]) == ["sh", "-c", "id"]
    assert _argv(Image(name="x", layers=("/n",), cmd=("sh",)), command=["ls"]) == ["ls"]
    with pytest.raises(ConfigError, match="no default command"):
        _argv(image, entrypoint=[])


def test_config_checks_entrypoint_and_pull() -> None:
    assert Config(image="x", entrypoint="/bin/sh").entrypoint == ("/bin/sh",)
    with pytest.raises(ConfigError, match="invalid pull='sometimes'"):
        Config(image="x", pull="sometimes")
    with pytest.raises(ConfigError, match="entrypoint"):
        Config(image="x", entrypoint=42)  # type: ignore[arg-type]


def test_garbage_collection_waits_while_a_container_resolves(tmp_path: Path) -> None:
    import threading

    from fastcontain.image import gc_hold
    from fastcontain.image.layers import LayerStore

    store = LayerStore(str(tmp_path / "fastcontain-store"))
    done = threading.Event()
    with gc_hold(store.path):
        t = threading.Thread(target=lambda: (store.gc(set), done.set()))
        t.start()
        assert not done.wait(0.3)  # blocked: the layers a starting container resolved are safe
    t.join(10)
    assert done.is_set()


def test_too_many_layers_for_one_overlay_mount_is_a_clear_error(tmp_path: Path) -> None:
    from fastcontain.image import from_record
    from fastcontain.image.layers import ImageRecord, LayerStore

    store = LayerStore(str(tmp_path / "fastcontain-store"))
    record = ImageRecord(id="sha256:" + "1" * 64, config={}, layers=tuple(f"sha256:{i:064x}" for i in range(60)),
                         tags=("docker.io/fc/tall:1",))
    with pytest.raises(ImageError, match=r"image 'fc/tall:1' has 60 layers: their overlayfs lowerdir list is \d+ bytes"):
        from_record(record, store)
    assert len(from_record(ImageRecord(id=record.id, config={}, layers=record.layers[:20]), store).layers) == 20
