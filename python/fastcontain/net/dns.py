"""/etc/hosts, /etc/resolv.conf and /etc/hostname of a bridged container.

They are written into the container's own state dir and bind-mounted over
the image's files, so the image is never written. A container's hosts file
lists its own name and address and its named peers on the same network; when
a peer comes or goes the file is rewritten in place (same inode: the bind
mount shows the new content).
"""

from __future__ import annotations

import ipaddress
import os
from typing import Iterable, Sequence

HOST_RESOLV = "/etc/resolv.conf"
BASE_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def hosts(hostname: str, address: str, name: str | None, peers: Iterable[tuple[str, str]]) -> str:
    own = " ".join(dict.fromkeys(n for n in (hostname, name) if n))
    lines = [BASE_HOSTS, f"{address}\t{own}\n"]
    lines += [f"{addr}\t{peer}\n" for peer, addr in sorted(peers) if peer]
    return "".join(lines)


def resolv_conf(dns: Sequence[str], host_file: str = HOST_RESOLV) -> str:
    """`dns` servers, or the host's resolv.conf without loopback nameservers (they
    would mean the container's own loopback); its search and options are kept."""
    if dns:
        return "".join(f"nameserver {d}\n" for d in dns)
    try:
        with open(host_file) as f:
            text = f.read()
    except OSError:
        return ""
    kept = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                if ipaddress.ip_address(parts[1]).is_loopback:
                    continue
            except ValueError:
                continue
        kept.append(line)
    return "\n".join(kept) + "\n"


def write(path: str, text: str) -> None:
    """Write in place (truncate, not rename): a bind mount keeps showing the file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
