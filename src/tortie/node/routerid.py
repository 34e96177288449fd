"""BGP router ids (calico-behaviour.md §10): ``hash`` or a given dotted quad."""

from __future__ import annotations

import hashlib
import ipaddress

from tortie.errors import InvalidInput


def hashed_router_id(node_name: str) -> str:
    """SHA-256 of the name, first four bytes; a first byte above 223 (multicast and
    reserved space) loses 32.  ``kube-master`` -> ``25.79.212.8``."""
    b = bytearray(hashlib.sha256(node_name.encode()).digest()[:4])
    if b[0] > 223:
        b[0] -= 32
    return ".".join(str(x) for x in b)


def router_id(setting: str, node_name: str, ipv4: str | None) -> str:
    """The router id for CALICO_ROUTER_ID ``setting`` ("" = the node's IPv4 address)."""
    if setting == "hash":
        return hashed_router_id(node_name)
    if setting:
        try:
            return str(ipaddress.IPv4Address(setting))
        except ValueError:
            raise InvalidInput(
                f"CALICO_ROUTER_ID={setting[:40]!r} is not a dotted-quad IPv4 address; "
                "set CALICO_ROUTER_ID=hash or an address like 10.0.0.1"
            ) from None
    if ipv4 is None:
        raise InvalidInput(
            f"node {node_name} has no IPv4 address, so it has no BGP router id; "
            "set CALICO_ROUTER_ID=hash (or a dotted quad) for IPv6-only nodes"
        )
    return ipv4.split("/")[0]
