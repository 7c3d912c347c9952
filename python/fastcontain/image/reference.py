"""Image references as docker spells them: [REGISTRY[:PORT]/]PATH[:TAG][@DIGEST].

The first component is a registry when it has a '.' or a ':' or is 'localhost';
otherwise the registry is docker.io, where one-component names live under
library/. Stored names are normalized (docker.io/library/busybox:latest) and
shown short (busybox:latest), as docker shows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ImageError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_TAG = re.compile(r"[\w][\w.-]{0,127}\Z")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}\Z")
_HOST = re.compile(r"(?:[a-zA-Z0-9-]+\.)*[a-zA-Z0-9-]+(?::[0-9]+)?\Z|\[[0-9a-fA-F:]+\](?::[0-9]+)?\Z")


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """registry/repository, normalized."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """What to ask the registry's manifests endpoint for."""
        return self.digest or self.tag or "latest"

    def tagged(self) -> str:
        """name:tag, the key a tag is stored under ('latest' unless a digest alone was given)."""
        return f"{self.name}:{self.tag or 'latest'}"

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


def parse(ref: str) -> Reference:
    """Parse and normalize; ImageError naming what is wrong."""
    if not ref or ref != ref.strip():
        raise ImageError(f"invalid image reference {ref!r}: empty or surrounded by spaces")
    rest, digest = ref, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise ImageError(f"invalid image reference {ref!r}: {digest!r} is not a sha256:<64 hex> digest")
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
        if not _HOST.match(registry):
            raise ImageError(f"invalid image reference {ref!r}: bad registry host {registry!r}")
    else:
        registry, path = DOCKER_HUB, rest
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
        if not _TAG.match(tag):
            raise ImageError(f"invalid image reference {ref!r}: bad tag {tag!r}")
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    for component in path.split("/"):
        if not _PATH_COMPONENT.match(component):
            raise ImageError(
                f"invalid image reference {ref!r}: {component!r} must be lowercase letters, digits and "
                "separators (., _, __, -)"
            )
    return Reference(registry, path, tag, digest)


def short(name: str) -> str:
    """docker.io/library/busybox:latest -> busybox:latest; other names unchanged."""
    if name.startswith(f"{DOCKER_HUB}/library/"):
        return name[len(f"{DOCKER_HUB}/library/"):]
    if name.startswith(f"{DOCKER_HUB}/"):
        return name[len(f"{DOCKER_HUB}/"):]
    return name


def looks_like_reference(name: str) -> bool:
    try:
        parse(name)
        return True
    except ImageError:
        return False
