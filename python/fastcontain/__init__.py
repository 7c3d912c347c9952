"""fastcontain: Linux containers you import.

    import fastcontain
    fastcontain.run("busybox", ["echo", "hi"], capture_output=True)

`run` behaves like subprocess.run; `Container` (or `create`) gives the
lifecycle: create, start, wait, kill, logs, remove. Options are the fields of
`Config`; a bad one raises ConfigError naming it before anything is created.
"""

from __future__ import annotations

from importlib import metadata as _metadata

from .api import CompletedProcess, Container, create, run
from .config import Config, Mount
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

try:
    __version__ = _metadata.version("fastcontain")
except _metadata.PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0+unknown"

__all__ = [
    "run",
    "create",
    "Container",
    "CompletedProcess",
    "Config",
    "Mount",
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
