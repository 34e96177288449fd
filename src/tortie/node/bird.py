"""BIRD 2 configuration for one node, rendered from what the datastore says (§11).

A pure function of a ``RoutingView``: the same inputs give the same text byte for byte,
so the agent can compare texts and reconfigure BIRD only when something changed.

Shape (Calico's confd templates, in BIRD 2 form, one daemon for both families):
router id; device and direct protocols (direct on every interface except ``cali*`` and
the ignored interfaces, so next hops resolve); per family a kernel protocol that learns
kernel routes (borrowed pod addresses; they win over any BGP route) and programs BGP
routes and this node's block blackholes; a static protocol with one blackhole per block
affine to this node and one announcing the service ranges; export filters that send a
block itself, refuse anything more specific inside this node's blocks (aggregation),
accept other routes inside pools and reject the rest; one session per peer and family,
``source address`` this node's address of that family.

Routes learned from a router outside the cluster (``Peer.node_peer`` false) carry the
attribute ``tortie_outside`` and, inside a pool, a lower preference than any node's
route: they never go to another outside router nor to the nodes (only a route reflector
passes them to its clients), and never replace a route a node announces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tortie.node.vxlan import ROUTE_PROTOCOL as VXLAN_PROTOCOL

DEFAULT_AS = 64512


MESH, GLOBAL, NODE = "mesh", "global", "node"  # peer types, as calicoctl node status shows
PREFIXES = {MESH: "Mesh_", GLOBAL: "Global_", NODE: "Node_"}


@dataclass(frozen=True)
class Peer:
    """One BGP neighbour: a node of the cluster (``node_peer``) or an outside router.
    ``ipv4``/``ipv6``: its address per family (one session per family it has)."""

    name: str
    ipv4: str | None  # host address, no prefix
    ipv6: str | None
    as_number: int | None = None  # None: the default AS (Calico: the global AS), not ours
    kind: str = MESH
    node_peer: bool = True  # a node of this cluster (else: routes it sends stay here)
    port: int = 179
    rr_client: bool = False  # we reflect to it (we are a route reflector)
    next_hop: str = ""  # "", "self" or "keep"
    source_address: bool = True  # ``source address`` = this node's address
    ttl_security: int = 0  # hops; 0: off
    allow_local_as: int = 0  # routes whose AS path holds our AS this often are accepted
    keepalive: int = 0  # seconds; 0: BIRD's default
    max_restart: int = 0  # graceful restart time; 0: BIRD's default (120 s)
    password: str = ""


@dataclass(frozen=True)
class RoutingView:
    node_name: str
    router_id: str
    as_number: int
    ipv4: str | None  # this node's host address, no prefix
    ipv6: str | None
    peers: tuple[Peer, ...] = ()
    blocks4: tuple[str, ...] = ()
    blocks6: tuple[str, ...] = ()
    pools4: tuple[str, ...] = ()
    pools6: tuple[str, ...] = ()
    hold_time: int = 0  # 0: BIRD's default
    connect_retry: int = 5
    no_export4: tuple[str, ...] = ()  # pools with disableBGPExport: never announced
    no_export6: tuple[str, ...] = ()
    announce4: tuple[str, ...] = ()  # service ranges: originated by every node
    announce6: tuple[str, ...] = ()
    communities: tuple[tuple[str, tuple[str, ...]], ...] = ()  # prefixAdvertisements
    rr_cluster_id: str = ""  # we are a route reflector with this cluster id
    listen_port: int = 179
    bind_address: bool = False  # bindMode NodeIP: listen on this node's addresses only
    log_severity: str = "Info"
    ignored_interfaces: tuple[str, ...] = ()
    # Pools whose routes tortie's VXLAN dataplane programs: BIRD never installs routes
    # inside them into the kernel (it still announces this node's blocks).
    tunneled4: tuple[str, ...] = ()
    tunneled6: tuple[str, ...] = ()


def protocol_name(address: str, kind: str = MESH) -> str:
    """``Mesh_10_0_0_2`` / ``Global_fd00__2`` / ``Node_…``, as Calico names sessions."""
    return PREFIXES[kind] + address.replace(".", "_").replace(":", "_")


OUTSIDE = "tortie_outside"  # route attribute: learned from a router outside the cluster
OUTSIDE_PREFERENCE = 50  # below BGP's 100: a node's own announcement of a prefix wins
KERNEL_PREFERENCE = 110  # above BGP's 100: a pod route in the kernel is never replaced


def _community_statements(view: RoutingView, version: int) -> list[str]:
    """prefixAdvertisements: communities added to every exported route inside the CIDR."""
    out = []
    for cidr, values in view.communities:
        if (":" in cidr) != (version == 6):
            continue
        for value in values:
            parts = value.split(":")
            attr = "bgp_large_community" if len(parts) == 3 else "bgp_community"
            out.append(f"  if net ~ {cidr} then {attr}.add(({', '.join(parts)}));")
    return out


def _set(cidrs: Sequence[str], suffix: str = "") -> str:
    return "[ " + ", ".join(c + suffix for c in cidrs) + " ]"


def _outside_peers(view: RoutingView) -> bool:
    return any(not p.node_peer for p in view.peers)


def _export(
    view: RoutingView, version: int, name: str, comment: str, *, outside: bool, reflect: bool
) -> list[str]:
    """One export filter; first match wins.  ``outside``: routes learned from an outside
    router are refused (never passed from one outside router to another, nor to nodes);
    ``reflect``: a route reflector's filter towards its clients (every BGP route)."""
    blocks = view.blocks4 if version == 4 else view.blocks6
    pools = view.pools4 if version == 4 else view.pools6
    no_export = view.no_export4 if version == 4 else view.no_export6
    announced = view.announce4 if version == 4 else view.announce6
    out = [
        f"filter {name} {{{comment}",
        *([f"  if net ~ {_set(no_export, '+')} then reject;"] if no_export else []),
        *([f"  if defined({OUTSIDE}) then reject;"] if outside else []),
        *_community_statements(view, version),
        *([f'  if proto = "announce{version}" then accept;'] if announced else []),
    ]
    if blocks:
        out.append(f"  if net ~ {_set(blocks)} then accept;")
        out.append(f"  if net ~ {_set(blocks, '+')} then reject;")
    if pools:
        out.append(f"  if net ~ {_set(pools, '+')} then accept;")
    if reflect:
        out.append("  if source = RTS_BGP then accept;")
    out += ["  reject;", "}"]
    return out


