"""What IPPools add to the resource verbs: the checks of a new or changed pool against
the others and the existing blocks, giving back empty foreign blocks, and deletion
(disable, release the empty affine blocks, delete)."""

from __future__ import annotations

import contextlib
import json

from tortie.core.addr import network_in, parse_network
from tortie.core.block import Block
from tortie.datastore import keys
from tortie.datastore.base import Datastore
from tortie.errors import Conflict, InvalidInput, NotFound, RevisionConflict
from tortie.ipam.pools import load_pools
from tortie.ipam.service import Ipam
from tortie.model.ippool import IPPool


def check_blocks_for_new_pool(pool: IPPool, blocks: list[Block]) -> None:
    """Refuse a new pool whose range holds addresses in blocks of another size."""
    for block in blocks:
        net = parse_network(block.cidr)
        if (
            net.version == pool.version
            and network_in(net, pool.network)
            and (net.prefixlen != pool.block_size and block.in_use)
        ):
            raise InvalidInput(
                f"IPPool({pool.name}): block {block.cidr} inside {pool.cidr} still holds "
                f"{block.in_use} addresses with a different block size than "
                f"{pool.block_size}; release them first or use blockSize {net.prefixlen}"
            )


def clear_foreign_empty_blocks(store: Datastore, ipam: Ipam, pool: IPPool) -> None:
    """Empty blocks of another size left inside a new pool's range (by a deleted pool)
    are given back first, so old and new blocks can never overlap.  Blocks that still
    hold addresses were refused when the pool was checked."""
    from tortie.ipam.usage import load_blocks

    for block in load_blocks(store):
        net = parse_network(block.cidr)
        if (
            net.version == pool.version
            and network_in(net, pool.network)
            and net.prefixlen != pool.block_size
            and block.empty
        ):
            host = block.host()
            if host is not None:
                ipam.release_affinity(host, block.cidr, pool.version)
            else:
                with contextlib.suppress(NotFound, RevisionConflict):
                    store.delete(keys.block_key(block.cidr, pool.version))


def delete_pool(store: Datastore, ipam: Ipam, name: str) -> IPPool:
    """Disable the pool, release its empty affine blocks, then delete it."""
    key = keys.resource_key("ippools", name)
    pool = next((p for p in load_pools(store) if p.name == name), None)
    kv = store.get(key)
    if pool is None or kv is None:
        raise NotFound(
            f"resource does not exist: IPPool({name}); list pools with 'tortie get ippools'"
        )
    if not pool.disabled:
        doc = json.loads(kv.value)
        doc.setdefault("spec", {})["disabled"] = True
        kv = store.update(key, json.dumps(doc), kv.revision)
    ipam.release_pool_affinities(pool)
    try:
        store.delete(key, kv.revision)
    except RevisionConflict:
        raise Conflict(
            f"IPPool({name}) was changed meanwhile (it is disabled now); run the delete again"
        ) from None
    return pool
