"""What the VXLAN dataplane must look like on one node: a pure function of the cluster.

Calico's behaviour (calico-behaviour.md §17): one device per family, ``vxlan.calico``
(IPv4 underlay and overlay) and ``vxlan-v6.calico`` (IPv6), VNI 4096, UDP port 4789,
learning off, local address = this node's host address, the node's tunnel address on it
(/32, /128).  Per remote VTEP (a node with a tunnel address and a MAC of that family): a
permanent neighbour entry (tunnel IP -> MAC) and a permanent FDB entry (MAC -> the remote
host address), a direct route to the remote tunnel address, and a route for each of the
remote node's blocks inside a VXLAN pool via the remote tunnel address, ``onlink``, over
the device.  ``CrossSubnet`` pools send to nodes whose host address lies inside this
node's own prefix natively (via that host address) and to the others through the tunnel.
Until both ends have a VTEP (this node's or the remote's tunnel address and MAC not in
the datastore yet), a remote in this node's prefix is routed natively in ``Always`` pools
too: BIRD stops installing a pool's routes the moment it turns VXLAN, and a pool switched
from ``Never`` would otherwise leave its pods without any route for a moment.

Everything VXLAN routes is kept out of BIRD's kernel export: ``unprogrammed_pools`` lists
the pools (per family) BIRD must not install (Felix owns them in Calico too).

No I/O here: ``tortie.dataplane.vxlan`` applies a ``VxlanState``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tortie.errors import InvalidInput
from tortie.model.ippool import IPPool
from tortie.model.node import Node

DEVICE_V4 = "vxlan.calico"
DEVICE_V6 = "vxlan-v6.calico"
DEFAULT_VNI = 4096
DEFAULT_PORT = 4789
# Overheads (calico-behaviour.md §17): VXLAN over IPv4 50 bytes, over IPv6 70.
OVERHEAD_V4 = 50
OVERHEAD_V6 = 70
# The route protocol number tortie's VXLAN routes carry (rtnetlink "protocol"): the
# applier only ever changes or deletes routes with this number.  Not one of iproute2's
# registered names (boot 3, static 4, bird 12, ... babel 42, bgp 186 ...).
ROUTE_PROTOCOL = 81

ALWAYS = "Always"
CROSS_SUBNET = "CrossSubnet"
NEVER = "Never"
MODES = (ALWAYS, CROSS_SUBNET, NEVER)

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@dataclass(frozen=True)
class VtepNode:
    """A node as the VXLAN dataplane sees it (plain values; see ``from_node``).

    ``ipv4_address`` / ``ipv6_address`` keep their prefix (``10.0.0.5/24``), as Calico's
    ``spec.bgp.ipv4Address``: the prefix decides ``CrossSubnet``.  ``blocks`` are the
    CIDRs of the node's affine blocks (both families)."""

    name: str
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    ipv4_tunnel_addr: str | None = None
    ipv4_tunnel_mac: str | None = None
    ipv6_tunnel_addr: str | None = None
    ipv6_tunnel_mac: str | None = None
    blocks: tuple[str, ...] = ()


@dataclass(frozen=True)
class VxlanPool:
    cidr: str
    vxlan_mode: str = NEVER


@dataclass(frozen=True)
class VxlanSettings:
    """``FELIX_VXLANVNI``, ``FELIX_VXLANPORT``, ``FELIX_VXLANMTU``, ``FELIX_VXLANMTUV6``."""

    vni: int = DEFAULT_VNI
    port: int = DEFAULT_PORT
    mtu_v4: int = 1500 - OVERHEAD_V4
    mtu_v6: int = 1500 - OVERHEAD_V6


@dataclass(frozen=True, order=True)
class Device:
    name: str
    vni: int
    port: int
    local: str  # this node's host address (no prefix)
    mtu: int
    mac: str
    address: str  # the tunnel address with its host prefix: "10.244.1.0/32"


@dataclass(frozen=True, order=True)
class Neighbour:
    """Permanent ARP/NDP entry on the device: remote tunnel IP -> remote VTEP MAC."""

    ip: str
    mac: str


