"""Shared helpers for the IPAM tests: pool creation, a store-wide invariant checker and a
datastore proxy that counts calls."""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tortie.core.block import Block
from tortie.datastore import keys
from tortie.datastore.base import KV, Datastore, Writes
from tortie.ipam.admin import Admin
from tortie.model.ipam_records import (
    CONFIRMED,
    decode_affinity,
    decode_block,
    decode_handle,
)


def pool_doc(
    name: str,
    cidr: str,
    block_size: int,
    *,
    node_selector: str | None = None,
    disabled: bool = False,
    assignment_mode: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"cidr": cidr, "blockSize": block_size}
    if node_selector is not None:
        spec["nodeSelector"] = node_selector
    if disabled:
        spec["disabled"] = True
    if assignment_mode is not None:
        spec["assignmentMode"] = assignment_mode
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": spec,
    }


def create_pool(store: Datastore, name: str, cidr: str, block_size: int, **kw: Any) -> None:
    admin = Admin(store)
    admin.execute(admin.plan("create", [pool_doc(name, cidr, block_size, **kw)]))


def set_node_labels(store: Datastore, node: str, labels: Mapping[str, str]) -> None:
    """Write (or overwrite) a v3 Node object carrying ``labels``."""
    key = keys.resource_key("nodes", node)
    doc = json.dumps(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "Node",
            "metadata": {"name": node, "labels": dict(labels)},
            "spec": {},
        }
    )
    kv = store.get(key)
    if kv is None:
        store.create(key, doc)
    else:
        store.update(key, doc, kv.revision)


def bare(address: str) -> str:
    """``10.0.0.5/26`` → ``10.0.0.5`` (canonical text)."""
    return str(ipaddress.ip_address(address.split("/", 1)[0]))


def pool_cidrs(store: Datastore) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = []
    for kv in store.list(keys.resource_prefix("ippools")):
        out.append(ipaddress.ip_network(json.loads(kv.value)["spec"]["cidr"]))
    return out


@dataclass
class StoreState:
    """Everything IPAM keeps, decoded straight from the store."""

    blocks: dict[str, Block] = field(default_factory=dict)  # cidr -> block
    affinities: dict[tuple[str, str], str] = field(default_factory=dict)  # (node, cidr) -> state
    handles: dict[str, dict[str, int]] = field(default_factory=dict)  # id -> {cidr: count}
    held: dict[str, str | None] = field(default_factory=dict)  # address -> handle


def read_state(store: Datastore) -> StoreState:
    """Decode the store and assert the invariants that need no outside model."""
    st = StoreState()
    dup: list[str] = []
    for version in (4, 6):
        for kv in store.list(keys.block_prefix(version)):
            block = decode_block(kv.key, kv.value)
            assert keys.cidr_from_key(kv.key) == block.cidr, f"{kv.key} holds block {block.cidr}"
            st.blocks[block.cidr] = block
            for ordinal, attr in block.allocated():
                addr = str(block.address(ordinal))
                if addr in st.held:
                    dup.append(addr)
                st.held[addr] = attr.handle_id
    assert not dup, f"addresses held twice: {dup}"
    for kv in store.list(keys.all_affinities_prefix()):
        node = keys.node_of_affinity_key(kv.key)
        st.affinities[(node, keys.cidr_from_key(kv.key))] = decode_affinity(kv.key, kv.value).state
    for kv in store.list(keys.handle_prefix()):
        handle = decode_handle(kv.key, kv.value)
        st.handles[handle.handle_id] = dict(handle.block)
    return st


def check_invariants(store: Datastore, *, settled: bool = True) -> StoreState:
    """Assert every cross-record IPAM invariant; returns the decoded state.

    ``settled`` also requires affinity records and blocks to agree (true whenever no
    claim or release is half-done).
    """
    st = read_state(store)
    pools = pool_cidrs(store)
    # Every held address lies inside some pool.
    for addr in st.held:
        ip = ipaddress.ip_address(addr)
        assert any(ip in p for p in pools), f"{addr} is held but lies in no pool"
    # Handles: per-block counts equal the block contents.
    counted: dict[str, Counter[str]] = {}
    for cidr, block in st.blocks.items():
        for _ordinal, attr in block.allocated():
            if attr.handle_id is not None:
                counted.setdefault(attr.handle_id, Counter())[cidr] += 1
    for handle_id, counts in st.handles.items():
        assert all(c > 0 for c in counts.values()), f"handle {handle_id} has zero counts {counts}"
        assert counts, f"handle {handle_id} exists with no addresses"
        assert dict(counted.get(handle_id, {})) == counts, (
            f"handle {handle_id}: record {counts} != blocks {dict(counted.get(handle_id, {}))}"
        )
    missing = set(counted) - set(st.handles)
    assert not missing, f"allocations name missing handles: {sorted(missing)}"
    # Blocks themselves: the free list and allocations agree (decode checks it) and an
    # unaffine block is never empty (it would have been deleted).
    for cidr, block in st.blocks.items():
        if block.host() is None:
            assert not block.empty, f"empty block {cidr} has no affinity and was not deleted"
    if settled:
        for cidr, block in st.blocks.items():
            host = block.host()
            if host is not None:
                state = st.affinities.get((host, cidr))
                assert state == CONFIRMED, (
                    f"block {cidr} is affine to {host} but affinity is {state}"
                )
        for (node, cidr), state in st.affinities.items():
            if state == CONFIRMED:
                owned = st.blocks.get(cidr)
                assert owned is not None, f"confirmed affinity {node}->{cidr} has no block"
                assert owned.host() == node, (
                    f"confirmed affinity {node}->{cidr} but block is affine to {owned.host()}"
                )
    return st


class CountingStore:
    """A datastore proxy counting calls per method (and keys touched)."""

    def __init__(self, inner: Datastore) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def reset(self) -> None:
        self.calls.clear()

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def get(self, key: str) -> KV | None:
        self.calls["get"] += 1
        return self.inner.get(key)

    def list(self, prefix: str) -> list[KV]:
        self.calls["list"] += 1
        return self.inner.list(prefix)

    def current_revision(self) -> int:
        return self.inner.current_revision()

    def txn(self, writes: Writes) -> int:
        return self.inner.txn(writes)

    def wait_for_change(
        self, prefixes: tuple[str, ...], after_revision: int, timeout: float
    ) -> bool:
        return self.inner.wait_for_change(prefixes, after_revision, timeout)

    def create(self, key: str, value: str) -> KV:
        self.calls["create"] += 1
        return self.inner.create(key, value)

    def update(self, key: str, value: str, revision: int) -> KV:
        self.calls["update"] += 1
        return self.inner.update(key, value, revision)

    def delete(self, key: str, revision: int | None = None) -> None:
        self.calls["delete"] += 1
        self.inner.delete(key, revision)

    def close(self) -> None:
        self.inner.close()


def addresses(items: Iterable[str]) -> list[str]:
    return [bare(a) for a in items]
