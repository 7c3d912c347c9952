"""The supervisor's wire: errors cross the process boundary as the same exceptions, and
a request to a container without a supervisor says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastcontain import ConfigError, ContainerError, SpawnError, state, supervisor


def roundtrip(e: BaseException) -> BaseException:
    return supervisor.error_from_json(supervisor.error_to_json(e))


def test_a_spawn_error_keeps_its_step_errno_and_message() -> None:
    e = SpawnError("execve of /x failed", step="execve", errno=2, path="/x")
    back = roundtrip(e)
    assert isinstance(back, SpawnError)
    assert (back.step, back.errno, back.path, str(back)) == ("execve", 2, "/x", str(e))


def test_a_config_error_keeps_its_field() -> None:
    back = roundtrip(ConfigError("user", "nobody:x", "no group"))
    assert isinstance(back, ConfigError) and back.field == "user" and "no group" in str(back)


def test_other_errors_become_container_errors() -> None:
    back = roundtrip(ContainerError("the name 'web' is in use"))
    assert isinstance(back, ContainerError) and str(back) == "the name 'web' is in use"
    back = roundtrip(RuntimeError("boom"))
    assert isinstance(back, ContainerError) and str(back) == "boom"


def test_no_supervisor_no_answer(tmp_path: Path) -> None:
    s = state.create(str(tmp_path))
    try:
        with pytest.raises(ContainerError, match="has no supervisor"):
            supervisor.request(s.paths, {"op": "ping"})
    finally:
        s.remove()
    with pytest.raises(ContainerError, match="was removed"):
        supervisor.request(s.paths, {"op": "ping"})
