"""``tortie node …``: the node agent's commands.

``startup`` is here; ``run``, ``status`` and ``health`` live in ``node_routing_cmd``,
``serve-cni`` in ``node_service_cmd``, ``cleanup`` in ``node_cleanup_cmd``; what they share in ``node_common`` (none of them
imports this module).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from tortie.cli.node_common import DEFAULT_RUN_DIR, setup_logging
from tortie.cli.settings import cli_store

__all__ = ["register", "setup_logging"]

STARTUP_HELP = f"""\
Read calico-node's environment and do what its start-up does, once: determine the node
name, detect or take the IPv4/IPv6 addresses, derive the BGP router id, create the
default IP pools when none of a family exists, write the Node resource, the nodename file
and the default IPAM configuration, and turn IP forwarding on.

variables (Calico's names and meanings):
  NODENAME, CALICO_NODENAME_FILE (default /var/lib/calico/nodename), HOSTNAME
  IP      autodetect (default when nothing is stored) | none | ADDRESS[/PREFIX]
  IP6     autodetect | none | ADDRESS[/PREFIX] (no prefix: /128); EMPTY KEEPS THE STORED
          VALUE AND NEVER DETECTS: set IP6=autodetect to detect
  IP_AUTODETECTION_METHOD, IP6_AUTODETECTION_METHOD
          first-found (default) | interface=REGEX,... | skip-interface=REGEX,...
          | cidr=CIDR,... | can-reach=DEST | kubernetes-internal-ip (reads the Node object
          in TORTIE_K8S_NODE_FILE)
  AUTODETECT_POLL_INTERVAL  re-detect while 'tortie node run' runs (e.g. 30s)
  CALICO_ROUTER_ID  hash | A.B.C.D | empty (the IPv4 address); IPv6-only nodes need one
  AS      BGP AS number (default 64512)
  CALICO_IPV4POOL_CIDR, CALICO_IPV6POOL_CIDR (or none), *_BLOCK_SIZE, *_NAT_OUTGOING,
  *_NODE_SELECTOR, CALICO_IPV4POOL_IPIP, *_VXLAN, NO_DEFAULT_POOLS
  FELIX_IPV6SUPPORT (default true), FELIX_IPFORWARDING (Enabled | Disabled)
  CALICO_NETWORKING_BACKEND  bird (default) | vxlan | none
  TORTIE_RUN_DIR  run-time files of 'tortie node run' (default {DEFAULT_RUN_DIR})

Autodetection never picks link-local, tentative, deprecated or temporary addresses or a
/32 or /128 (VIP-style) address while a better one exists, and logs which address it chose,
on which interface, and why.
"""


def register(sub: Any) -> None:
    from tortie.cli import node_cleanup_cmd, node_routing_cmd, node_service_cmd

    node = sub.add_parser(
        "node",
        help="the node agent: startup, run, status, health, cleanup",
        description="What calico-node does on every host: address detection, the Node "
        "resource, default pools, and routes between nodes with BIRD 2.",
    )
    node_sub = node.add_subparsers(dest="node_command", metavar="SUBCOMMAND")
    node_sub.required = True
    startup = node_sub.add_parser(
        "startup",
        help="one-shot node start-up from calico-node's environment variables",
        description=STARTUP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    startup.add_argument(
        "-o", "--output", choices=("text", "json"), default="text", help="result format"
    )
    startup.set_defaults(handler=_startup)
    node_routing_cmd.register(node_sub)
    node_service_cmd.register(node_sub)
    node_cleanup_cmd.register(node_sub)


def _startup(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from tortie.node.config import config_from_env
    from tortie.node.startup import startup

    log = setup_logging()
    config = config_from_env(os.environ)
    result = startup(config, cli_store(args.config), log)
    if args.output == "json":
        print(json.dumps(dataclasses.asdict(result), indent=2))
    else:
        print(
            f"node {result.node_name}: IPv4 {result.ipv4 or 'none'}, "
            f"IPv6 {result.ipv6 or 'none'}, router id {result.router_id or 'none'}, "
            f"AS {result.as_number}"
        )
    return 0
