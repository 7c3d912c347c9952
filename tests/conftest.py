"""Shared by every test tier: the `privileged` marker, per-session runtime and
image-store folders, and the leak check after each privileged test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import harness
from harness import pytest_configure, pytest_unconfigure  # noqa: F401 (hooks: the session's folders)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("privileged"):
        harness.skip_unless_root()


@pytest.fixture(scope="session")
def session_dirs() -> harness.SessionDirs:
    return harness.session()


@pytest.fixture(scope="session")
def _warmed_up() -> None:
    harness.warm_up()


@pytest.fixture(autouse=True)
def _leak_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each privileged test, the leak check. Autouse fixtures are set up first,
    so this one is torn down after the test's own fixtures: their teardown counts."""
    if request.node.get_closest_marker("privileged") is None:
        yield
        return
    request.getfixturevalue("_warmed_up")
    with harness.leak_checked(request.getfixturevalue("session_dirs").root):
        yield
