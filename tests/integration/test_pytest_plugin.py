"""The pytest plugin's fixtures with real containers, in a child pytest (pytester): a
failing test's containers are removed anyway, the session pool serves every test."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.privileged


def test_fixtures_run_containers_and_remove_them_whatever_happens(pytester: pytest.Pytester, session_dirs) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_runs(fastcontain):
            r = fastcontain.run("busybox", ["sh", "-c", "echo $$"], capture_output=True, text=True)
            assert r.stdout == "1\\n"

        def test_fails_with_containers_running(fastcontain):
            c = fastcontain.create("busybox", ["sleep", "3600"])
            c.start()
            fastcontain.pool("busybox", size=2).wait_ready(30)
            assert False, "the test fails; its containers must go anyway"

        @pytest.mark.containers
        def test_marked_runs_here():
            pass

        def test_session_pool(fastcontain_pool):
            assert fastcontain_pool.run(["true"]).returncode == 0

        def test_session_pool_again(fastcontain_pool):
            assert fastcontain_pool.run(["sh", "-c", "exit 3"]).returncode == 3
        """
    )
    result = pytester.runpytest_subprocess("--fastcontain-pool-size=2")
    result.assert_outcomes(passed=4, failed=1)
    left = [e for e in os.listdir(session_dirs.root) if e not in ("lock", "names", "networks")]
    assert left == []
