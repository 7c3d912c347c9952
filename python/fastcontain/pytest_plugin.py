"""fastcontain's pytest plugin, installed with the package (a `pytest11` entry point).

Fixtures:
    fastcontain        runs containers for one test and removes every one of them after
                       the test, whatever happened (a failure, an error, Ctrl-C):
                           def test_x(fastcontain):
                               r = fastcontain.run("busybox", ["echo", "hi"], capture_output=True)
                               c = fastcontain.create("busybox", ["sleep", "60"]); c.start()
                               pool = fastcontain.pool("busybox", size=2)
    fastcontain_pool   one Pool for the whole session (image and size from the options
                       --fastcontain-pool-image, default busybox, and
                       --fastcontain-pool-size, default 4), closed at the end.

Marker:
    @pytest.mark.containers   skips the test, saying why, where this host cannot run
                              containers (not root; namespaces refused; no native core).
                              Tests using the fixtures above are skipped the same way.

Disable with `-p no:fastcontain`. Importing the plugin imports nothing of fastcontain's
until a fixture or the marker needs it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

MARKER = "containers"
_support: tuple[bool, str] | None = None


def host_support() -> tuple[bool, str]:
    """(True, "") if this host can run fastcontain containers, else (False, why). Tries
    one container the first time it is asked, so the reason is the real one."""
    global _support
    if _support is not None:
        return _support
    if os.geteuid() != 0:
        _support = (False, "fastcontain needs root to create namespaces (user namespaces come later)")
        return _support
    try:
        import fastcontain

        fastcontain.run("busybox", ["true"], check=True)
        _support = (True, "")
    except ImportError as e:
        _support = (False, f"fastcontain's native core cannot be imported: {e}")
    except Exception as e:  # SpawnError (namespaces refused, say), ImageError (no busybox)
        _support = (False, f"this host cannot run a container: {type(e).__name__}: {e}")
    return _support


def _skip_unless_supported() -> None:
    ok, why = host_support()
    if not ok:
        pytest.skip(why)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fastcontain")
    group.addoption("--fastcontain-pool-image", default="busybox", help="image of the fastcontain_pool fixture")
    group.addoption("--fastcontain-pool-size", type=int, default=4, help="slots of the fastcontain_pool fixture")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}: needs a host that can run fastcontain containers (root, namespaces); skipped otherwise"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker(MARKER) is not None:
        _skip_unless_supported()


class Containers:
    """The `fastcontain` fixture: fastcontain's entry points, each container tracked and
    removed at the end of the test."""

    def __init__(self) -> None:
        import fastcontain

        self._fc = fastcontain
        self.containers: list[Any] = []
        self.pools: list[Any] = []

    def run(self, image: Any, command: Any = None, **kwargs: Any) -> Any:
        """fastcontain.run: the container is gone when it returns, whatever it did."""
        return self._fc.run(image, command, **kwargs)

    def container(self, image: Any, command: Any = None, **options: Any) -> Any:
        """A new Container (not created yet), removed after the test."""
        c = self._fc.Container(image, command, **options)
        self.containers.append(c)
        return c

    def create(self, image: Any, command: Any = None, **options: Any) -> Any:
        """A created Container, removed after the test."""
        return self.container(image, command, **options).create()

    def pool(self, image: Any, size: int = 4, **options: Any) -> Any:
        """A Pool, closed after the test."""
        p = self._fc.Pool(image, size, **options)
        self.pools.append(p)
        return p

    def cleanup(self) -> None:
        errors: list[BaseException] = []
        for c in reversed(self.containers):
            try:
                c.remove(force=True)
            except BaseException as e:  # keep removing the others
                errors.append(e)
        for p in reversed(self.pools):
            try:
                p.close()
            except BaseException as e:
                errors.append(e)
        self.containers.clear()
        self.pools.clear()
        self._fc.teardown.flush()
        if errors:
            raise errors[0]


@pytest.fixture
def fastcontain() -> Iterator[Containers]:
    _skip_unless_supported()
    c = Containers()
    try:
        yield c
    finally:
        c.cleanup()


@pytest.fixture(scope="session")
def fastcontain_pool(request: pytest.FixtureRequest) -> Iterator[Any]:
    _skip_unless_supported()
    import fastcontain as _fc

    pool = _fc.Pool(
        request.config.getoption("--fastcontain-pool-image"), size=request.config.getoption("--fastcontain-pool-size")
    )
    try:
        yield pool
    finally:
        pool.close()
        _fc.teardown.flush()
