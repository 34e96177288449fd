"""The host's interfaces, addresses and default routes, read from the kernel (``ip -j``).

Runs in the agent's own network namespace; reads only.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass

from tortie.dataplane.iproute import ip_binary
from tortie.errors import TortieError


@dataclass(frozen=True)
class HostAddress:
    """One address of one interface, with the flags autodetection ranks by."""

    ifname: str
    ifindex: int
    address: str
    prefixlen: int
    version: int
    scope: str
    deprecated: bool = False
    temporary: bool = False
    unusable: bool = False  # tentative or DAD failed

    @property
    def interface(self) -> str:
        """Host address with its prefix (``10.0.0.5/24``): never the network address."""
        return f"{self.address}/{self.prefixlen}"

    @property
    def vip_like(self) -> bool:
        """A single-address prefix (/32, /128): keepalived VIPs and the like."""
        return self.prefixlen == (32 if self.version == 4 else 128)


def _ip_json(*args: str) -> list[dict[str, object]]:
    try:
        out = subprocess.run(
            [ip_binary(), "-j", *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise TortieError(
            f"cannot read the host's network state (ip -j {' '.join(args)}): {exc}"
        ) from None
    data = json.loads(out or "[]")
    return [d for d in data if isinstance(d, dict)]


def host_addresses() -> list[HostAddress]:
    """Every address of every interface, interfaces in kernel (ifindex) order."""
    found = []
    for link in _ip_json("addr", "show"):
        ifname = str(link.get("ifname", ""))
        ifindex = int(str(link.get("ifindex", 0)))
        infos = link.get("addr_info")
        for info in infos if isinstance(infos, list) else []:
            if not isinstance(info, dict) or info.get("family") not in ("inet", "inet6"):
                continue
            found.append(
                HostAddress(
                    ifname=ifname,
                    ifindex=ifindex,
                    address=str(ipaddress.ip_address(str(info["local"]))),
                    prefixlen=int(info.get("prefixlen", 0)),
                    version=4 if info["family"] == "inet" else 6,
                    scope=str(info.get("scope", "global")),
                    deprecated=bool(info.get("deprecated")),
                    temporary=bool(info.get("temporary")),
                    unusable=bool(info.get("tentative") or info.get("dadfailed")),
                )
            )
    return sorted(found, key=lambda a: a.ifindex)


def has_default_route(version: int) -> bool:
    return bool(_ip_json(f"-{version}", "route", "show", "default"))
