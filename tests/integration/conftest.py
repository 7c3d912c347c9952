from __future__ import annotations

from pathlib import Path

import pytest

from .util import build_busybox_image


@pytest.fixture(scope="session")
def dir_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image given as a directory path (never written to by a container)."""
    return build_busybox_image(tmp_path_factory.mktemp("fastcontain-image") / "rootfs")
