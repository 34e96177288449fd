"""How much of each pool and block is in use (``tortie ipam show``).  Counts are exact
integers, even for IPv6 pools of 2**80 addresses."""

from __future__ import annotations

from tortie.core.addr import network_in, parse_network
from tortie.core.block import Block
from tortie.core.record import field, record
from tortie.datastore.base import Datastore
from tortie.ipam.pools import load_pools
from tortie.ipam.records import list_blocks
from tortie.model.ippool import IPPool


@record
class BlockUsage:
    cidr: str
    affinity: str | None
    total: int
    in_use: int

    @property
    def free(self) -> int:
        return self.total - self.in_use


@record
class PoolUsage:
    name: str
    cidr: str
    total: int
    in_use: int
    blocks: list[BlockUsage] = field(default_factory=list)

    @property
    def free(self) -> int:
        return self.total - self.in_use


def load_blocks(store: Datastore) -> list[Block]:
    """Every readable block of both families (a corrupt one is skipped: see
    ``ipam.records``; ``ipam check`` reports it)."""
    return [sb.block for version in (4, 6) for sb in list_blocks(store, version)]


def pool_usage(pools: list[IPPool], blocks: list[Block]) -> list[PoolUsage]:
    out = []
    for pool in pools:
        inside = [b for b in blocks if network_in(parse_network(b.cidr), pool.network)]
        inside.sort(key=lambda b: int(parse_network(b.cidr).network_address))
        rows = [BlockUsage(b.cidr, b.affinity, b.size, b.in_use) for b in inside]
        out.append(
            PoolUsage(
                pool.name, pool.cidr, pool.network.num_addresses, sum(r.in_use for r in rows), rows
            )
        )
    return out


def usage(store: Datastore) -> list[PoolUsage]:
    return pool_usage(load_pools(store), load_blocks(store))


def usage_json(rows: list[PoolUsage]) -> dict[str, object]:
    return {
        "pools": [
            {
                "name": p.name,
                "cidr": p.cidr,
                "total": p.total,
                "inUse": p.in_use,
                "free": p.free,
                "blocks": [
                    {
                        "cidr": b.cidr,
                        "affinity": b.affinity,
                        "total": b.total,
                        "inUse": b.in_use,
                        "free": b.free,
                    }
                    for b in p.blocks
                ],
            }
            for p in rows
        ]
    }
