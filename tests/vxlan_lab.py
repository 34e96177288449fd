"""VXLAN tests and bench: two L2 segments joined by a plain router, nodes, pods (root).

Layout: the router namespace holds two bridges, ``seg-a`` (10.1.0.0/24, fd00:a::/64) and
``seg-b`` (10.2.0.0/24, fd00:b::/64), with its own address on each and forwarding on; it
knows only the two host subnets — no pod routes, no BGP.  Node ``i`` sits on one segment
(host address 10.<seg>.0.<10+i>/24, fd00:<seg>::<10+i>/64), owns the blocks
10.244.<i>.0/26 and fd00:244:0:<i>::/122, takes the first address of each as its VXLAN
tunnel address and the second for its pod.  A pod is a namespace with a veth ``eth0``
(default routes via 169.254.1.1 / fe80::1 on the node's side, as Calico's).
"""

from __future__ import annotations

from dataclasses import dataclass

from netns import Netns, NetnsPool
from tortie.dataplane.vxlan import ApplyResult, VxlanDataplane
from tortie.node.vxlan import VtepNode, VxlanPool, VxlanSettings, VxlanState, desired

SEGMENTS = {"a": 1, "b": 2}
POOL4 = "10.244.0.0/16"
POOL6 = "fd00:244::/48"


@dataclass
class LabNode:
    index: int
    segment: str
    ns: Netns
    pod: Netns

    @property
    def name(self) -> str:
        return f"node{self.index}"

    @property
    def host4(self) -> str:
        return f"10.{SEGMENTS[self.segment]}.0.{10 + self.index}"

    @property
    def host6(self) -> str:
        return f"fd00:{self.segment}::{10 + self.index}"

    @property
    def block4(self) -> str:
        return f"10.244.{self.index}.0/26"

    @property
    def block6(self) -> str:
        return f"fd00:244:0:{self.index}::/122"

    @property
    def tunnel4(self) -> str:
        return f"10.244.{self.index}.0"

    @property
    def tunnel6(self) -> str:
        return f"fd00:244:0:{self.index}::"

    @property
    def pod4(self) -> str:
        return f"10.244.{self.index}.1"

    @property
    def pod6(self) -> str:
        return f"fd00:244:0:{self.index}::1"

    @property
    def mac4(self) -> str:
        return f"66:00:00:00:{self.index:02x}:04"

    @property
    def mac6(self) -> str:
        return f"66:00:00:00:{self.index:02x}:06"

    def vtep(self) -> VtepNode:
        return VtepNode(
            name=self.name,
            ipv4_address=f"{self.host4}/24",
            ipv6_address=f"{self.host6}/64",
            ipv4_tunnel_addr=self.tunnel4,
            ipv4_tunnel_mac=self.mac4,
            ipv6_tunnel_addr=self.tunnel6,
            ipv6_tunnel_mac=self.mac6,
            blocks=(self.block4, self.block6),
        )

    def dataplane(self) -> VxlanDataplane:
        return VxlanDataplane(netns=self.ns.name)


class Lab:
    def __init__(self, pool: NetnsPool, segments: list[str], pod_mtu: int = 1500) -> None:
        self.router = pool.new()
        r = self.router
        _no_dad(r)
        r.ip("link", "set", "lo", "up")
        for seg, n in SEGMENTS.items():
            r.ip("link", "add", f"seg-{seg}", "type", "bridge")
            r.ip("addr", "add", f"10.{n}.0.1/24", "dev", f"seg-{seg}")
            r.ip("addr", "add", f"fd00:{seg}::1/64", "dev", f"seg-{seg}", "nodad")
            r.ip("link", "set", f"seg-{seg}", "up")
        r.set_sysctl("net/ipv4/ip_forward", "1")
        r.set_sysctl("net/ipv6/conf/all/forwarding", "1")
        self.nodes = [self._node(pool, i, seg, pod_mtu) for i, seg in enumerate(segments, start=1)]

    def _node(self, pool: NetnsPool, index: int, seg: str, pod_mtu: int) -> LabNode:
        node = LabNode(index, seg, pool.new(), pool.new())
        ns, pod, r = node.ns, node.pod, self.router
        _no_dad(ns)
        _no_dad(pod)
        r.ip(
            "link", "add", f"port{index}", "type", "veth", "peer", "name", "eth0", "netns", ns.name
        )
        r.ip("link", "set", f"port{index}", "master", f"seg-{seg}", "up")
        ns.ip("link", "set", "lo", "up")
        ns.ip("addr", "add", f"{node.host4}/24", "dev", "eth0")
        ns.ip("addr", "add", f"{node.host6}/64", "dev", "eth0", "nodad")
        ns.ip("link", "set", "eth0", "up")
        ns.ip("route", "add", "default", "via", f"10.{SEGMENTS[seg]}.0.1")
        ns.ip("-6", "route", "add", "default", "via", f"fd00:{seg}::1")
        ns.set_sysctl("net/ipv4/ip_forward", "1")
        ns.set_sysctl("net/ipv6/conf/all/forwarding", "1")
        veth = f"cali{index}"
        ns.ip("link", "add", veth, "mtu", str(pod_mtu), "type", "veth", "peer", "name", "eth0",
              "mtu", str(pod_mtu), "netns", pod.name)  # fmt: skip
        ns.ip("addr", "add", "169.254.1.1/32", "dev", veth)
        ns.ip("addr", "add", "fe80::1/64", "dev", veth, "nodad")
        ns.ip("link", "set", veth, "up")
        ns.ip("route", "add", f"{node.pod4}/32", "dev", veth)
        ns.ip("-6", "route", "add", f"{node.pod6}/128", "dev", veth)
        pod.ip("link", "set", "lo", "up")
        pod.ip("addr", "add", f"{node.pod4}/32", "dev", "eth0")
        pod.ip("addr", "add", f"{node.pod6}/128", "dev", "eth0", "nodad")
        pod.ip("link", "set", "eth0", "up")
        pod.ip("route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
        pod.ip("route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
        pod.ip("-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0")
        return node

    def state_for(
        self,
        node: LabNode,
        mode: str,
        members: list[LabNode] | None = None,
    ) -> VxlanState:
        members = self.nodes if members is None else members
        pools = [VxlanPool(POOL4, mode), VxlanPool(POOL6, mode)]
        return desired(node.vtep(), [m.vtep() for m in members], pools, VxlanSettings())

    def apply_all(self, mode: str, members: list[LabNode] | None = None) -> list[ApplyResult]:
        members = self.nodes if members is None else members
        return [n.dataplane().apply(self.state_for(n, mode, members)) for n in members]


def _no_dad(ns: Netns) -> None:
    """Addresses usable at once (no duplicate address detection on any interface)."""
    for scope in ("all", "default"):
        ns.set_sysctl(f"net/ipv6/conf/{scope}/accept_dad", "0")


def ping(src: Netns, dst: str, size: int | None = None, df: bool = False) -> bool:
    argv = ["ping", "-c", "1", "-W", "2"]
    if ":" in dst:
        argv.append("-6")
    if size is not None:
        argv += ["-s", str(size)]
    if df:
        argv += ["-M", "do"]
    return src.run(*argv, dst, check=False, timeout=10).returncode == 0


def tx_packets(ns: Netns, ifname: str) -> int:
    stats = ns.ip_json("-s", "link", "show", "dev", ifname)[0]["stats64"]["tx"]
    return int(stats["packets"])
