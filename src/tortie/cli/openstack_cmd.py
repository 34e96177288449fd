"""``tortie openstack guest-config``: the guest-image changes a VM needs for IPv6."""

from __future__ import annotations

import argparse
import sys
from typing import Any

GUEST_HELP = """\
Print the changes a guest image needs so a VM learns the IPv6 address OpenStack chose:
send a DHCPv6 request on boot, accept router advertisements, install the DHCPv6 address
as /128 (the ISC DHCP client prefix-length workaround), and delay router solicitation.
Apply them to an image and snapshot it, or pass the cloud-init form as user data.

  --format cloud-init   a #cloud-config document (default)
  --format files        each file and the lines to put in it
"""


def register(sub: Any) -> None:
    from tortie.openstack.guest import FORMATS, OSES

    os_parser = sub.add_parser(
        "openstack",
        help="OpenStack helpers (guest image configuration)",
        description="OpenStack helpers.",
    )
    verbs = os_parser.add_subparsers(dest="openstack_command", metavar="VERB")
    verbs.required = True
    guest = verbs.add_parser(
        "guest-config",
        help="print the guest-image changes for IPv6 (DHCPv6, router advertisements)",
        description=GUEST_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    guest.add_argument("--os", required=True, choices=OSES, help="the guest image's OS")
    guest.add_argument("--format", default="cloud-init", choices=FORMATS, help="output form")
    guest.add_argument(
        "--interface", default="eth0", help="the guest's interface name (default: eth0)"
    )
    guest.set_defaults(handler=_guest_config)


def _guest_config(args: argparse.Namespace) -> int:
    from tortie.openstack.guest import render

    sys.stdout.write(render(args.os, args.format, args.interface))
    return 0
