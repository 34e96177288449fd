"""natOutgoing as nftables rules: a pure function of the pools, the NAT settings and the
cluster's host addresses (calico-behaviour.md §15).  No I/O: ``tortie.dataplane.nat``
hands the text to ``nft``.

Per family, tortie owns one table (``table ip tortie`` / ``table ip6 tortie``) and
nothing else.  It holds two interval sets, ``all-pools`` (every pool but LoadBalancer-only
ones) and ``nat-pools`` (pools with ``natOutgoing``), with ``IPPoolsAndHostIPs`` a third,
``hosts`` (every node's address), and one chain hooked at NAT post-routing::

    ip saddr @nat-pools ip daddr != @all-pools [ip daddr != @hosts] [oifname "eth*"]
        counter masquerade fully-random            (or: snat to ADDRESS fully-random)

so traffic between any two pools is never NATed and everything leaving the pools from a
natOutgoing pool is.  Disabled pools count like any other, as in Felix (a disabled pool
with no blocks is Calico's way to mark a destination range "do not NAT").  A family with
no natOutgoing pool gets no table at all.

``render`` writes ONE script that replaces both tables in one ``nft -f`` transaction
(``table X`` + ``delete table X`` + the new table: the kernel swaps them atomically, and
a table that is no longer wanted is just deleted).  Conntrack keeps the NAT mapping of
established flows, so replacing the table never breaks them.  Each chain carries a
``comment "tortie:<fingerprint>"`` of its table's text, so the applier can tell whether
the kernel already holds exactly this rendering without listing the sets.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable

from tortie.core.record import record
from tortie.model.felixconfig import PortRange
from tortie.model.ippool import IPPool
from tortie.model.node import Node
from tortie.node.natsettings import NatSettings

__all__ = [
    "CHAIN",
    "FAMILIES",
    "TABLE",
    "FamilyNat",
    "NatRules",
    "desired",
    "fingerprints",
    "host_ips",
    "render",
]

TABLE = "tortie"
CHAIN = "postrouting"
PRIORITY = "srcnat + 10"  # after kube-proxy's and Docker's masquerade (srcnat), as Felix
FAMILIES = {4: "ip", 6: "ip6"}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_FINGERPRINT = re.compile(r'^\s*comment "tortie:([0-9a-f]+)"$')


@record
class FamilyNat:
    """One family's table.  Pool and host lists are sorted and never overlap;
    ``hosts`` is None unless ``natOutgoingExclusions`` is ``IPPoolsAndHostIPs``."""

    version: int
    all_pools: tuple[str, ...]
    nat_pools: tuple[str, ...]
    hosts: tuple[str, ...] | None = None
    snat_address: str | None = None
    port_range: PortRange | None = None
    interface_filter: str | None = None

    @property
    def family(self) -> str:
        return FAMILIES[self.version]


@record
class NatRules:
    """Both families; None: tortie has no table for that family."""

    ipv4: FamilyNat | None = None
    ipv6: FamilyNat | None = None

    def get(self, version: int) -> FamilyNat | None:
        return self.ipv4 if version == 4 else self.ipv6


# ------------------------------------------------------------------------ desired


def host_ips(nodes: Iterable[Node]) -> list[str]:
    """Every node's BGP addresses without their prefix (Felix's all-hosts set)."""
    out = []
    for node in nodes:
        for text in (node.ipv4_address, node.ipv6_address):
            if text:
                out.append(text.split("/")[0])
    return out


def _collapse(nets: Iterable[Network]) -> tuple[str, ...]:
    return tuple(str(n) for n in ipaddress.collapse_addresses(nets))  # type: ignore[type-var]


def _load_balancer_only(pool: IPPool) -> bool:
    return tuple(pool.allowed_uses) == ("LoadBalancer",)


def desired(
    pools: Iterable[IPPool], settings: NatSettings, host_addresses: Iterable[str] = ()
) -> NatRules:
    """The tables this node should hold.  ``host_addresses`` are the cluster's host
    addresses (``host_ips(nodes)``; a ``/prefix`` is ignored), used only with
    ``IPPoolsAndHostIPs``."""
    nets: dict[int, list[Network]] = {4: [], 6: []}
    nat: dict[int, list[Network]] = {4: [], 6: []}
    for p in pools:
        net = ipaddress.ip_network(p.cidr)
        if not _load_balancer_only(p):
            nets[net.version].append(net)
        if p.nat_outgoing:
            nat[net.version].append(net)
    hosts_given = {ipaddress.ip_address(a.split("/")[0]) for a in host_addresses}
    families: dict[int, FamilyNat | None] = {}
    for version in (4, 6):
        if not nat[version] or (version == 6 and not settings.ipv6):
            families[version] = None
            continue
        hosts = None
        if settings.exclusions == "IPPoolsAndHostIPs":
            mine = sorted(a for a in hosts_given if a.version == version)
            hosts = tuple(str(a) for a in mine)
        families[version] = FamilyNat(
            version=version,
            all_pools=_collapse(nets[version]),
            nat_pools=_collapse(nat[version]),
            hosts=hosts,
            snat_address=settings.address_v4 if version == 4 else settings.address_v6,
            port_range=settings.port_range,
            interface_filter=settings.interface_filter,
        )
    return NatRules(ipv4=families[4], ipv6=families[6])


# ------------------------------------------------------------------------- render


def _set(name: str, addr_type: str, elements: tuple[str, ...], interval: bool) -> list[str]:
    lines = [f"\tset {name} {{", f"\t\ttype {addr_type}"]
    if interval:
        lines.append("\t\tflags interval")
    if elements:
        lines.append("\t\telements = {")
        lines.extend(f"\t\t\t{e}," for e in elements)
        lines.append("\t\t}")
    lines.append("\t}")
    return lines


def _rules(f: FamilyNat) -> list[str]:
    p = f.family
    match = f"{p} saddr @nat-pools {p} daddr != @all-pools"
    if f.hosts is not None:
        match += f" {p} daddr != @hosts"
    if f.interface_filter:
        name = f.interface_filter
        name = name[:-1] + "*" if name.endswith("+") else name  # iptables' wildcard
        match += f' oifname "{name}"'
    action = "masquerade" if f.snat_address is None else f"snat to {f.snat_address}"
    rules = []
    if f.port_range is not None:
        r = f.port_range
        ports = str(r.first) if r.first == r.last else f"{r.first}-{r.last}"
        if f.snat_address is None:
            ranged = f"masquerade to :{ports}"
        else:
            host = f.snat_address if f.version == 4 else f"[{f.snat_address}]"
            ranged = f"snat to {host}:{ports}"
        # Ports exist for TCP and UDP only; everything else is NATed without a range.
        rules.append(f"{match} meta l4proto {{ tcp, udp }} counter {ranged} fully-random")
    rules.append(f"{match} counter {action} fully-random")
    return rules


def _table(f: FamilyNat) -> str:
    addr_type = "ipv4_addr" if f.version == 4 else "ipv6_addr"
    lines = [f"table {f.family} {TABLE} {{"]
    lines += _set("all-pools", addr_type, f.all_pools, True)
    lines += _set("nat-pools", addr_type, f.nat_pools, True)
    if f.hosts is not None:
        lines += _set("hosts", addr_type, f.hosts, False)
    lines.append(f"\tchain {CHAIN} {{")
    lines.append(f"\t\ttype nat hook postrouting priority {PRIORITY}; policy accept;")
    lines.append("\t\tcomment COMMENT")
    lines.extend(f"\t\t{rule}" for rule in _rules(f))
    lines.append("\t}")
    lines.append("}")
    body = "\n".join(lines) + "\n"
    fingerprint = hashlib.sha256(body.encode()).hexdigest()[:16]
    return body.replace("comment COMMENT", f'comment "tortie:{fingerprint}"', 1)


def render(rules: NatRules) -> str:
    """One ``nft -f`` script: each family's table replaced (or removed) atomically."""
    out = ["# tortie natOutgoing: replaces tortie's own tables only, in one transaction"]
    for version, family in FAMILIES.items():
        out.append(f"table {family} {TABLE}")
        out.append(f"delete table {family} {TABLE}")
        f = rules.get(version)
        if f is not None:
            out.append(_table(f).rstrip("\n"))
    return "\n".join(out) + "\n"


def fingerprints(text: str) -> dict[str, str | None]:
    """Per family (``ip``, ``ip6``), the fingerprint of tortie's table in ``text`` — a
    rendered script or ``nft list chains`` output — or None when it holds no such table."""
    found: dict[str, str | None] = dict.fromkeys(FAMILIES.values())
    table: tuple[str, str] | None = None
    chain = ""
    for line in text.splitlines():
        words = line.split()
        if line.startswith("table ") and len(words) >= 3 and words[-1] == "{":
            table, chain = (words[1], words[2]), ""
        elif line.startswith("}"):
            table = None
        elif table is not None and words[:1] == ["chain"] and len(words) >= 2:
            chain = words[1]
        elif table is not None and table[1] == TABLE and table[0] in found and chain == CHAIN:
            m = _FINGERPRINT.match(line)
            if m:
                found[table[0]] = m.group(1)
    return found
