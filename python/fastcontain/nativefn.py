"""The native module's optional functions, for the places that have a Python way too."""

from __future__ import annotations

from typing import Any


def get(name: str) -> Any:
    """fastcontain._native's function `name`, or None without it: no native module (the
    package imported from its sources), or the unit tests' stand-in, which lacks it.
    Looked up at each call (the stand-in comes and goes between tests)."""
    try:
        from . import _native
    except ImportError:
        return None
    return getattr(_native, name, None)