def _family(view: RoutingView, version: int) -> list[str]:
    fam = f"ipv{version}"
    own = view.ipv4 if version == 4 else view.ipv6
    blocks = view.blocks4 if version == 4 else view.blocks6
    pools = view.pools4 if version == 4 else view.pools6
    no_export = view.no_export4 if version == 4 else view.no_export6
    announced = view.announce4 if version == 4 else view.announce6
    tunneled = view.tunneled4 if version == 4 else view.tunneled6
    outside = _outside_peers(view)
    out = [
        f"# ---- IPv{version}",
        f"protocol kernel kernel{version} {{",
        f"  {fam} {{",
        f"    preference {KERNEL_PREFERENCE};  # a pod route learned here beats any BGP route",
        # tortie's own VXLAN routes (protocol 81) are never learned: this node must not
        # announce other nodes' blocks as its own.
        f"    import filter {{ if krt_source = {VXLAN_PROTOCOL} then reject; accept; }};",
        "    export filter {",
        *(
            [f"      if source = RTS_BGP && net ~ {_set(tunneled, '+')} then reject;"]
            if tunneled
            else []
        ),
        f'      if proto = "blocks{version}" || source = RTS_BGP then accept;',
        "      reject;",
        "    };",
        "  };",
        "  learn;",
        "  persist;",  # routes stay in the kernel while BIRD restarts or the agent stops
        "  scan time 2;",
        "  graceful restart;",
        "  merge paths on;",
        "}",
        f"protocol static blocks{version} {{",
        f"  {fam};",
        *(f"  route {b} blackhole;" for b in blocks),
        "}",
        f"protocol static announce{version} {{  # service ranges, announced by every node",
        f"  {fam};",
        *(f"  route {c} blackhole;" for c in announced),
        "}",
        f"filter import_bgp{version} {{  # a peer never overrides this node's pod routes",
        *([f"  if net ~ {_set(blocks, '+')} then reject;"] if blocks else []),
        "  accept;",
        "}",
    ]
    if outside:
        every_pool = pools + no_export
        out += [
            f"filter import_outside{version} {{  # routes from routers outside the cluster",
            *([f"  if net ~ {_set(blocks, '+')} then reject;"] if blocks else []),
            f"  {OUTSIDE} = 1;",
            *(
                [f"  if net ~ {_set(every_pool, '+')} then preference = {OUTSIDE_PREFERENCE};"]
                if every_pool
                else []
            ),
            "  accept;",
            "}",
        ]
        out += _export(
            view,
            version,
            f"export_outside{version}",
            "  # outside routers: pool routes, never another router's",
            outside=True,
            reflect=False,
        )
    out += _export(view, version, f"export_bgp{version}", "", outside=outside, reflect=False)
    if view.rr_cluster_id:
        out += _export(
            view,
            version,
            f"export_client{version}",
            "  # route reflector to its clients",
            outside=False,
            reflect=True,
        )
    timers = [
        "  graceful restart;",
        "  connect delay time 2;",
        f"  connect retry time {view.connect_retry};",
        "  error wait time 5, 30;",
    ]
    if view.hold_time:
        timers.append(f"  hold time {view.hold_time};")
        timers.append(f"  keepalive time {max(1, view.hold_time // 3)};")
    out += [
        f"template bgp mesh{version} {{",
        _local(view, own),
        *(["  strict bind on;"] if view.bind_address and own else []),
        *timers,
        f"  {fam} {{",
        f"    import filter import_bgp{version};",
        f"    export filter export_bgp{version};",
        "    add paths on;",
        "    gateway recursive;",
        "  };",
        "}",
    ]
    seen: set[str] = set()
    for peer in sorted(view.peers, key=lambda p: (p.name, p.kind, p.ipv4 or "", p.ipv6 or "")):
        address = peer.ipv4 if version == 4 else peer.ipv6
        name = protocol_name(address, peer.kind) if address else ""
        if address is None or address == own or peer.name == view.node_name or name in seen:
            continue
        seen.add(name)
        out += _session(view, version, peer, name, address, own)
    return out


