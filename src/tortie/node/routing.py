"""What BIRD must know: the other nodes, this node's confirmed blocks, the pools, BGP
configurations and peers.  ``bird_view`` takes it from the agent's watched cache (pure);
``load_view`` reads the same from a store (tools and tests).  ``BirdPart`` is the
reconciler's part that keeps BIRD's configuration in step with the cache."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import replace

from tortie.datastore import keys
from tortie.datastore.base import Datastore
from tortie.errors import DatastoreError
from tortie.ipam.nodes import NodeService
from tortie.ipam.pools import load_pools
from tortie.model.ipam_records import CONFIRMED, decode_affinity
from tortie.node.bird import RoutingView, render
from tortie.node.vxlan import NEVER

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Any

    from tortie.node.birdproc import Bird
    from tortie.node.cache import ClusterView
    from tortie.node.startup import StartupResult


def watched(node: str) -> tuple[str, ...]:
    return (
        keys.resource_prefix("nodes"),
        keys.resource_prefix("ippools"),
        keys.resource_prefix("bgpconfigurations"),
        keys.resource_prefix("bgppeers"),
        keys.host_prefix(node),
    )


def _host(address: str | None) -> str | None:
    return None if not address else str(ipaddress.ip_interface(address).ip)


def own_blocks(store: Datastore, node: str, version: int, log: logging.Logger) -> list[str]:
    out = []
    for kv in store.list(keys.affinity_prefix(node, version)):
        try:
            if decode_affinity(kv.key, kv.value).state == CONFIRMED:
                out.append(keys.cidr_from_key(kv.key))
        except DatastoreError as exc:
            log.warning("skipping %s", exc)
    return sorted(out, key=lambda c: ipaddress.ip_network(c))


def load_view(
    store: Datastore,
    me: StartupResult,
    log: logging.Logger,
    hold_time: int = 0,
    connect_retry: int = 5,
) -> RoutingView:
    """A thin reader over ``peering.routing_view`` (the pure core)."""
    from tortie.model.resources import node_from_dict
    from tortie.node.peering import Local, routing_view

    nodes = []
    for kv in store.list(keys.resource_prefix("nodes")):
        try:
            nodes.append(node_from_dict(json.loads(kv.value), strict=False))
        except Exception as exc:  # one broken Node must not stop routing for the rest
            log.warning("skipping node %s: %s", kv.key.rsplit("/", 1)[-1], exc)

    def raw(plural: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for kv in store.list(keys.resource_prefix(plural)):
            try:
                out[kv.key] = json.loads(kv.value)
            except ValueError:
                log.warning("skipping %s: not JSON", kv.key)
        return out

    v6 = me.ipv6_support and me.ipv6 is not None
    local = Local(me.node_name, me.router_id, _host(me.ipv4), _host(me.ipv6) if v6 else None)
    view, warnings = routing_view(
        local,
        nodes,
        load_pools(store),
        own_blocks(store, me.node_name, 4, log) if me.ipv4 else [],
        own_blocks(store, me.node_name, 6, log) if v6 else [],
        raw("bgpconfigurations"),
        raw("bgppeers"),
        hold_time=hold_time,
        connect_retry=connect_retry,
    )
    for warning in warnings:
        log.warning("%s", warning)
    return view


def bird_view(
    view: ClusterView,
    me: StartupResult,
    hold_time: int = 0,
    connect_retry: int = 5,
) -> tuple[RoutingView, tuple[str, ...]]:
    """The routing view from the watched cache, and its warnings (pure)."""
    from tortie.node.peering import Local, routing_view

    v6 = me.ipv6_support and me.ipv6 is not None
    local = Local(me.node_name, me.router_id, _host(me.ipv4), _host(me.ipv6) if v6 else None)
    routing, warnings = routing_view(
        local,
        list(view.nodes),
        list(view.pools),
        view.blocks_of(me.node_name, 4) if me.ipv4 else [],
        view.blocks_of(me.node_name, 6) if v6 else [],
        view.bgp_configurations,
        view.bgp_peers,
        hold_time=hold_time,
        connect_retry=connect_retry,
    )
    tunneled = {
        v: tuple(p.cidr for p in view.pools if p.version == v and p.vxlan_mode != NEVER)
        for v in (4, 6)
    }
    return replace(routing, tunneled4=tunneled[4], tunneled6=tunneled[6]), warnings


class BirdPart:
    """BIRD's configuration as a reconciler part: the rendered text is the desired
    state; applying it checks it with ``bird -p`` and reconfigures (or starts) BIRD."""

    name = "bird"
    kernel = False

    def __init__(self, bird: Bird, log: logging.Logger, hold_time: int, connect_retry: int):
        self.bird = bird
        self.log = log
        self.hold_time = hold_time
        self.connect_retry = connect_retry
        self._warned: frozenset[str] = frozenset()
        self._summary = ""

    def desired(self, view: ClusterView, me: StartupResult) -> object:
        routing, warnings = bird_view(view, me, self.hold_time, self.connect_retry)
        for warning in sorted(set(warnings) - self._warned):
            self.log.warning("%s", warning)
        self._warned = frozenset(warnings)
        self._summary = (
            f"{len(routing.peers)} peers, blocks "
            f"{', '.join(routing.blocks4 + routing.blocks6) or 'none'}"
        )
        return render(routing)

    def apply(self, desired: object) -> bool:
        assert isinstance(desired, str)
        if not self.bird.apply(desired):
            return False
        self.log.info("routing: %s", self._summary)
        return True


__all__ = ["BirdPart", "NodeService", "bird_view", "load_view", "own_blocks", "watched"]
