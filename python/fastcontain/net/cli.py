"""`fastcontain network create|ls|rm|inspect`: a thin layer over fastcontain.net."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import create, inspect, list_networks, remove


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "network",
        help="manage bridge networks",
        description="Bridge networks: a Linux bridge on the host, an address range, NAT to the outside "
        "(unless --internal) and isolation from other networks. The first one turns IPv4 forwarding on "
        "(net.ipv4.ip_forward=1), as docker does; removing the last turns it off again if fastcontain did.",
    )
    sub = p.add_subparsers(dest="network_command", required=True, metavar="COMMAND")
    c = sub.add_parser("create", help="create a network")
    c.add_argument("--subnet", metavar="CIDR", help="its IPv4 range (default: a free /24 of 172.31.0.0/16)")
    c.add_argument("--internal", action="store_true", help="no way out: no NAT, no route, nothing beyond the network")
    c.add_argument("name", metavar="NAME")
    sub.add_parser("ls", help="list networks")
    r = sub.add_parser("rm", help="remove networks (without containers)")
    r.add_argument("names", nargs="+", metavar="NAME")
    i = sub.add_parser("inspect", help="show networks as JSON")
    i.add_argument("names", nargs="+", metavar="NAME")


def main(args: argparse.Namespace) -> int:
    cmd = args.network_command
    if cmd == "create":
        net = create(args.name, args.subnet, args.internal)
        print(net.name)
    elif cmd == "ls":
        print(f"{'NAME':<20} {'SUBNET':<18} {'BRIDGE':<14} {'INTERNAL':<8} CONTAINERS")
        for n in list_networks():
            print(f"{n.name:<20} {n.subnet:<18} {n.bridge:<14} {str(n.internal).lower():<8} {len(n.leases)}")
    elif cmd == "rm":
        for name in args.names:
            remove(name)
            print(name)
    elif cmd == "inspect":
        json.dump([inspect(name) for name in args.names], sys.stdout, indent=2)
        print()
    return 0