@dataclass(frozen=True, order=True)
class FdbEntry:
    """Permanent FDB entry on the device: remote VTEP MAC -> remote host address."""

    mac: str
    dst: str


@dataclass(frozen=True, order=True)
class Route:
    """``dst`` via ``gateway``.  ``tunnel`` routes go over the family's VXLAN device
    (``onlink`` when they have a gateway, scope link when not); a native route (``tunnel``
    false, ``gateway`` a remote host address) leaves the choice of device to the kernel."""

    dst: str
    gateway: str | None
    tunnel: bool


@dataclass(frozen=True)
class FamilyState:
    version: int
    device: Device | None = None
    neighbours: frozenset[Neighbour] = frozenset()
    fdb: frozenset[FdbEntry] = frozenset()
    routes: frozenset[Route] = frozenset()

    @property
    def device_name(self) -> str:
        return DEVICE_V4 if self.version == 4 else DEVICE_V6


@dataclass(frozen=True)
class VxlanState:
    v4: FamilyState = field(default_factory=lambda: FamilyState(4))
    v6: FamilyState = field(default_factory=lambda: FamilyState(6))
    # Pools whose routes VXLAN carries: BIRD must not program them into the kernel.
    unprogrammed_pools: Mapping[int, tuple[str, ...]] = field(
        default_factory=lambda: {4: (), 6: ()}
    )

    def families(self) -> tuple[FamilyState, FamilyState]:
        return (self.v4, self.v6)


def desired(
    local: VtepNode,
    others: Iterable[VtepNode],
    pools: Iterable[VxlanPool],
    settings: VxlanSettings = VxlanSettings(),
) -> VxlanState:
    """The VXLAN state of ``local`` given every other node (their blocks included)."""
    pool_list = [_checked_pool(p) for p in pools]
    remotes = sorted((n for n in others if n.name != local.name), key=lambda n: n.name)
    v4 = _family(4, local, remotes, pool_list, settings)
    v6 = _family(6, local, remotes, pool_list, settings)
    unprogrammed = {
        version: tuple(
            sorted(
                {
                    p.cidr
                    for p in pool_list
                    if _net(p.cidr).version == version and p.vxlan_mode != NEVER
                }
            )
        )
        for version in (4, 6)
    }
    return VxlanState(v4=v4, v6=v6, unprogrammed_pools=unprogrammed)


def _family(
    version: int,
    local: VtepNode,
    remotes: list[VtepNode],
    pools: list[VxlanPool],
    settings: VxlanSettings,
) -> FamilyState:
    vxlan_pools = [
        (_net(p.cidr), p.vxlan_mode)
        for p in pools
        if _net(p.cidr).version == version and p.vxlan_mode != NEVER
    ]
    host = _host_interface(local, version)
    if not vxlan_pools or host is None:
        return FamilyState(version)
    tunnel, mac = _tunnel(local, version)
    device = None
    if tunnel is not None and mac is not None:
        device = Device(
            name=DEVICE_V4 if version == 4 else DEVICE_V6,
            vni=settings.vni,
            port=settings.port,
            local=str(host.ip),
            mtu=settings.mtu_v4 if version == 4 else settings.mtu_v6,
            mac=mac,
            address=f"{tunnel}/{32 if version == 4 else 128}",
        )
    neighbours: set[Neighbour] = set()
    fdb: set[FdbEntry] = set()
    routes: dict[str, Route] = {}
    for remote in remotes:
        remote_host = _host_interface(remote, version)
        if remote_host is None:
            continue
        remote_tunnel, remote_mac = _tunnel(remote, version)
        vtep = device is not None and remote_tunnel is not None and remote_mac is not None
        if vtep and remote_tunnel is not None and remote_mac is not None:
            neighbours.add(Neighbour(remote_tunnel, remote_mac))
            fdb.add(FdbEntry(remote_mac, str(remote_host.ip)))
            routes[_host_cidr(remote_tunnel)] = Route(_host_cidr(remote_tunnel), None, True)
        same_subnet = remote_host.ip in host.network
        for block in remote.blocks:
            net = _net(block, f"node {remote.name} block")
            if net.version != version:
                continue
            mode = next((m for pool, m in vxlan_pools if _subnet_of(net, pool)), None)
            if mode is None:
                continue  # not a VXLAN pool: BIRD's (or nobody's) route
            if same_subnet and (mode == CROSS_SUBNET or not vtep):
                # CrossSubnet, or no tunnel yet at one end (a pool just switched from
                # Never, a node just started): the peer is on this link, so route natively
                # rather than not at all; BIRD no longer installs routes in this pool.
                routes[str(net)] = Route(str(net), str(remote_host.ip), False)
            elif vtep:
                routes[str(net)] = Route(str(net), remote_tunnel, True)
    return FamilyState(
        version, device, frozenset(neighbours), frozenset(fdb), frozenset(routes.values())
    )


