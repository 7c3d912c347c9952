"""The pytest plugin (fastcontain.pytest_plugin, a pytest11 entry point), run by pytester
in a child pytest. Here: registration and the skips on a host that cannot run
containers; the integration twin runs real containers through the fixtures."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

UNSUPPORTED = """
import fastcontain.pytest_plugin as plugin
plugin._support = (False, "simulated: this host has no namespaces")
"""


def test_the_plugin_is_installed_as_an_entry_point() -> None:
    from importlib import metadata

    eps = metadata.entry_points(group="pytest11")
    assert any(ep.name == "fastcontain" and ep.value == "fastcontain.pytest_plugin" for ep in eps)


def test_marker_and_fixtures_skip_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(UNSUPPORTED)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.containers
        def test_marked():
            raise AssertionError("must not run")

        def test_fixture(fastcontain):
            raise AssertionError("must not run")

        def test_pool(fastcontain_pool):
            raise AssertionError("must not run")

        def test_plain():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-rs")
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines(["*simulated: this host has no namespaces*"])


def test_not_root_is_the_reason_given(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    import fastcontain.pytest_plugin as plugin

    monkeypatch.setattr(plugin, "_support", None)
    monkeypatch.setattr(plugin.os, "geteuid", lambda: 1000)
    assert plugin.host_support() == (False, "fastcontain needs root to create namespaces (user namespaces come later)")


def test_the_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.containers:*"])
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*--fastcontain-pool-size*"])
