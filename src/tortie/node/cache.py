"""The node agent's in-memory copy of what its node needs from the datastore.

Followed prefixes (``FOLLOWED``): Nodes, IPPools, BGPConfigurations, BGPPeers,
FelixConfigurations and every node's block affinities (which blocks each node owns: BIRD
needs this node's, the VXLAN routes every node's).  Nothing else — handles, endpoints,
blocks' allocations — is followed, so pod churn anywhere in the cluster never wakes an
agent.

``NodeCache`` holds raw key-values and applies changes by key and revision (a change
older than what it holds is ignored, so a change delivered twice or one that was already
listed does no harm).  ``view()`` parses it into a ``ClusterView`` — the one input of
every desired-state function of the agent — once per cache version.  A stored object
that cannot be parsed is left out with a warning; it never stops the others.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tortie.datastore import keys
from tortie.datastore.base import KV
from tortie.datastore.feed import Change
from tortie.errors import DatastoreError, InvalidInput
from tortie.model.ipam_records import CONFIRMED, decode_affinity
from tortie.model.ippool import IPPool, ippool_from_dict
from tortie.model.node import Node, node_from_dict

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

NODES = keys.resource_prefix("nodes")
POOLS = keys.resource_prefix("ippools")
BGP_CONFIGURATIONS = keys.resource_prefix("bgpconfigurations")
BGP_PEERS = keys.resource_prefix("bgppeers")
FELIX_CONFIGURATIONS = keys.resource_prefix("felixconfigurations")
AFFINITIES = keys.all_affinities_prefix()
FOLLOWED = (NODES, POOLS, BGP_CONFIGURATIONS, BGP_PEERS, FELIX_CONFIGURATIONS, AFFINITIES)


@dataclass(frozen=True)
class ClusterView:
    """The cluster as this node's agent sees it (parsed; every field sorted)."""

    nodes: tuple[Node, ...] = ()
    pools: tuple[IPPool, ...] = ()
    # node -> version -> that node's confirmed blocks (CIDRs, sorted)
    blocks: Mapping[str, Mapping[int, tuple[str, ...]]] = field(default_factory=dict)
    bgp_configurations: Mapping[str, Any] = field(default_factory=dict)  # key -> raw object
    bgp_peers: Mapping[str, Any] = field(default_factory=dict)
    felix_configurations: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def node(self, name: str) -> Node | None:
        return next((n for n in self.nodes if n.name == name), None)

    def blocks_of(self, node: str, version: int) -> list[str]:
        return list(self.blocks.get(node, {}).get(version, ()))


def _net_key(cidr: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(cidr)
    return net.version, int(net.network_address), net.prefixlen


def build_view(kvs: Iterable[KV]) -> ClusterView:
    """Parse raw key-values (any order) into a view: pure."""
    nodes: list[Node] = []
    pools: list[IPPool] = []
    blocks: dict[str, dict[int, list[str]]] = {}
    raw: dict[str, dict[str, Any]] = {
        BGP_CONFIGURATIONS: {},
        BGP_PEERS: {},
        FELIX_CONFIGURATIONS: {},
    }
    warnings: list[str] = []
    for kv in sorted(kvs, key=lambda kv: kv.key):
        name = kv.key.rsplit("/", 1)[-1]
        try:
            if kv.key.startswith(NODES):
                nodes.append(node_from_dict(json.loads(kv.value), strict=False))
            elif kv.key.startswith(POOLS):
                pools.append(ippool_from_dict(json.loads(kv.value)))
            elif kv.key.startswith(AFFINITIES):
                if decode_affinity(kv.key, kv.value).state == CONFIRMED:
                    node = keys.node_of_affinity_key(kv.key)
                    version = 6 if "/ipv6/" in kv.key else 4
                    blocks.setdefault(node, {}).setdefault(version, []).append(
                        keys.cidr_from_key(kv.key)
                    )
            else:
                for prefix, into in raw.items():
                    if kv.key.startswith(prefix):
                        into[kv.key] = json.loads(kv.value)
        except (ValueError, TypeError, KeyError, InvalidInput, DatastoreError) as exc:
            warnings.append(f"skipping {kv.key.removeprefix('/calico/')} ({name}): {exc}")
    return ClusterView(
        nodes=tuple(sorted(nodes, key=lambda n: n.name)),
        pools=tuple(sorted(pools, key=lambda p: p.name)),
        blocks={
            node: {v: tuple(sorted(cidrs, key=_net_key)) for v, cidrs in by_version.items()}
            for node, by_version in blocks.items()
        },
        bgp_configurations=raw[BGP_CONFIGURATIONS],
        bgp_peers=raw[BGP_PEERS],
        felix_configurations=raw[FELIX_CONFIGURATIONS],
        warnings=tuple(warnings),
    )


class NodeCache:
    """Raw key-values under ``FOLLOWED``; ``version`` grows with every change."""

    def __init__(self, prefixes: tuple[str, ...] = FOLLOWED) -> None:
        self.prefixes = prefixes
        self.kv: dict[str, KV] = {}
        self.version = 0
        self._view: tuple[int, ClusterView] | None = None

    def replace(self, kvs: Iterable[KV]) -> list[str]:
        """Take a fresh listing as the whole truth; the keys that differed (a resync
        that finds any has found drift)."""
        fresh = {kv.key: kv for kv in kvs if kv.key.startswith(self.prefixes)}
        differ = sorted(
            key
            for key in fresh.keys() | self.kv.keys()
            if (a := fresh.get(key)) is None
            or (b := self.kv.get(key)) is None
            or (a.revision, a.value) != (b.revision, b.value)
        )
        if differ:
            self.kv = fresh
            self.version += 1
        return differ

    def apply(self, changes: Iterable[Change]) -> bool:
        """Apply changes in order; True when anything changed."""
        changed = False
        for ch in changes:
            if not ch.key.startswith(self.prefixes):
                continue
            cur = self.kv.get(ch.key)
            if cur is not None and ch.revision < cur.revision:
                continue  # older than what we hold (listed after it was written)
            if ch.value is None:
                if cur is not None:
                    del self.kv[ch.key]
                    changed = True
            elif cur is None or (cur.revision, cur.value) != (ch.revision, ch.value):
                self.kv[ch.key] = KV(ch.key, ch.value, ch.revision)
                changed = True
        if changed:
            self.version += 1
        return changed

    def view(self) -> ClusterView:
        """The parsed view of the current content (parsed once per version)."""
        if self._view is None or self._view[0] != self.version:
            self._view = (self.version, build_view(self.kv.values()))
        return self._view[1]