def _session(
    view: RoutingView, version: int, peer: Peer, name: str, address: str, own: str | None
) -> list[str]:
    fam = f"ipv{version}"
    remote_as = peer.as_number or DEFAULT_AS
    port = f" port {peer.port}" if peer.port != 179 else ""
    lines = [
        f"protocol bgp {name} from mesh{version} {{  # {peer.kind} peer {peer.name}",
        f"  neighbor {address}{port} as {remote_as};",
    ]
    if peer.source_address and own:
        lines.append(f"  source address {own};")
    if peer.rr_client:
        lines += ["  rr client;", f"  rr cluster id {view.rr_cluster_id};"]
    if peer.ttl_security:
        lines += ["  ttl security on;", f"  multihop {peer.ttl_security};"]
    if peer.allow_local_as:
        lines.append(f"  allow local as {peer.allow_local_as};")
    if peer.keepalive:
        lines.append(f"  keepalive time {peer.keepalive};")
    if peer.max_restart:
        lines.append(f"  graceful restart time {peer.max_restart};")
    if peer.password:
        lines.append(f"  password {_quote(peer.password)};")
    channel = []  # the template's channel, changed where this peer needs it
    if not peer.node_peer:
        channel.append(f"    import filter import_outside{version};")
    if peer.rr_client:
        channel.append(f"    export filter export_client{version};")
    elif not peer.node_peer:
        channel.append(f"    export filter export_outside{version};")
    if peer.next_hop:
        channel.append(f"    next hop {peer.next_hop};")
    if channel:
        lines += [f"  {fam} {{", *channel, "  };"]
    lines.append("}")
    return lines


def _local(view: RoutingView, own: str | None) -> str:
    address = f" {own}" if view.bind_address and own else ""
    port = f" port {view.listen_port}" if view.listen_port != 179 else ""
    return f"  local{address}{port} as {view.as_number};"


def _quote(text: str) -> str:
    return '"' + text + '"'  # peering refuses quotes, backslashes and newlines


LOG_CLASSES = {
    "Debug": "all",
    "Info": "{ info, remote, warning, error, auth, fatal, bug }",
    "Warning": "{ warning, error, auth, fatal, bug }",
    "Error": "{ error, auth, fatal, bug }",
    "Fatal": "{ fatal, bug }",
}


def render(view: RoutingView) -> str:
    """The whole configuration file."""
    lines = [
        f"# BIRD 2 configuration of node {view.node_name}, written by the tortie node agent.",
        "# Do not edit: it is rendered again from the datastore whenever nodes or blocks change.",
        f"router id {view.router_id};",
        "timeformat protocol iso long;",
        *([f"attribute int {OUTSIDE};"] if _outside_peers(view) else []),
        f"log stderr {LOG_CLASSES.get(view.log_severity, 'all')};",
        "protocol device { scan time 2; }",
    ]
    channels = [f"ipv{v};" for v, a in ((4, view.ipv4), (6, view.ipv6)) if a is not None]
    if channels:
        ignored = "".join(f' -"{i}",' for i in view.ignored_interfaces)
        lines.append(
            f'protocol direct {{ {" ".join(channels)} interface -"cali*",{ignored} "*"; }}'
        )
    if view.ipv4 is not None:
        lines += _family(view, 4)
    if view.ipv6 is not None:
        lines += _family(view, 6)
    return "\n".join(lines) + "\n"