def from_node(node: Node, blocks: Iterable[str] = ()) -> VtepNode:
    """A ``VtepNode`` from a ``tortie.model.node.Node`` (empty fields read as unset)."""
    return VtepNode(
        name=node.name,
        ipv4_address=node.ipv4_address or None,
        ipv6_address=node.ipv6_address or None,
        ipv4_tunnel_addr=node.ipv4_vxlan_tunnel_addr or None,
        ipv4_tunnel_mac=node.vxlan_tunnel_mac or None,
        ipv6_tunnel_addr=node.ipv6_vxlan_tunnel_addr or None,
        ipv6_tunnel_mac=node.vxlan_tunnel_mac_v6 or None,
        blocks=tuple(blocks),
    )


def from_pool(pool: IPPool) -> VxlanPool:
    """A ``VxlanPool`` from a ``tortie.model.ippool.IPPool``.  Disabled pools count too:
    their existing blocks keep their routes."""
    return VxlanPool(pool.cidr, pool.vxlan_mode)


def _checked_pool(pool: VxlanPool) -> VxlanPool:
    if pool.vxlan_mode not in MODES:
        raise InvalidInput(
            f"IPPool {pool.cidr}: vxlanMode {pool.vxlan_mode!r} is not one of "
            f"{', '.join(MODES)}: set one of them"
        )
    _net(pool.cidr, f"IPPool {pool.cidr}")
    return pool


def _net(text: str, what: str = "pool") -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        raise InvalidInput(f"{what}: {text!r} is not a CIDR: write it like 10.244.0.0/26") from None


def _subnet_of(
    net: ipaddress.IPv4Network | ipaddress.IPv6Network,
    pool: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> bool:
    return net.version == pool.version and net.subnet_of(pool)  # type: ignore[arg-type]


def _host_interface(
    node: VtepNode, version: int
) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface | None:
    text = node.ipv4_address if version == 4 else node.ipv6_address
    if not text:
        return None
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise InvalidInput(
            f"node {node.name}: host address {text!r} is not an IPv{version} address: "
            "write it with its prefix, like 10.0.0.5/24"
        ) from None
    if iface.version != version:
        raise InvalidInput(
            f"node {node.name}: host address {text!r} is not an IPv{version} address: "
            f"set an IPv{version} address"
        )
    return iface


def _tunnel(node: VtepNode, version: int) -> tuple[str | None, str | None]:
    addr = node.ipv4_tunnel_addr if version == 4 else node.ipv6_tunnel_addr
    mac = node.ipv4_tunnel_mac if version == 4 else node.ipv6_tunnel_mac
    if addr:
        try:
            ip = ipaddress.ip_address(addr.split("/")[0])
        except ValueError:
            ip = None
        if ip is None or ip.version != version:
            raise InvalidInput(
                f"node {node.name}: VXLAN tunnel address {addr!r} is not an IPv{version} "
                "address: write a bare address"
            )
        addr = str(ip)
    if mac:
        mac = mac.lower()
        if not _MAC.match(mac):
            raise InvalidInput(
                f"node {node.name}: VXLAN tunnel MAC {mac!r} is not a MAC address: "
                "write it like 66:1f:0c:aa:bb:cc"
            )
    return (addr or None), (mac or None)


def _host_cidr(ip: str) -> str:
    return f"{ip}/{32 if ':' not in ip else 128}"
