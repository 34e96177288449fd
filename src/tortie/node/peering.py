"""Who this node peers with and what it announces: a pure function of the watched cache.

Inputs are what the reconciler holds: the raw JSON objects of ``bgpconfigurations/`` and
``bgppeers/`` (keyed by their datastore key), the parsed Nodes and IPPools and this
node's confirmed blocks.  Output: the ``RoutingView`` that ``bird.render`` turns into
BIRD's configuration, plus one warning per object that could not be used (a broken
object is skipped, never fatal for the others).  Calico's semantics (§16):

- BGPConfiguration ``default`` gives the cluster AS (64512), the mesh switch, listen
  port, log level, bind mode, ignored interfaces, service ranges (announced by every
  node), prefix advertisements (communities on exported routes) and the mesh password
  and restart time; ``node.<name>`` may override listenPort, logSeverityScreen and
  prefixAdvertisements for that node (Calico: only these).
- Mesh (``Mesh_<ip>``): every other node, one session per family both have — unless the
  mesh is off, this node is a route reflector, or the other node is one.
- BGPPeers that select this node (no node/nodeSelector: global, ``Global_<ip>``; else
  ``Node_<ip>``): a ``peerIP`` router, or every node ``peerSelector`` picks.
- A route reflector (Node ``routeReflectorClusterID``) treats a same-AS peer without its
  cluster id as its client.

Password files are the only thing read here (``read_password_files``), and only when the
caller does not hand their contents in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tortie.core.selector import parse_selector
from tortie.errors import TortieError
from tortie.model.bgp import (
    DEFAULT_AS,
    BGPConfiguration,
    bgpconfiguration_from_dict,
    duration_seconds,
)
from tortie.model.bgppeer import BGPPeer, bgppeer_from_dict
from tortie.model.ippool import IPPool
from tortie.model.node import Node
from tortie.node.bird import GLOBAL, MESH, NODE, Peer, RoutingView

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@dataclass(frozen=True)
class Local:
    """This node as the agent knows it (host addresses without prefix; None: family off)."""

    node_name: str
    router_id: str
    ipv4: str | None
    ipv6: str | None


@dataclass(frozen=True)
class Settings:
    """The effective BGPConfiguration of one node: ``default``, with ``node.<name>``
    overriding the three fields Calico lets it override (listenPort, logSeverityScreen,
    prefixAdvertisements)."""

    as_number: int = DEFAULT_AS
    mesh: bool = True
    listen_port: int = 179
    log_severity: str = "Info"
    bind_node_ip: bool = False
    services: tuple[str, ...] = ()
    advertisements: tuple[tuple[str, tuple[str, ...]], ...] = ()
    ignored_interfaces: tuple[str, ...] = ()
    mesh_max_restart: int = 0
    mesh_password_file: str = ""


def _host(address: str | None) -> str | None:
    return None if not address else str(ipaddress.ip_interface(address).ip)


def settings(configs: Sequence[BGPConfiguration], node_name: str) -> Settings:
    by_name = {c.name: c for c in configs}
    s: dict[str, Any] = {}
    default = by_name.get("default")
    if default is not None:
        c = default
        for key, value in (
            ("as_number", c.as_number),
            ("mesh", c.node_to_node_mesh),
            ("bind_node_ip", None if c.bind_mode is None else c.bind_mode == "NodeIP"),
            ("mesh_max_restart", duration_seconds(c.node_mesh_max_restart or "") or None),
            ("mesh_password_file", c.node_mesh_password_file),
        ):
            if value is not None:
                s[key] = value
        s["services"] = c.service_cluster_ips + c.service_external_ips + c.service_load_balancer_ips
        s["ignored_interfaces"] = c.ignored_interfaces
    for c in (x for x in (default, by_name.get(f"node.{node_name}")) if x is not None):
        if c.listen_port is not None:
            s["listen_port"] = c.listen_port
        if c.log_severity is not None:
            s["log_severity"] = c.log_severity
        if c.prefix_advertisements:
            s["advertisements"] = tuple((a.cidr, a.values) for a in c.prefix_advertisements)
    return Settings(**s)


def read_password_files(peers: Sequence[BGPPeer], mesh_file: str = "") -> dict[str, str]:
    """The contents of every password file the peers name (missing ones left out).  The
    only I/O of this module; ``routing_view`` calls it when not handed the passwords."""
    out: dict[str, str] = {}
    for path in {p.password_file for p in peers if p.password_file} | ({mesh_file} - {""}):
        try:
            with open(path, encoding="utf-8") as fh:
                out[path] = fh.read()
        except OSError:
            pass
    return out


def _parse(raw: Mapping[str, Mapping[str, Any]], parse: Any, warnings: list[str]) -> list[Any]:
    out = []
    for key in sorted(raw):
        try:
            out.append(parse(raw[key], strict=False))
        except TortieError as exc:
            warnings.append(f"skipping {key.rsplit('/', 1)[-1]}: {exc}")
    return out


def _selects_me(peer: BGPPeer, me: Node | None, name: str) -> bool:
    if peer.node:
        return peer.node == name
    if peer.node_selector in ("", "all()"):
        return True
    return parse_selector(peer.node_selector).matches(me.labels if me else {})


def _node_as(node: Node, cfg: Settings) -> int:
    return node.as_number or cfg.as_number


def routing_view(
    local: Local,
    nodes: Sequence[Node],
    pools: Sequence[IPPool],
    blocks4: Sequence[str],
    blocks6: Sequence[str],
    bgp_configurations: Mapping[str, Mapping[str, Any]],
    bgp_peers: Mapping[str, Mapping[str, Any]],
    hold_time: int = 0,
    connect_retry: int = 5,
    passwords: Mapping[str, str] | None = None,
) -> tuple[RoutingView, tuple[str, ...]]:
    """The routing view of ``local`` and the warnings about objects that were skipped.
    ``passwords``: password file path -> its contents; None: the files are read here."""
    warnings: list[str] = []
    configs = _parse(bgp_configurations, bgpconfiguration_from_dict, warnings)
    peers = _parse(bgp_peers, bgppeer_from_dict, warnings)
    cfg = settings(configs, local.node_name)
    if passwords is None:
        passwords = read_password_files(peers, cfg.mesh_password_file)
    me = next((n for n in nodes if n.name == local.node_name), None)
    my_as = me.as_number if me and me.as_number else cfg.as_number
    my_cluster = (me.route_reflector_cluster_id if me else None) or ""
    others = sorted((n for n in nodes if n.name != local.node_name), key=lambda n: n.name)
    mesh_password = _password(
        "BGPConfiguration(default) nodeMeshPassword", cfg.mesh_password_file, passwords, warnings
    )

    def node_peer(n: Node, kind: str, spec: BGPPeer | None) -> Peer:
        remote_as = _node_as(n, cfg)
        client = (
            bool(my_cluster) and remote_as == my_as and n.route_reflector_cluster_id != my_cluster
        )
        if spec is None:
            options: dict[str, Any] = {"password": mesh_password}
        else:
            options = _options(spec, passwords, warnings)
        return Peer(
            n.name,
            _host(n.ipv4_address),
            _host(n.ipv6_address),
            remote_as,
            kind=kind,
            rr_client=client,
            port=settings(configs, n.name).listen_port,  # where that node listens
            max_restart=cfg.mesh_max_restart if spec is None else _restart(spec),
            **options,
        )

    out: list[Peer] = []
    if cfg.mesh and not my_cluster:
        out += [node_peer(n, MESH, None) for n in others if not n.route_reflector_cluster_id]
    explicit: list[Peer] = []
    for spec in sorted(peers, key=lambda p: p.name):
        kind = GLOBAL if spec.global_peer else NODE
        if spec.peer_selector:
            # Node-to-node peerings are symmetric (Calico): the selected nodes peer back.
            chosen = parse_selector(spec.peer_selector)
            mine = _selects_me(spec, me, local.node_name)
            back = me is not None and chosen.matches(me.labels)
            explicit += [
                node_peer(n, kind, spec)
                for n in others
                if (mine and chosen.matches(n.labels)) or (back and _selects_me(spec, n, n.name))
            ]
            continue
        if not _selects_me(spec, me, local.node_name):
            continue
        address = spec.peer_ip
        v6 = ":" in address
        nodes_at = [n for n in others if address in (_host(n.ipv4_address), _host(n.ipv6_address))]
        known = nodes_at[0] if nodes_at else None
        client = (
            bool(my_cluster)
            and spec.as_number == my_as
            and (known is None or known.route_reflector_cluster_id != my_cluster)
        )
        explicit.append(
            Peer(
                known.name if known else spec.name,
                None if v6 else address,
                address if v6 else None,
                spec.as_number,
                kind=kind,
                node_peer=known is not None,
                port=spec.port,
                rr_client=client,
                max_restart=_restart(spec),
                **_options(spec, passwords, warnings),
            )
        )
    # An explicit peering replaces a mesh session to the same address (Calico: one each).
    taken = {a for p in explicit for a in (p.ipv4, p.ipv6) if a}
    out = [p for p in out if not ({p.ipv4, p.ipv6} & taken)] + explicit
    export = [p for p in pools if not p.disable_bgp_export]
    hidden = [p for p in pools if p.disable_bgp_export]
    view = RoutingView(
        node_name=local.node_name,
        router_id=local.router_id,
        as_number=my_as,
        ipv4=local.ipv4,
        ipv6=local.ipv6,
        peers=tuple(out),
        blocks4=tuple(blocks4) if local.ipv4 else (),
        blocks6=tuple(blocks6) if local.ipv6 else (),
        pools4=tuple(p.cidr for p in export if p.version == 4),
        pools6=tuple(p.cidr for p in export if p.version == 6) if local.ipv6 else (),
        hold_time=hold_time,
        connect_retry=connect_retry,
        no_export4=tuple(p.cidr for p in hidden if p.version == 4),
        no_export6=tuple(p.cidr for p in hidden if p.version == 6),
        announce4=tuple(dict.fromkeys(c for c in cfg.services if ":" not in c)),
        announce6=tuple(dict.fromkeys(c for c in cfg.services if ":" in c)),
        communities=tuple(c for c in cfg.advertisements if c[1]),
        rr_cluster_id=my_cluster,
        listen_port=cfg.listen_port,
        bind_address=cfg.bind_node_ip,
        log_severity=cfg.log_severity,
        ignored_interfaces=cfg.ignored_interfaces,
    )
    return view, tuple(warnings)


def _restart(spec: BGPPeer) -> int:
    return duration_seconds(spec.max_restart_time)


def _password(what: str, path: str, passwords: Mapping[str, str], warnings: list[str]) -> str:
    if not path:
        return ""
    password = passwords.get(path, "").strip()
    if any(c in password for c in '"\\\n'):
        warnings.append(
            f"{what}: the password in {path} contains a quote, backslash or newline, which "
            "BIRD cannot take; the session runs without one"
        )
        return ""
    if not password:
        warnings.append(
            f"{what}: password file {path} is missing or empty; the session runs without a "
            "password until it is readable"
        )
    return password


def _options(spec: BGPPeer, passwords: Mapping[str, str], warnings: list[str]) -> dict[str, Any]:
    return {
        "next_hop": {"Self": "self", "Keep": "keep"}.get(spec.next_hop_mode, ""),
        "source_address": spec.source_address == "UseNodeIP",
        "ttl_security": spec.ttl_security,
        "allow_local_as": spec.allowed_local_as,
        "keepalive": duration_seconds(spec.keepalive_time),
        "password": _password(f"BGPPeer({spec.name})", spec.password_file, passwords, warnings),
    }
