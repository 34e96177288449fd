"""Which pools serve a request: requested pools in order, or every enabled pool whose
node selector matches the node.  Pure functions over loaded records, plus the loaders."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

from tortie.core.addr import Address, parse_network
from tortie.datastore import keys
from tortie.datastore.base import Datastore
from tortie.errors import DatastoreError, InvalidInput, NotFound
from tortie.model.ippool import ALL_NODES, IPPool, ippool_from_dict


def load_pools(store: Datastore) -> list[IPPool]:
    """Every IPPool, sorted by name."""
    pools = []
    for kv in store.list(keys.resource_prefix("ippools")):
        try:
            pools.append(ippool_from_dict(json.loads(kv.value)))
        except (ValueError, InvalidInput) as exc:
            raise DatastoreError(f"{kv.key}: stored IPPool is not valid ({exc})") from None
    return sorted(pools, key=lambda p: p.name)


def node_labels(store: Datastore, node: str) -> dict[str, str]:
    """The labels of a Node resource ({} when there is none), read by the Node service."""
    from tortie.ipam.nodes import NodeService

    return NodeService(store).labels(node)


def _label_text(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none"


def requested_pools(
    version: int, requested: Sequence[str], pools: Iterable[IPPool]
) -> list[IPPool]:
    """Resolve names or CIDRs, in the order given; each must exist, be enabled, be of
    the family."""
    by_name = {p.name: p for p in pools}
    by_cidr = {p.cidr: p for p in by_name.values()}
    chosen: list[IPPool] = []
    for item in requested:
        pool = by_name.get(item)
        if pool is None and "/" in item:
            net = parse_network(item, what="requested pool", strict=False)
            pool = by_cidr.get(str(net))
            if net.version != version:
                raise InvalidInput(
                    f"requested pool {item} is IPv{net.version} but was listed among the "
                    f"IPv{version} pools; move it to ipv{net.version}_pools"
                )
        if pool is None or pool.disabled:
            raise InvalidInput(f"the given pool ({item}) does not exist, or is not enabled")
        if pool.version != version:
            raise InvalidInput(
                f"requested pool {item} is IPv{pool.version} but was listed among the "
                f"IPv{version} pools; move it to ipv{pool.version}_pools"
            )
        if pool not in chosen:
            chosen.append(pool)
    return chosen


def selects(selector: str, labels: Mapping[str, str]) -> bool:
    """Whether a pool's nodeSelector picks a node with ``labels``; the default ``all()``
    without loading the selector parser (plugin start-up)."""
    if selector.strip() == ALL_NODES:
        return True
    from tortie.core.selector import parse_selector

    return parse_selector(selector).matches(labels)


def selected_pools(
    version: int, node: str, labels: Mapping[str, str], pools: Iterable[IPPool], intent: str
) -> list[IPPool]:
    """Enabled Automatic pools of the family whose selector matches, sorted by name."""
    family = [p for p in pools if p.version == version]
    chosen = [
        p
        for p in family
        if not p.disabled
        and p.assignment_mode == "Automatic"
        and intent in p.allowed_uses
        and selects(p.node_selector, labels)
    ]
    if not chosen:
        detail = "; ".join(
            f"{p.name} {'is disabled' if p.disabled else 'selects ' + repr(p.node_selector)}"
            for p in family
        )
        raise NotFound(
            f"no configured Calico pools for node {node} "
            f"(IPv{version} pools: {detail or 'none'}; node labels: {_label_text(labels)}); "
            f"create an IPv{version} IPPool whose nodeSelector matches the node"
        )
    return sorted(chosen, key=lambda p: p.name)


def pool_containing(addr: Address, pools: Iterable[IPPool]) -> IPPool | None:
    for p in pools:
        if p.version == addr.version and addr in p.network:
            return p
    return None
