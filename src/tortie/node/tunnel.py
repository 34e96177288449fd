"""Tunnel addresses and VTEP MACs of a node (calico-behaviour.md §17).

``tunnel_settings`` is pure: which encapsulations this node needs, from the pools that
select it.  ``ensure_tunnel_addresses`` makes the datastore match: one IPAM address per
enabled encapsulation (Calico's handles and ``type`` attributes), written to the Node,
released when the encapsulation goes.  Idempotent; call at startup and on pool changes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping

from tortie.core.record import record, replace
from tortie.core.selector import parse_selector
from tortie.datastore.base import Datastore
from tortie.errors import Exhausted, InvalidInput, NotFound
from tortie.ipam.nodes import NodeService
from tortie.ipam.pools import load_pools
from tortie.ipam.requests import TUNNEL, AutoAssignArgs
from tortie.ipam.service import Ipam
from tortie.model.ippool import IPPool
from tortie.model.node import Node

LOG = logging.getLogger("tortie.node.tunnel")

IPIP, VXLAN, VXLAN_V6 = "ipip", "vxlan", "vxlan-v6"
KINDS = (IPIP, VXLAN, VXLAN_V6)
_HANDLE = {
    IPIP: "ipip-tunnel-addr-",
    VXLAN: "vxlan-tunnel-addr-",
    VXLAN_V6: "vxlan-v6-tunnel-addr-",
}
_TYPE = {IPIP: "ipipTunnelAddress", VXLAN: "vxlanTunnelAddress", VXLAN_V6: "vxlanV6TunnelAddress"}
_FIELD = {
    IPIP: "ipv4_ipip_tunnel_addr",
    VXLAN: "ipv4_vxlan_tunnel_addr",
    VXLAN_V6: "ipv6_vxlan_tunnel_addr",
}
_VERSION = {IPIP: 4, VXLAN: 4, VXLAN_V6: 6}


def handle_for(kind: str, node: str) -> str:
    """Calico's IPAM handle of a node's tunnel address (``vxlan-tunnel-addr-<node>``)."""
    return _HANDLE[kind] + node


def tunnel_handles(node: str) -> tuple[str, ...]:
    return tuple(handle_for(k, node) for k in KINDS)


def is_tunnel_handle(handle: str | None) -> bool:
    return handle is not None and any(handle.startswith(p) for p in _HANDLE.values())


def derived_mac(node: str, version: int = 4) -> str:
    """A VTEP MAC from a hash of the node name (``<name>-v6`` for IPv6): unicast and
    locally administered, the same on every node that computes it."""
    seed = node if version == 4 else node + "-v6"
    raw = bytearray(hashlib.sha1(seed.encode()).digest()[:6])
    raw[0] = (raw[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


@record
class TunnelSettings:
    """Per encapsulation kind, the names of the pools that want it on this node (sorted);
    a kind with no pools is off."""

    node: str
    pools: Mapping[str, tuple[str, ...]]

    def enabled(self, kind: str) -> bool:
        return bool(self.pools.get(kind))

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k in KINDS if self.enabled(k))


def tunnel_settings(node: Node, pools: Iterable[IPPool], backend: str = "bird") -> TunnelSettings:
    """Which encapsulations ``node`` needs: enabled pools whose nodeSelector matches it
    and that allow Tunnel use, by mode; a family only when the node has an address of
    it; nothing with ``CALICO_NETWORKING_BACKEND=none``."""
    want: dict[str, list[str]] = {k: [] for k in KINDS}
    if backend != "none":
        for pool in pools:
            if pool.disabled or TUNNEL not in pool.allowed_uses:
                continue
            if not parse_selector(pool.node_selector).matches(node.labels):
                continue
            if pool.version == 4 and node.ipv4_address:
                if pool.vxlan_mode != "Never":
                    want[VXLAN].append(pool.name)
                if pool.ipip_mode != "Never":
                    want[IPIP].append(pool.name)
            elif pool.version == 6 and node.ipv6_address and pool.vxlan_mode != "Never":
                want[VXLAN_V6].append(pool.name)
    return TunnelSettings(node.name, {k: tuple(sorted(v)) for k, v in want.items() if v})


def check_ipip_supported(settings: TunnelSettings, kernel_has_ipip: bool) -> None:
    """Refuse IPIP on a kernel without the ``ipip`` module: one line, never silence."""
    if settings.enabled(IPIP) and not kernel_has_ipip:
        pools = ", ".join(settings.pools[IPIP])
        raise InvalidInput(
            f"node {settings.node}: IPPool {pools} asks for ipipMode but this kernel lacks "
            "the ipip module (CONFIG_NET_IPIP); set ipipMode: Never and vxlanMode: Always "
            "(or CrossSubnet) on the pool"
        )


def kernel_has_ipip(modules_dir: str | None = None) -> bool:
    """Whether the running kernel can make ``tunl0``: built in, loaded, or a module file."""
    import os

    if os.path.exists("/sys/module/ipip"):
        return True
    release = os.uname().release
    base = modules_dir or f"/lib/modules/{release}"
    for name in ("modules.builtin", "modules.dep"):
        try:
            with open(os.path.join(base, name), encoding="utf-8") as fh:
                if any("/ipip.ko" in line for line in fh):
                    return True
        except OSError:
            continue
    return False


# ----------------------------------------------------------------- datastore side


def _current(ipam: Ipam, address: str | None, handle: str, pools: list[IPPool]) -> bool:
    """The Node's recorded address is allocated to ``handle`` inside one of ``pools``."""
    if not address:
        return False
    found = ipam.find_allocation(address)
    if found is None:
        return False
    block, ordinal = found
    owner = block.owner(ordinal)
    if owner is None or owner.handle_id != handle:
        return False
    import ipaddress

    addr = ipaddress.ip_address(address)
    return any(addr in p.network for p in pools)


