"""Pool administration beyond the resource verbs (``split``, ``delete_pool``) and IPAM
configuration changes; ``Admin`` is the resource service (``tortie.resources``) with them."""

from __future__ import annotations

import datetime
import json
import uuid

from tortie.core.addr import parse_network
from tortie.core.record import replace
from tortie.datastore import keys
from tortie.errors import AlreadyExists, Conflict, InvalidInput, NotFound, RevisionConflict
from tortie.ipam.pools import load_pools
from tortie.model.ippool import IPPool, ippool_from_dict, ippool_to_dict
from tortie.model.resources import IPAMConfig, ipamconfig_to_dict
from tortie.resources.service import VERBS, Planned, ResourceService, describe

__all__ = ["VERBS", "Admin", "Planned", "config_with", "describe"]


class Admin(ResourceService):
    def delete_pool(self, name: str) -> IPPool:
        """Disable the pool, release its empty affine blocks, then delete it."""
        from tortie.ipam.pool_admin import delete_pool

        return delete_pool(self.store, self.ipam, name)

    # ---------------------------------------------------------------- split

    def split_pool(self, count: int, name: str | None, cidr: str | None) -> list[IPPool]:
        pools = load_pools(self.store)
        if name is not None:
            pool = next((p for p in pools if p.name == name), None)
            what = f"IPPool({name})"
        else:
            net = parse_network(cidr or "", what="--cidr")
            pool = next((p for p in pools if p.network == net), None)
            what = f"IPPool with CIDR {cidr}"
        if pool is None:
            raise NotFound(f"{what} does not exist; list pools with 'tortie get ippools'")
        pool_key = keys.resource_key("ippools", pool.name)
        pool_kv = self.store.get(pool_key)
        if pool_kv is None:
            raise NotFound(f"{what} was deleted meanwhile; list pools with 'tortie get ippools'")
        pool = ippool_from_dict(json.loads(pool_kv.value), strict=False)
        if count < 2 or count & (count - 1):
            raise InvalidInput(
                f"cannot split {what} into {count} pools; the number must be a power of two (2, 4, 8, ...)"
            )
        bits = count.bit_length() - 1
        new_prefix = pool.network.prefixlen + bits
        if new_prefix > pool.block_size:
            raise InvalidInput(
                f"cannot split IPPool({pool.name}) {pool.cidr} into {count}: the parts (/{new_prefix}) "
                f"would be smaller than one block (/{pool.block_size}); split into fewer parts"
            )
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        parts = [
            replace(
                pool,
                name=f"split-{pool.name}-{i}",
                cidr=str(sub),
                uid=str(uuid.uuid4()),
                creation_timestamp=now,
                resource_version=None,
            )
            for i, sub in enumerate(pool.network.subnets(prefixlen_diff=bits))
        ]
        for part in parts:
            if self.store.get(keys.resource_key("ippools", part.name)) is not None:
                raise AlreadyExists(
                    f"cannot split IPPool({pool.name}): IPPool({part.name}) already exists; delete or rename it first"
                )
        # The parts cover exactly the old pool: blocks and affinities stay where they are.
        # Create the parts before deleting the pool, so a failure never leaves the range
        # without a pool (the overlap meanwhile is harmless: same range, same block size).
        created: list[str] = []
        try:
            for part in parts:
                key = keys.resource_key("ippools", part.name)
                self.store.create(key, json.dumps(ippool_to_dict(part)))
                created.append(key)
        except AlreadyExists:
            for key in created:
                self.store.delete(key)
            raise AlreadyExists(
                f"cannot split IPPool({pool.name}): a pool named split-{pool.name}-<i> was "
                "created meanwhile; nothing was changed, run the command again"
            ) from None
        try:
            self.store.delete(pool_key, pool_kv.revision)
        except RevisionConflict:
            for key in created:
                self.store.delete(key)
            raise Conflict(
                f"cannot split IPPool({pool.name}): it was changed meanwhile; nothing was "
                "changed, run the command again"
            ) from None
        return parts


def config_with(config: IPAMConfig, strict: bool | None, max_blocks: int | None) -> IPAMConfig:
    """A new IPAM config with the given settings changed (validated like a resource)."""
    from tortie.model.resources import ipamconfig_from_dict

    doc = ipamconfig_to_dict(config)
    spec = doc.setdefault("spec", {})
    if strict is not None:
        spec["strictAffinity"] = strict
    if max_blocks is not None:
        spec["maxBlocksPerHost"] = max_blocks
    return ipamconfig_from_dict(doc)
