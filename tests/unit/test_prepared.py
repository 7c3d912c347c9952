"""prepared: what is made once per process (configs, spec templates) is reused only while
it is what would be made again, and each container gets a spec of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fastcontain import Config, ConfigError, prepared, security
from fastcontain.image import Image
from fastcontain.spec import compile
from fastcontain.state import Paths


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    prepared.clear()
    yield
    prepared.clear()


@pytest.fixture
def image(tmp_path: Path) -> Image:
    layer = tmp_path / "layer"
    (layer / "etc").mkdir(parents=True)
    (layer / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n")
    (layer / "etc" / "group").write_text("root:x:0:\nwheel:x:10:alice\n")
    return Image(name="fake", layers=(str(layer),), cmd=("sh",))


def paths(tmp_path: Path, n: int) -> Paths:
    return Paths(str(tmp_path / "root"), f"{n:016x}")


def test_the_same_pure_options_give_the_same_config() -> None:
    a = prepared.config("busybox", ["true"], {"env": {"A": "1"}, "memory": "64m", "hostname": "box"})
    b = prepared.config("busybox", ("true",), {"env": {"A": "1"}, "memory": "64m", "hostname": "box"})
    assert a is b and a == Config("busybox", ["true"], env={"A": "1"}, memory="64m", hostname="box")
    assert prepared.config("busybox", ["true"], {"env": {"A": "2"}}) is not a


def test_a_value_of_another_type_is_checked_again() -> None:
    ok = prepared.config("busybox", None, {"pids_limit": 1})
    assert ok.pids_limit == 1
    with pytest.raises(ConfigError):  # True == 1, but a bool is no pids limit
        prepared.config("busybox", None, {"pids_limit": True})


def test_options_that_read_the_host_are_checked_every_time(tmp_path: Path) -> None:
    src = tmp_path / "data"
    src.mkdir()
    fields = {"volumes": [f"{src}:/data"]}
    assert prepared.config("busybox", None, fields) is not prepared.config("busybox", None, fields)
    src.rmdir()
    with pytest.raises(ConfigError, match="does not exist"):
        prepared.config("busybox", None, fields)


def test_a_pools_per_run_config_is_made_once_for_the_same_base_and_values(tmp_path: Path) -> None:
    base = Config("busybox", ["sh"], env={"A": "1"})
    assert prepared.replaced(base, None, {}) is base
    one = prepared.replaced(base, ["true"], {"hostname": "h"})
    assert one is prepared.replaced(base, ("true",), {"hostname": "h"})
    assert one == Config("busybox", ["true"], env={"A": "1"}, hostname="h")
    assert prepared.replaced(base, ["false"], {"hostname": "h"}).command == ("false",) != one.command
    other = Config("busybox", ["sh"], env={"A": "2"})
    assert prepared.replaced(other, ["true"], {"hostname": "h"}).env == other.env  # another base: its own
    src = tmp_path / "data"
    src.mkdir()
    fields = {"volumes": [f"{src}:/data"]}  # reads the host: checked every time
    assert prepared.replaced(base, ["true"], fields) is not prepared.replaced(base, ["true"], fields)
    src.rmdir()
    with pytest.raises(ConfigError, match="does not exist"):
        prepared.replaced(base, ["true"], fields)
    with pytest.raises(ConfigError):
        prepared.replaced(base, [], {})  # an invalid one is not kept
    with pytest.raises(ConfigError):
        prepared.replaced(base, [], {})


def test_an_invalid_config_is_not_kept() -> None:
    for _ in range(2):
        with pytest.raises(ConfigError):
            prepared.config("busybox", [], {})


def test_each_container_gets_a_spec_of_its_own(image: Image, tmp_path: Path) -> None:
    cfg = Config("fake", ["true"], tmpfs=["/scratch"])
    one = prepared.compile(cfg, image, paths(tmp_path, 1), (-1, -1, -1), wait_for_start=False)
    one["mounts"].append({"source": "/x", "target": "/x", "type": "bind", "options": ["bind"]})
    one["mounts"][0]["options"].append("ro")
    one["argv"].append("more")
    two = prepared.compile(cfg, image, paths(tmp_path, 2), (0, 1, 2), wait_for_start=True)
    assert two == compile(cfg, image, paths(tmp_path, 2), (0, 1, 2), wait_for_start=True)
    assert two["hostname"] == f"{2:016x}"[:12] and f"HOSTNAME={two['hostname']}" in two["env"]
    assert two["rootfs"] == paths(tmp_path, 2).rootfs and two["stdio"] == [0, 1, 2]
    assert len(two["mounts"]) == 1 and two["argv"] == ["true"]


def test_a_new_image_or_bounding_set_makes_a_new_template(image: Image, tmp_path: Path) -> None:
    cfg = Config("fake", user="alice")
    first = prepared.compile(cfg, image, paths(tmp_path, 1), (-1, -1, -1), wait_for_start=False)
    assert (first["uid"], first["groups"], first["argv"]) == (1000, [10], ["sh"])
    rebuilt = Image(name="fake", layers=image.layers, cmd=("ls",))  # prepared.resolve's answer once a layer changed
    assert prepared.compile(cfg, rebuilt, paths(tmp_path, 2), (-1, -1, -1), wait_for_start=False)["argv"] == ["ls"]
    security.host_bounding_set.cache_clear()
    try:
        again = prepared.compile(cfg, rebuilt, paths(tmp_path, 3), (-1, -1, -1), wait_for_start=False)
        assert again == compile(cfg, rebuilt, paths(tmp_path, 3), (-1, -1, -1))
        assert prepared._templates[id(cfg)][2] is security.host_bounding_set()
    finally:
        security.host_bounding_set.cache_clear()


def test_a_seccomp_profile_file_is_read_for_each_container(image: Image, tmp_path: Path) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    cfg = Config("fake", ["true"], security_opt=[f"seccomp={profile}"])
    assert not prepared._static(cfg)
    assert prepared._static(Config("fake", ["true"], security_opt=["seccomp=unconfined", "no-new-privileges"]))
    assert not prepared._static(Config("fake", ["true"], privileged=True))
