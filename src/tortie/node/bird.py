"""BIRD 2 configuration for one node, rendered from what the datastore says (§11).

A pure function of a ``RoutingView``: the same inputs give the same text byte for byte,
so the agent can compare texts and reconfigure BIRD only when something changed.

Shape (Calico's confd templates, in BIRD 2 form, one daemon for both families):
router id; device and direct protocols (direct on every interface except ``cali*``, so
next hops resolve); per family a kernel protocol that learns kernel routes (borrowed
pod addresses) and programs BGP routes and this node's block blackholes; a static
protocol with one blackhole per block affine to this node; an export filter that sends a
block itself, refuses anything more specific inside this node's blocks (aggregation),
accepts other routes inside pools and rejects the rest; one iBGP session per other node
and family (full mesh), ``source address`` this node's address of that family.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_AS = 64512


@dataclass(frozen=True)
class Peer:
    name: str
    ipv4: str | None  # host address, no prefix
    ipv6: str | None
    as_number: int | None = None  # None: the default AS (Calico: the global AS), not ours


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


def protocol_name(address: str) -> str:
    """``Mesh_10_0_0_2`` / ``Mesh_fd00__2``, as Calico names mesh sessions."""
    return "Mesh_" + address.replace(".", "_").replace(":", "_")


def _set(cidrs: Sequence[str], suffix: str = "") -> str:
    return "[ " + ", ".join(c + suffix for c in cidrs) + " ]"


def _family(view: RoutingView, version: int) -> list[str]:
    fam = f"ipv{version}"
    own = view.ipv4 if version == 4 else view.ipv6
    blocks = view.blocks4 if version == 4 else view.blocks6
    pools = view.pools4 if version == 4 else view.pools6
    out = [
        f"# ---- IPv{version}",
        f"protocol kernel kernel{version} {{",
        f"  {fam} {{",
        "    import all;",
        f'    export filter {{ if proto = "blocks{version}" || source = RTS_BGP then accept; '
        "reject; };",
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
        f"filter export_bgp{version} {{",
    ]
    if blocks:
        out.append(f"  if net ~ {_set(blocks)} then accept;")
        out.append(f"  if net ~ {_set(blocks, '+')} then reject;")
    if pools:
        out.append(f"  if net ~ {_set(pools, '+')} then accept;")
    out += ["  reject;", "}"]
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
        f"  local as {view.as_number};",
        *timers,
        f"  {fam} {{",
        "    import all;",
        f"    export filter export_bgp{version};",
        "    add paths on;",
        "    gateway recursive;",
        "  };",
        "}",
    ]
    for peer in sorted(view.peers, key=lambda p: p.name):
        address = peer.ipv4 if version == 4 else peer.ipv6
        if address is None or address == own or peer.name == view.node_name:
            continue
        out.append(
            f"protocol bgp {protocol_name(address)} from mesh{version} {{  # node {peer.name}\n"
            f"  neighbor {address} as {peer.as_number or DEFAULT_AS};\n"
            f"  source address {own};\n"
            "}"
        )
    return out


def render(view: RoutingView) -> str:
    """The whole configuration file."""
    lines = [
        f"# BIRD 2 configuration of node {view.node_name}, written by the tortie node agent.",
        "# Do not edit: it is rendered again from the datastore whenever nodes or blocks change.",
        f"router id {view.router_id};",
        "timeformat protocol iso long;",
        "log stderr all;",
        "protocol device { scan time 2; }",
    ]
    channels = [f"ipv{v};" for v, a in ((4, view.ipv4), (6, view.ipv6)) if a is not None]
    if channels:
        lines.append(f'protocol direct {{ {" ".join(channels)} interface -"cali*", "*"; }}')
    if view.ipv4 is not None:
        lines += _family(view, 4)
    if view.ipv6 is not None:
        lines += _family(view, 6)
    return "\n".join(lines) + "\n"
