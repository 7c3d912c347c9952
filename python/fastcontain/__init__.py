"""fastcontain: Linux containers you import.

    import fastcontain
    fastcontain.run("busybox", ["echo", "hi"], capture_output=True)

`run` behaves like subprocess.run; `Container` (or `create`) gives the
lifecycle: create, start, wait, kill, logs, remove. Options are the fields of
`Config`; a bad one raises ConfigError naming it before anything is created.
"""

from __future__ import annotations

# fastcontain-oci starts an interpreter per call: not even typing (~4 ms) is imported here
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from . import profile, teardown
    from .aio import AsyncContainer, arun
    from .api import CompletedProcess, Container, create, run
    from .pool import Pool
    from .config import Config, Mount
    from .result import Result
    from .errors import (
        CalledProcessError,
        CgroupError,
        ConfigError,
        ContainerError,
        FastcontainError,
        ImageError,
        SpawnError,
        TimeoutExpired,
    )

    __version__: str

# Imported on first use (PEP 562): `fastcontain-oci` starts an interpreter per call and
# needs none of this; importing the API and importlib.metadata costs ~65 ms.
_LAZY = {
    "run": "api", "create": "api", "Container": "api", "CompletedProcess": "api", "Config": "config",
    "Mount": "config", "arun": "aio", "AsyncContainer": "aio", "Pool": "pool", "Result": "result",
    **{name: "errors" for name in ("FastcontainError", "ConfigError", "ImageError", "SpawnError", "CgroupError",
                                   "ContainerError", "TimeoutExpired", "CalledProcessError")},
}

_SUBMODULES = ("teardown", "profile")


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib import metadata

        try:
            version = metadata.version("fastcontain")
        except metadata.PackageNotFoundError:  # a source checkout that was never installed
            version = "0+unknown"
        globals()["__version__"] = version
        return version
    if name in _SUBMODULES:
        from importlib import import_module

        return import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fastcontain' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "run",
    "arun",
    "AsyncContainer",
    "create",
    "Container",
    "Pool",
    "teardown",
    "CompletedProcess",
    "Config",
    "Mount",
    "Result",
    "FastcontainError",
    "ConfigError",
    "ImageError",
    "SpawnError",
    "ContainerError",
    "CgroupError",
    "TimeoutExpired",
    "CalledProcessError",
    "__version__",
]
