"""Allocation cost does not depend on the size of the pool or on what is allocated.

The store is wrapped in a proxy counting get/list/create/update/delete calls and the
rows that ``list`` returns; a first allocation on a new node must cost the same in a
v4 /16 as in a v4 /8, a v6 /64 or a v6 /48 pool, and the cost per allocation must not
grow from 100 to 2,000 existing allocations spread over many nodes.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tortie.datastore.base import KV
from tortie.datastore.memory import MemoryDatastore
from tortie.ipam.requests import AutoAssignArgs
from tortie.ipam.service import Ipam

from .helpers import CountingStore, check_invariants, create_pool

POOLS = {
    "v4 /16": ("10.0.0.0/16", 26, 4),
    "v4 /8": ("10.0.0.0/8", 26, 4),
    "v6 /64": ("fd00::/64", 122, 6),
    "v6 /48": ("fd00::/48", 122, 6),
}


class RowCountingStore(CountingStore):
    """Also counts the rows every ``list`` returns (the keys it touches)."""

    def __init__(self, inner: MemoryDatastore) -> None:
        super().__init__(inner)
        self.rows = 0

    def reset(self) -> None:
        super().reset()
        self.rows = 0

    def list(self, prefix: str) -> list[KV]:
        out = super().list(prefix)
        self.rows += len(out)
        return out


def assign(ipam: Ipam, node: str, handle: str, version: int) -> list[str]:
    res = ipam.auto_assign(
        AutoAssignArgs(
            node=node, handle_id=handle, num4=1 if version == 4 else 0, num6=int(version == 6)
        )
    )
    fam = res.ipv4 if version == 4 else res.ipv6
    assert fam.messages == [], fam.messages
    return fam.addresses


def first_allocation_cost(cidr: str, block_size: int, version: int) -> tuple[Counter[str], int]:
    store = RowCountingStore(MemoryDatastore())
    create_pool(store, "pool", cidr, block_size)
    ipam = Ipam(store)
    store.reset()
    assert len(assign(ipam, "fresh-node", "h", version)) == 1
    return Counter(store.calls), store.rows


def test_first_allocation_on_a_new_node_costs_the_same_in_every_pool_size() -> None:
    costs = {name: first_allocation_cost(*spec) for name, spec in POOLS.items()}
    totals = {name: sum(c.values()) for name, (c, _rows) in costs.items()}
    base_calls, base_rows = costs["v4 /16"]
    for name, (calls, rows) in costs.items():
        for method in ("get", "list", "create", "update"):
            assert abs(calls[method] - base_calls[method]) <= 1, (name, dict(calls))
        assert rows <= base_rows + 1, (name, rows)
    assert max(totals.values()) - min(totals.values()) <= 2, totals
    assert max(totals.values()) <= 30, totals


def populate(count: int, nodes: int, cidr: str, block_size: int, version: int) -> RowCountingStore:
    store = RowCountingStore(MemoryDatastore())
    create_pool(store, "pool", cidr, block_size)
    ipam = Ipam(store)
    for i in range(count):
        assign(ipam, f"node-{i % nodes}", f"pre-{i}", version)
    return store


def per_allocation_cost(
    count: int, cidr: str, block_size: int, version: int
) -> tuple[float, float, float, float]:
    """Mean (calls, rows) for an allocation on an existing node and on a new node.

    Ten allocations per node: 100 allocations make 10 blocks, 2,000 make 200."""
    nodes = count // 10
    store = populate(count, nodes, cidr, block_size, version)
    ipam = Ipam(store)
    samples = 10
    store.reset()
    for i in range(samples):
        assign(ipam, f"node-{i}", f"more-{i}", version)
    old_calls, old_rows = store.total / samples, store.rows / samples
    store.reset()
    for i in range(samples):
        assign(ipam, f"new-node-{i}", f"new-{i}", version)
    new_calls, new_rows = store.total / samples, store.rows / samples
    check_invariants(store.inner)
    return old_calls, old_rows, new_calls, new_rows


@pytest.mark.parametrize("pool", ["v4 /16", "v6 /48"])
def test_cost_per_allocation_does_not_grow_with_existing_allocations(pool: str) -> None:
    cidr, block_size, version = POOLS[pool]
    small = per_allocation_cost(100, cidr, block_size, version)
    large = per_allocation_cost(2000, cidr, block_size, version)
    old_small, old_rows_small, new_small, new_rows_small = small
    old_large, old_rows_large, new_large, new_rows_large = large
    # Calls: the same give or take a stray block probe or a new block in the sample.
    assert old_large <= old_small + 2, (small, large)
    assert new_large <= new_small + 2, (small, large)
    # Rows listed: a new node lists only pools and its own (no) affinities; an existing
    # node also lists its own affinity (one block each).  Listing every block would
    # make these grow twentyfold.
    assert new_rows_large <= new_rows_small + 1, (small, large)
    assert old_rows_large <= old_rows_small + 3, (small, large)
