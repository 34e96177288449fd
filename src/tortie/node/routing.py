"""What BIRD must know, read from the datastore: the other nodes, this node's confirmed
blocks, the pools.  ``WATCHED`` are the key prefixes whose changes re-render it."""

from __future__ import annotations

import ipaddress
import json

from tortie.datastore import keys
from tortie.datastore.base import Datastore
from tortie.errors import DatastoreError
from tortie.ipam.nodes import NodeService
from tortie.ipam.pools import load_pools
from tortie.model.ipam_records import CONFIRMED, decode_affinity
from tortie.node.bird import Peer, RoutingView

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

    from tortie.node.startup import StartupResult


def watched(node: str) -> tuple[str, ...]:
    return (
        keys.resource_prefix("nodes"),
        keys.resource_prefix("ippools"),
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
    peers = []
    for kv in store.list(keys.resource_prefix("nodes")):
        try:
            from tortie.model.resources import node_from_dict

            n = node_from_dict(json.loads(kv.value), strict=False)
        except Exception as exc:  # one broken Node must not stop routing for the rest
            log.warning("skipping node %s: %s", kv.key.rsplit("/", 1)[-1], exc)
            continue
        if n.name != me.node_name:
            peers.append(Peer(n.name, _host(n.ipv4_address), _host(n.ipv6_address), n.as_number))
    pools = load_pools(store)
    v6 = me.ipv6_support and me.ipv6 is not None
    return RoutingView(
        node_name=me.node_name,
        router_id=me.router_id,
        as_number=me.as_number,
        ipv4=_host(me.ipv4),
        ipv6=_host(me.ipv6) if v6 else None,
        peers=tuple(sorted(peers, key=lambda p: p.name)),
        blocks4=tuple(own_blocks(store, me.node_name, 4, log)) if me.ipv4 else (),
        blocks6=tuple(own_blocks(store, me.node_name, 6, log)) if v6 else (),
        pools4=tuple(p.cidr for p in pools if p.version == 4),
        pools6=tuple(p.cidr for p in pools if p.version == 6) if v6 else (),
        hold_time=hold_time,
        connect_retry=connect_retry,
    )


__all__ = ["NodeService", "load_view", "own_blocks", "watched"]