def _release(ipam: Ipam, handle: str) -> list[str]:
    try:
        return ipam.release_by_handle(handle)
    except NotFound:
        return []


def ensure_tunnel_addresses(
    store: Datastore,
    node_name: str,
    backend: str = "bird",
    log: logging.Logger = LOG,
) -> Node:
    """Make the node's tunnel addresses and MACs match its pools; returns the Node."""
    nodes = NodeService(store)
    node = nodes.get(node_name)
    if node is None:
        raise NotFound(f"node {node_name} does not exist; start the node first")
    pools = load_pools(store)
    settings = tunnel_settings(node, pools, backend)
    by_name = {p.name: p for p in pools}
    ipam = Ipam(store)
    addresses: dict[str, str | None] = {}
    for kind in KINDS:
        handle = handle_for(kind, node_name)
        recorded: str | None = getattr(node, _FIELD[kind])
        if not settings.enabled(kind):
            if _release(ipam, handle) or recorded:
                log.info("released %s tunnel address of node %s", kind, node_name)
            addresses[kind] = None
            continue
        wanted = [by_name[n] for n in settings.pools[kind]]
        if _current(ipam, recorded, handle, wanted):
            addresses[kind] = recorded
            continue
        _release(ipam, handle)
        v = _VERSION[kind]
        result = ipam.auto_assign(
            AutoAssignArgs(
                node=node_name,
                handle_id=handle,
                num4=1 if v == 4 else 0,
                num6=1 if v == 6 else 0,
                attrs={"node": node_name, "type": _TYPE[kind]},
                ipv4_pools=tuple(settings.pools[kind]) if v == 4 else (),
                ipv6_pools=tuple(settings.pools[kind]) if v == 6 else (),
                intent=TUNNEL,
            )
        )
        got = (result.ipv4 if v == 4 else result.ipv6).addresses
        if not got:
            raise Exhausted(
                f"node {node_name}: no free address for its {kind} tunnel in IPPool "
                f"{', '.join(settings.pools[kind])}; free addresses or add a pool"
            )
        addresses[kind] = got[0].partition("/")[0]
        log.info("node %s: %s tunnel address %s", node_name, kind, addresses[kind])

    def change(old: Node | None) -> Node:
        base = old or node
        mac4, mac6 = base.vxlan_tunnel_mac, base.vxlan_tunnel_mac_v6
        if settings.enabled(VXLAN):
            mac4 = mac4 or derived_mac(node_name, 4)
        elif mac4 == derived_mac(node_name, 4):
            mac4 = None
        if settings.enabled(VXLAN_V6):
            mac6 = mac6 or derived_mac(node_name, 6)
        elif mac6 == derived_mac(node_name, 6):
            mac6 = None
        return replace(
            base,
            ipv4_ipip_tunnel_addr=addresses[IPIP],
            ipv4_vxlan_tunnel_addr=addresses[VXLAN],
            ipv6_vxlan_tunnel_addr=addresses[VXLAN_V6],
            vxlan_tunnel_mac=mac4,
            vxlan_tunnel_mac_v6=mac6,
        )

    return nodes.update(node_name, change)


def release_tunnel_addresses(store: Datastore, node_name: str) -> list[str]:
    """Give back every tunnel address of a node (it is being deleted)."""
    ipam = Ipam(store)
    released: list[str] = []
    for handle in tunnel_handles(node_name):
        released += _release(ipam, handle)
    return released
