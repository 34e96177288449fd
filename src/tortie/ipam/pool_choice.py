"""Which pools a request draws from, and whether they can still give an address.

``resolve_pools`` is the one place pool names and node selectors are turned into pools
(auto-assign and CNI STATUS both use it); ``can_assign`` answers STATUS without writing.
"""

from __future__ import annotations

from tortie.core.addr import block_count, network_in, parse_network
from tortie.datastore.base import Datastore
from tortie.errors import NotFound, TortieError
from tortie.ipam import pools as poolsel
from tortie.ipam.records import scan_blocks
from tortie.model.ipamconfig import IPAMConfig
from tortie.model.ippool import IPPool


def resolve_pools(
    store: Datastore,
    node: str,
    requested: dict[int, tuple[str, ...]],
    intent: str,
) -> dict[int, list[IPPool]]:
    """The pools of each family in ``requested`` (family → pool names or CIDRs; empty
    means "the enabled pools whose selector matches the node").  Errors name the family
    (``ip_version``) and are raised before anything is written."""
    all_pools = poolsel.load_pools(store)
    labels: dict[str, str] | None = None
    out: dict[int, list[IPPool]] = {}
    for version, names in requested.items():
        try:
            if names:
                out[version] = poolsel.requested_pools(version, names, all_pools)
            else:
                if labels is None:
                    labels = poolsel.node_labels(store, node)
                out[version] = poolsel.selected_pools(version, node, labels, all_pools, intent)
        except TortieError as exc:
            exc.ip_version = version
            raise
    return out


def can_assign(
    store: Datastore, config: IPAMConfig, node: str, version: int, pools: list[IPPool]
) -> None:
    """Raise ``NotFound`` unless one of ``pools`` has room for a new block or a block
    this node may take a free address from (a corrupt block is never used but still occupies its range)."""
    listing = scan_blocks(store, version)
    blocks = [(parse_network(sb.cidr), sb.block) for sb in listing.blocks]
    corrupt = [parse_network(c) for c in listing.corrupt]
    for pool in pools:
        net = pool.network
        inside = [b for n, b in blocks if network_in(n, net)]
        taken = len(inside) + sum(network_in(n, net) for n in corrupt)
        if config.auto_allocate_blocks and taken < block_count(net, pool.block_size):
            return
        for b in inside:
            if not b.free:
                continue
            if b.host() == node or not (config.strict_affinity or b.strict_affinity):
                return
    raise NotFound(
        f"no free IPv{version} address for node {node} in pools [{' '.join(p.cidr for p in pools)}]"
    )
