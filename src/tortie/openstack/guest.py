"""Guest-image changes a VM needs to learn its Neutron IPv6 address (pure).

Calico's Neutron integration serves IPv6 subnets as DHCPv6 stateful, so the guest must
(1) send a DHCPv6 request for its interface on boot, (2) accept router advertisements
(the default route), (3) work around the ISC DHCP client installing the leased address
with the subnet's prefix length instead of /128, and (4) delay router solicitation until
the interface is up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tortie.errors import InvalidInput

OSES = ("ubuntu", "centos")
FORMATS = ("cloud-init", "files")


@dataclass(frozen=True)
class GuestFile:
    """``text`` goes into ``path``: ``prepend`` puts it at the start of an existing
    file (a script), otherwise the file is created with it."""

    path: str
    text: str
    why: str
    prepend: bool = False


def guest_files(os_name: str, interface: str = "eth0") -> list[GuestFile]:
    if os_name == "ubuntu":
        return [
            GuestFile(
                f"/etc/network/interfaces.d/{interface}.cfg",
                f"iface {interface} inet6 dhcp\n        accept_ra 1\n",
                "request a DHCPv6 address on boot and accept router advertisements",
            ),
            GuestFile(
                "/sbin/dhclient-script",
                "new_ip6_prefixlen=128\n",
                "ISC dhclient prefix-length workaround: install the leased address as /128",
                prepend=True,
            ),
            GuestFile(
                f"/etc/sysctl.d/30-{interface}-rs-delay.conf",
                f"net.ipv6.conf.{interface}.router_solicitation_delay = 10\n",
                "delay router solicitation until the interface is up",
            ),
        ]
    if os_name == "centos":
        ifcfg = f"/etc/sysconfig/network-scripts/ifcfg-{interface}"
        return [
            GuestFile(ifcfg, "IPV6INIT=yes\nDHCPV6C=yes\n", "enable IPv6 and DHCPv6 on boot"),
            GuestFile(
                "/sbin/dhclient-script",
                "new_ip6_prefixlen=128\n",
                "ISC dhclient prefix-length workaround: install the leased address as /128",
                prepend=True,
            ),
            GuestFile(
                f"/etc/sysctl.d/30-{interface}-rs-delay.conf",
                f"net.ipv6.conf.{interface}.accept_ra = 1\n"
                f"net.ipv6.conf.{interface}.router_solicitation_delay = 10\n",
                "accept router advertisements; delay router solicitation",
            ),
        ]
    raise InvalidInput(f"guest OS {os_name!r} is unknown; use one of: {', '.join(OSES)}")


def render(os_name: str, fmt: str, interface: str = "eth0") -> str:
    files = guest_files(os_name, interface)
    if fmt == "files":
        return _render_files(files)
    if fmt == "cloud-init":
        return _render_cloud_init(os_name, files, interface)
    raise InvalidInput(f"output format {fmt!r} is unknown; use one of: {', '.join(FORMATS)}")


def _render_files(files: list[GuestFile]) -> str:
    out = []
    for f in files:
        where = "at the start (after the #! line) of" if f.prepend else "in"
        out.append(f"# {f.why}\n# add {where} {f.path}:\n{f.text}")
    return "\n".join(out)


def _quote(text: str) -> str:
    """Shell single quotes."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _command(shell: str) -> str:
    """A cloud-init runcmd entry: an argv list, written as JSON (which YAML reads)."""
    return json.dumps(["sh", "-c", shell])


def _render_cloud_init(os_name: str, files: list[GuestFile], interface: str) -> str:
    lines = ["#cloud-config", "write_files:"]
    for f in files:
        if f.prepend:
            continue
        lines += [f"  - path: {f.path}", "    append: true", "    content: |"]
        lines += [f"      {line}" for line in f.text.splitlines()]
    lines.append("runcmd:")
    for f in files:
        if f.prepend:
            first = f.text.rstrip("\n")
            sed = f"grep -qx {_quote(first)} {f.path} || sed -i {_quote('1a ' + first)} {f.path}"
            lines.append(f"  - {_command(sed)}")
    lines.append(f"  - {_command(f'sysctl -p /etc/sysctl.d/30-{interface}-rs-delay.conf')}")
    restart = "systemctl restart network" if os_name == "centos" else f"ifup {interface}"
    lines.append(f"  - {_command(restart)}")
    return "\n".join(lines) + "\n"
