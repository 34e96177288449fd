"""Scenario tests of the IPAM service, modelled on Calico's own IPAM suite.

Each test builds a tiny world (pools, nodes, config), drives ``Ipam`` and checks both
the answer and the stored records; ``check_invariants`` runs at the end of most tests.
Every test runs on the memory and the SQLite backend.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tortie.core import block as blk
from tortie.datastore import keys
from tortie.datastore.base import KV, Datastore, Writes
from tortie.datastore.memory import MemoryDatastore
from tortie.datastore.sqlite import SqliteDatastore
from tortie.errors import DatastoreError, InvalidInput, NotFound
from tortie.ipam.admin import Admin
from tortie.ipam.requests import AutoAssignArgs, FamilyResult, ReleaseOptions
from tortie.ipam.service import Ipam
from tortie.model.ipam_records import (
    CONFIRMED,
    PENDING,
    Affinity,
    decode_affinity,
    decode_block,
    encode_affinity,
    encode_block,
)
from tortie.model.resources import IPAMConfig

from .helpers import bare, check_invariants, create_pool, pool_doc, set_node_labels


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Datastore]:
    ds: Datastore
    if request.param == "memory":
        ds = MemoryDatastore()
    else:
        ds = SqliteDatastore(str(tmp_path / "ipam.db"))
    yield ds
    ds.close()


def v4(
    ipam: Ipam, node: str, handle: str, num: int = 1, ipv4_pools: tuple[str, ...] = ()
) -> FamilyResult:
    args = AutoAssignArgs(node=node, handle_id=handle, num4=num, ipv4_pools=ipv4_pools)
    return ipam.auto_assign(args).ipv4


def affinity_state(store: Datastore, node: str, cidr: str) -> str | None:
    kv = store.get(keys.affinity_key(node, cidr, 6 if ":" in cidr else 4))
    return None if kv is None else decode_affinity(kv.key, kv.value).state


def block_host(ipam: Ipam, cidr: str) -> str | None:
    block = ipam.get_block(cidr)
    assert block is not None, f"block {cidr} does not exist"
    return block.host()


# ------------------------------------------------------------------ FIFO and wrap


def test_fifo_a_freed_address_is_reused_only_after_the_others(store: Datastore) -> None:
    create_pool(store, "tiny", "10.0.0.0/29", 29)
    ipam = Ipam(store)
    first = [bare(a) for a in v4(ipam, "n1", "h", 3).addresses]
    assert first == ["10.0.0.0", "10.0.0.1", "10.0.0.2"]
    assert ipam.release_ips([ReleaseOptions("10.0.0.1")]).released == ["10.0.0.1"]
    order = [bare(v4(ipam, "n1", f"h{i}").addresses[0]) for i in range(6)]
    # .1 went to the back of the free list: the five never-used addresses come first.
    assert order == ["10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.1"]
    assert v4(ipam, "n1", "h-late").messages == ["No IPs available in pools: [10.0.0.0/29]"]
    # Wrap: free two in a full block; they come back in the order they were freed.
    ipam.release_ips([ReleaseOptions("10.0.0.6"), ReleaseOptions("10.0.0.2")])
    again = [bare(a) for a in v4(ipam, "n1", "h-again", 2).addresses]
    assert again == ["10.0.0.6", "10.0.0.2"]
    check_invariants(store)


# -------------------------------------------------------------------- borrowing


def test_borrowing_from_a_full_pool(store: Datastore) -> None:
    create_pool(store, "one-block", "10.0.0.0/29", 29)
    ipam = Ipam(store)
    a = v4(ipam, "node-a", "ha")
    assert a.addresses == ["10.0.0.0/29"]
    b = v4(ipam, "node-b", "hb", 2)
    # No free block is left, so node B borrows from node A's block; A keeps the affinity.
    assert [bare(x) for x in b.addresses] == ["10.0.0.1", "10.0.0.2"]
    assert b.messages == []
    assert block_host(ipam, "10.0.0.0/29") == "node-a"
    assert store.list(keys.affinity_prefix("node-b", 4)) == []
    found = ipam.find_allocation("10.0.0.1")
    assert found is not None
    assert found[0].owner(found[1]) == blk.Attribute("hb", {"node": "node-b"})
    check_invariants(store)


def test_strict_affinity_refuses_to_borrow(store: Datastore) -> None:
    create_pool(store, "one-block", "10.0.0.0/29", 29)
    ipam = Ipam(store)
    ipam.set_config(IPAMConfig(strict_affinity=True))
    assert len(v4(ipam, "node-a", "ha").addresses) == 1
    b = v4(ipam, "node-b", "hb")
    assert b.addresses == []
    assert b.messages == [
        "No more free affine blocks and strict affinity enabled",
        "No IPs available in pools: [10.0.0.0/29]",
    ]
    assert ipam.get_handle("hb") is None
    # Node A can still fill its own block.
    assert len(v4(ipam, "node-a", "ha", 7).addresses) == 7
    check_invariants(store)


def test_max_blocks_per_host(store: Datastore) -> None:
    create_pool(store, "pool", "10.0.0.0/27", 30)  # 8 blocks of 4
    ipam = Ipam(store)
    ipam.set_config(IPAMConfig(strict_affinity=True, max_blocks_per_host=2))
    got = v4(ipam, "node-a", "h", 12)
    assert len(got.addresses) == 8
    assert any("maxBlocksPerHost 2" in m for m in got.messages), got.messages
    assert "No more free affine blocks and strict affinity enabled" in got.messages
    assert len(store.list(keys.affinity_prefix("node-a", 4))) == 2
    # Other nodes are not limited by node-a's blocks.
    assert len(v4(ipam, "node-b", "h2", 8).addresses) == 8
    check_invariants(store)


# ------------------------------------------------------------------ selectors


def test_node_selector_change_moves_the_node_to_the_new_pool(store: Datastore) -> None:
    create_pool(store, "pool-a", "10.0.0.0/28", 30, node_selector="zone == 'a'")
    create_pool(store, "pool-b", "10.1.0.0/28", 30, node_selector="zone == 'b'")
    ipam = Ipam(store)
    set_node_labels(store, "n1", {"zone": "a"})
    first = bare(v4(ipam, "n1", "h1").addresses[0])
    assert first.startswith("10.0.0.")
    a_block = next(keys.cidr_from_key(kv.key) for kv in store.list(keys.affinity_prefix("n1", 4)))
    # Relabel while the pool-a block is in use: the block stays, pool-b serves the node.
    set_node_labels(store, "n1", {"zone": "b"})
    second = bare(v4(ipam, "n1", "h2").addresses[0])
    assert second.startswith("10.1.0.")
    assert block_host(ipam, a_block) == "n1"
    assert affinity_state(store, "n1", a_block) == CONFIRMED
    # Once the pool-a block is empty, the next request gives it up.
    ipam.release_ips([ReleaseOptions(first)])
    assert ipam.get_block(a_block) is not None
    third = bare(v4(ipam, "n1", "h3").addresses[0])
    assert third.startswith("10.1.0.")
    assert ipam.get_block(a_block) is None
    assert affinity_state(store, "n1", a_block) is None
    # A node that matches no pool is told so, with the labels it has.
    set_node_labels(store, "n2", {"zone": "c"})
    with pytest.raises(NotFound, match="no configured Calico pools for node n2"):
        v4(ipam, "n2", "h4")
    check_invariants(store)


def test_requested_pools_are_used_in_order_and_ignore_selectors(store: Datastore) -> None:
    create_pool(store, "p1", "10.0.0.0/30", 30, node_selector="zone == 'nowhere'")
    create_pool(store, "p2", "10.0.1.0/30", 30, node_selector="zone == 'nowhere'")
    ipam = Ipam(store)
    with pytest.raises(NotFound, match="no configured Calico pools for node n1"):
        v4(ipam, "n1", "h")
    got = [bare(a) for a in v4(ipam, "n1", "h", 6, ipv4_pools=("p2", "10.0.0.0/30")).addresses]
    assert got[:4] == ["10.0.1.0", "10.0.1.1", "10.0.1.2", "10.0.1.3"]
    assert got[4:] == ["10.0.0.0", "10.0.0.1"]
    short = v4(ipam, "n2", "h2", 3, ipv4_pools=("p1",))
    assert [bare(a) for a in short.addresses] == ["10.0.0.2", "10.0.0.3"]
    assert short.messages == ["No IPs available in pools: [10.0.0.0/30]"]
    check_invariants(store)


def test_a_disabled_or_unknown_requested_pool_is_rejected(store: Datastore) -> None:
    create_pool(store, "on", "10.0.0.0/30", 30)
    create_pool(store, "off", "10.0.1.0/30", 30, disabled=True)
    ipam = Ipam(store)
    with pytest.raises(
        InvalidInput, match=r"the given pool \(off\) does not exist, or is not enabled"
    ):
        v4(ipam, "n1", "h", ipv4_pools=("on", "off"))
    with pytest.raises(
        InvalidInput, match=r"the given pool \(10\.0\.1\.0/30\) does not exist, or is not enabled"
    ):
        v4(ipam, "n1", "h", ipv4_pools=("10.0.1.0/30",))
    with pytest.raises(InvalidInput, match=r"the given pool \(ghost\) does not exist"):
        v4(ipam, "n1", "h", ipv4_pools=("ghost",))
    assert ipam.get_handle("h") is None
    # An auto-assign without a request never picks the disabled pool.
    assert [bare(a) for a in v4(ipam, "n1", "h", 5).addresses] == [
        "10.0.0.0",
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
    ]
    check_invariants(store)


# ------------------------------------------------------------------ dual stack


def test_dual_stack_in_one_call(store: Datastore) -> None:
    create_pool(store, "v4", "10.0.0.0/28", 30)
    create_pool(store, "v6", "fd00::/120", 124)
    ipam = Ipam(store)
    res = ipam.auto_assign(AutoAssignArgs(node="n1", handle_id="pod", num4=2, num6=3))
    assert [a.endswith("/30") and "." in a for a in res.ipv4.addresses] == [True, True]
    assert [a.endswith("/124") and ":" in a for a in res.ipv6.addresses] == [True] * 3
    handle = ipam.get_handle("pod")
    assert handle is not None
    assert sorted(handle.block.values()) == [2, 3]
    assert {":" in c for c in handle.block} == {True, False}
    released = ipam.release_by_handle("pod")
    assert sorted(released) == sorted(bare(a) for a in res.ipv4.addresses + res.ipv6.addresses)
    assert ipam.get_handle("pod") is None
    check_invariants(store)


def test_dual_stack_without_a_v6_pool_assigns_nothing(store: Datastore) -> None:
    create_pool(store, "v4", "10.0.0.0/28", 30)
    ipam = Ipam(store)
    with pytest.raises(NotFound, match="no configured Calico pools for node n1"):
        ipam.auto_assign(AutoAssignArgs(node="n1", handle_id="pod", num4=1, num6=1))
    assert ipam.get_handle("pod") is None
    assert store.list(keys.block_prefix(4)) == []
    check_invariants(store)


# ------------------------------------------------------------------ releasing


def test_release_with_a_stale_sequence_number_is_refused(store: Datastore) -> None:
    create_pool(store, "pool", "10.0.0.0/29", 29)
    ipam = Ipam(store)
    addr = bare(v4(ipam, "n1", "first").addresses[0])
    found = ipam.find_allocation(addr)
    assert found is not None
    old_seq = found[0].sequence_number_for_allocation[str(found[1])]
    ipam.release_ips([ReleaseOptions(addr)])
    # The address is taken again (by someone else) with a newer sequence number.
    ipam.assign_ip(addr, "second", {}, "n1")
    refused = ipam.release_ips([ReleaseOptions(addr, sequence_number=old_seq)])
    assert refused.released == []
    assert [a for a, _ in refused.refused] == [addr]
    assert "stale" in refused.refused[0][1]
    still = ipam.find_allocation(addr)
    assert still is not None and still[0].owner(still[1]) is not None
    new_seq = still[0].sequence_number_for_allocation[str(still[1])]
    assert new_seq > old_seq
    wrong = ipam.release_ips([ReleaseOptions(addr, handle_id="first")])
    assert [a for a, _ in wrong.refused] == [addr]
    ok = ipam.release_ips([ReleaseOptions(addr, handle_id="second", sequence_number=new_seq)])
    assert ok.released == [addr]
    assert ipam.find_allocation(addr) is None
    check_invariants(store)


def test_release_by_handle_across_blocks(store: Datastore) -> None:
    create_pool(store, "pool", "10.0.0.0/28", 30)  # 4 blocks of 4
    ipam = Ipam(store)
    mine = v4(ipam, "n1", "h", 3).addresses + v4(ipam, "n2", "h", 2).addresses
    mine.append(ipam.assign_ip("10.0.0.14", "h", {}, "n3"))
    other = v4(ipam, "n1", "other").addresses + v4(ipam, "n2", "other").addresses
    handle = ipam.get_handle("h")
    assert handle is not None and handle.total == 6 and len(handle.block) >= 3
    released = ipam.release_by_handle("h")
    assert sorted(released) == sorted(bare(a) for a in mine)
    assert ipam.get_handle("h") is None
    for a in other:
        assert ipam.find_allocation(bare(a)) is not None
    with pytest.raises(NotFound, match="handle h does not exist"):
        ipam.release_by_handle("h")
    check_invariants(store)


def test_affinity_is_released_only_when_the_block_is_empty(store: Datastore) -> None:
    create_pool(store, "pool", "10.0.0.0/28", 30)
    ipam = Ipam(store)
    addr = bare(v4(ipam, "n1", "h").addresses[0])
    cidr = next(keys.cidr_from_key(kv.key) for kv in store.list(keys.affinity_prefix("n1", 4)))
    assert ipam.release_host_affinities("n1") == []
    assert block_host(ipam, cidr) == "n1"
    assert affinity_state(store, "n1", cidr) == CONFIRMED
    ipam.release_ips([ReleaseOptions(addr)])
    assert ipam.release_host_affinities("n1") == [cidr]
    assert ipam.get_block(cidr) is None
    assert store.list(keys.host_prefix("n1")) == []
    # Forced release keeps a non-empty block without affinity; freeing it deletes it.
    addr = bare(v4(ipam, "n1", "h").addresses[0])
    cidr = next(keys.cidr_from_key(kv.key) for kv in store.list(keys.affinity_prefix("n1", 4)))
    assert ipam.release_host_affinities("n1", must_be_empty=False) == [cidr]
    assert block_host(ipam, cidr) is None
    assert store.list(keys.host_prefix("n1")) == []
    check_invariants(store)
    ipam.release_ips([ReleaseOptions(addr)])
    assert ipam.get_block(cidr) is None
    check_invariants(store)


def test_deleting_a_pool_releases_empty_blocks_and_the_replacement_works(
    store: Datastore,
) -> None:
    create_pool(store, "old", "10.0.0.0/28", 30)
    ipam = Ipam(store)
    kept = bare(v4(ipam, "node-a", "ha").addresses[0])
    freed = bare(v4(ipam, "node-b", "hb").addresses[0])
    ipam.release_ips([ReleaseOptions(freed)])
    a_block = next(
        keys.cidr_from_key(kv.key) for kv in store.list(keys.affinity_prefix("node-a", 4))
    )
    b_block = next(
        keys.cidr_from_key(kv.key) for kv in store.list(keys.affinity_prefix("node-b", 4))
    )
    create_pool(store, "new", "10.1.0.0/28", 30)
    admin = Admin(store)
    admin.execute(admin.plan("delete", [pool_doc("old", "10.0.0.0/28", 30)]))
    assert store.get(keys.resource_key("ippools", "old")) is None
    assert ipam.get_block(b_block) is None
    assert affinity_state(store, "node-b", b_block) is None
    # A block still in use stays (with its affinity) until its addresses are released.
    assert block_host(ipam, a_block) == "node-a"
    assert bare(v4(ipam, "node-b", "hb").addresses[0]).startswith("10.1.0.")
    assert bare(v4(ipam, "node-a", "ha2").addresses[0]).startswith("10.1.0.")
    assert ipam.release_ips([ReleaseOptions(kept)]).released == [kept]
    check_invariants(store)


# ------------------------------------------------------------ specific address


def test_assigning_a_specific_address(store: Datastore) -> None:
    create_pool(store, "pool", "10.0.0.0/28", 30)
    ipam = Ipam(store)
    assert ipam.assign_ip("10.0.0.9", "h", {"pod": "x"}, "n1") == "10.0.0.9/32"
    # The block did not exist: it was claimed for the node.
    assert block_host(ipam, "10.0.0.8/30") == "n1"
    assert affinity_state(store, "n1", "10.0.0.8/30") == CONFIRMED
    with pytest.raises(InvalidInput, match=r"Address already assigned in block 10\.0\.0\.8/30"):
        ipam.assign_ip("10.0.0.9", "h2", {}, "n1")
    with pytest.raises(InvalidInput, match="The provided IP address is not in a configured pool"):
        ipam.assign_ip("10.0.1.1", "h", {}, "n1")
    with pytest.raises(InvalidInput, match="The provided IP address is not in a configured pool"):
        ipam.assign_ip("fd00::1", "h", {}, "n1")
    assert ipam.get_handle("h2") is None
    check_invariants(store)


# ------------------------------------------------------------------ exhaustion


def test_exhaustion_reports_the_exact_reason(store: Datastore) -> None:
    create_pool(store, "a", "10.0.0.0/30", 30)
    ipam = Ipam(store)
    got = v4(ipam, "n1", "h", 5)
    assert len(got.addresses) == 4
    assert got.messages == ["No IPs available in pools: [10.0.0.0/30]"]
    create_pool(store, "b", "10.0.1.0/30", 30)
    got = v4(ipam, "n2", "h2", 6)
    assert len(got.addresses) == 4
    assert got.messages == ["No IPs available in pools: [10.0.0.0/30 10.0.1.0/30]"]
    create_pool(store, "c", "fd00::/126", 126)
    res = ipam.auto_assign(AutoAssignArgs(node="n3", handle_id="h3", num6=5))
    assert res.ipv6.messages == ["No IPs available in pools: [fd00::/126]"]
    assert len(res.ipv6.addresses) == 4
    check_invariants(store)


# ------------------------------------------------------------- crash recovery


def test_a_pending_affinity_left_by_a_crashed_claim_is_settled(store: Datastore) -> None:
    create_pool(store, "pool", "10.0.0.0/29", 29)
    cidr = "10.0.0.0/29"
    # Crash after the block was created but before the affinity was confirmed.
    store.create(keys.affinity_key("n1", cidr, 4), encode_affinity(Affinity(PENDING)))
    store.create(keys.block_key(cidr, 4), encode_block(blk.new_block(cidr, "n1")))
    with pytest.raises(AssertionError, match="affinity is pending"):
        check_invariants(store)
    ipam = Ipam(store)
    assert bare(v4(ipam, "n1", "h").addresses[0]) == "10.0.0.0"
    assert affinity_state(store, "n1", cidr) == CONFIRMED
    check_invariants(store)


def test_a_pending_affinity_that_lost_the_block_is_dropped(store: Datastore) -> None:
    create_pool(store, "pool", "10.0.0.0/29", 29)
    cidr = "10.0.0.0/29"
    # n1 crashed after writing its pending affinity; n2 then created the block.
    store.create(keys.affinity_key("n1", cidr, 4), encode_affinity(Affinity(PENDING)))
    ipam = Ipam(store)
    assert bare(v4(ipam, "n2", "h2").addresses[0]) == "10.0.0.0"
    assert block_host(ipam, cidr) == "n2"
    got = v4(ipam, "n1", "h1")  # borrows; the stale claim is cleaned up on the way
    assert bare(got.addresses[0]) == "10.0.0.1"
    assert affinity_state(store, "n1", cidr) is None
    check_invariants(store)


def test_a_pending_affinity_without_a_block_is_completed_by_the_next_claim(
    store: Datastore,
) -> None:
    create_pool(store, "pool", "10.0.0.0/29", 29)
    cidr = "10.0.0.0/29"
    store.create(keys.affinity_key("n1", cidr, 4), encode_affinity(Affinity(PENDING)))
    ipam = Ipam(store)
    assert bare(v4(ipam, "n1", "h").addresses[0]) == "10.0.0.0"
    assert affinity_state(store, "n1", cidr) == CONFIRMED
    check_invariants(store)


class _AllocateDuringDelete:
    """A store proxy: the first delete of ``key`` is preceded by another writer's
    allocation into that block (a race lost by affinity release)."""

    def __init__(self, inner: Datastore, key: str, race: Ipam) -> None:
        self.inner = inner
        self.key = key
        self.race = race
        self.fired = False

    def get(self, key: str) -> KV | None:
        return self.inner.get(key)

    def list(self, prefix: str) -> list[KV]:
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
        return self.inner.create(key, value)

    def update(self, key: str, value: str, revision: int) -> KV:
        return self.inner.update(key, value, revision)

    def delete(self, key: str, revision: int | None = None) -> None:
        if key == self.key and not self.fired:
            self.fired = True
            self.race.auto_assign(AutoAssignArgs(node="n1", handle_id="racer", num4=1))
        self.inner.delete(key, revision)

    def close(self) -> None:
        self.inner.close()


def test_affinity_release_that_loses_a_race_keeps_the_affinity(store: Datastore) -> None:
    create_pool(store, "pool", "10.0.0.0/29", 29)
    cidr = "10.0.0.0/29"
    ipam = Ipam(store)
    addr = bare(v4(ipam, "n1", "h").addresses[0])
    ipam.release_ips([ReleaseOptions(addr)])
    racing = Ipam(_AllocateDuringDelete(store, keys.block_key(cidr, 4), Ipam(store)))
    # The block was emptied, but an allocation lands before the delete: nothing released.
    assert racing.release_host_affinities("n1") == []
    assert block_host(ipam, cidr) == "n1"
    assert affinity_state(store, "n1", cidr) == CONFIRMED
    check_invariants(store)
    # And the node keeps using its block.
    assert bare(v4(ipam, "n1", "h2").addresses[0]).startswith("10.0.0.")
    check_invariants(store)


# ---------------------------------------------------------------- corruption


def test_a_corrupt_block_raises_datastore_error_naming_the_key(store: Datastore) -> None:
    create_pool(store, "pool", "10.0.0.0/29", 29)
    ipam = Ipam(store)
    v4(ipam, "n1", "h")
    key = keys.block_key("10.0.0.0/29", 4)
    kv = store.get(key)
    assert kv is not None
    store.update(key, "{not json", kv.revision)
    with pytest.raises(DatastoreError, match=key):
        v4(ipam, "n1", "h")
    with pytest.raises(DatastoreError, match=key):
        ipam.release_ips([ReleaseOptions("10.0.0.0")])
    # Still corrupt afterwards: nothing overwrote it.
    after = store.get(key)
    assert after is not None and after.value == "{not json"


@pytest.mark.parametrize(
    "change",
    [
        {"allocations": [None] * 7},
        {"unallocated": [1, 2, 3, 4, 5, 6, 7, 8]},
        {"unallocated": [-1, 1, 2, 3, 4, 5, 6, 7]},
        {"allocations": [5, None, None, None, None, None, None, None]},
        {"cidr": "10.0.0.8/29"},
        {"allocations": "nope"},
    ],
    ids=["short", "ordinal-out-of-range", "negative-ordinal", "bad-attr", "wrong-cidr", "type"],
)
def test_a_block_with_a_bad_shape_raises_datastore_error(
    store: Datastore, change: dict[str, object]
) -> None:
    create_pool(store, "pool", "10.0.0.0/29", 29)
    ipam = Ipam(store)
    v4(ipam, "n1", "h")
    key = keys.block_key("10.0.0.0/29", 4)
    kv = store.get(key)
    assert kv is not None
    doc = json.loads(kv.value)
    doc.update(change)
    store.update(key, json.dumps(doc), kv.revision)
    with pytest.raises(DatastoreError, match=key):
        decode_block(key, json.dumps(doc))
    with pytest.raises(DatastoreError, match=key):
        v4(ipam, "n1", "h", 8)


class _AllocateAroundRelease:
    """A store proxy: right before (or after) the first transaction writing ``key``,
    another writer allocates for the same handle elsewhere (a concurrent ADD racing a
    DEL of the handle)."""

    def __init__(self, inner: Datastore, key: str, race: Ipam, when: str) -> None:
        self.inner = inner
        self.key = key
        self.race = race
        self.when = when
        self.fired = False

    def _race(self, writes: Writes, when: str) -> None:
        if when == self.when and not self.fired and any(w.key == self.key for w in writes):
            self.fired = True
            got = self.race.auto_assign(
                AutoAssignArgs(node="n2", handle_id="h", num4=1, ipv4_pools=("other",))
            )
            assert len(got.ipv4.addresses) == 1

    def get(self, key: str) -> KV | None:
        return self.inner.get(key)

    def list(self, prefix: str) -> list[KV]:
        return self.inner.list(prefix)

    def current_revision(self) -> int:
        return self.inner.current_revision()

    def txn(self, writes: Writes) -> int:
        self._race(writes, "before")
        rev = self.inner.txn(writes)
        self._race(writes, "after")
        return rev

    def wait_for_change(
        self, prefixes: tuple[str, ...], after_revision: int, timeout: float
    ) -> bool:
        return self.inner.wait_for_change(prefixes, after_revision, timeout)

    def create(self, key: str, value: str) -> KV:
        return self.inner.create(key, value)

    def update(self, key: str, value: str, revision: int) -> KV:
        return self.inner.update(key, value, revision)

    def delete(self, key: str, revision: int | None = None) -> None:
        self.inner.delete(key, revision)

    def close(self) -> None:
        self.inner.close()


def test_release_by_handle_racing_an_allocation_keeps_the_new_address(store: Datastore) -> None:
    """The allocation lands after the release's transaction: it stays, under the
    handle (which the release had deleted with its addresses)."""
    create_pool(store, "pool", "10.0.0.0/29", 29)
    create_pool(store, "other", "10.1.0.0/29", 29)
    ipam = Ipam(store)
    old = [bare(a) for a in v4(ipam, "n1", "h", 2, ipv4_pools=("pool",)).addresses]
    block = keys.block_key("10.0.0.0/29", 4)
    racing = Ipam(_AllocateAroundRelease(store, block, Ipam(store), "after"))
    assert sorted(racing.release_by_handle("h")) == old
    # The address allocated meanwhile is still recorded under the handle.
    handle = ipam.get_handle("h")
    assert handle is not None and handle.block == {"10.1.0.0/29": 1}
    check_invariants(store)
    assert ipam.release_by_handle("h") == ["10.1.0.0"]
    assert ipam.get_handle("h") is None
    check_invariants(store)


def test_release_by_handle_losing_to_an_allocation_plans_again(store: Datastore) -> None:
    """The allocation lands between the release's reads and its transaction: the
    transaction loses (the handle changed), the release is planned again from what the
    conflict returned and frees every address the handle holds by then — never a handle
    left naming a freed address, nor an address whose handle is gone."""
    create_pool(store, "pool", "10.0.0.0/29", 29)
    create_pool(store, "other", "10.1.0.0/29", 29)
    ipam = Ipam(store)
    old = [bare(a) for a in v4(ipam, "n1", "h", 2, ipv4_pools=("pool",)).addresses]
    block = keys.block_key("10.0.0.0/29", 4)
    proxy = _AllocateAroundRelease(store, block, Ipam(store), "before")
    assert sorted(Ipam(proxy).release_by_handle("h")) == sorted([*old, "10.1.0.0"])
    assert proxy.fired
    assert ipam.get_handle("h") is None
    assert ipam.find_allocation("10.1.0.0") is None
    check_invariants(store)


def test_releasing_the_same_address_twice_in_one_request(store: Datastore) -> None:
    create_pool(store, "pool", "10.0.0.0/29", 29)
    ipam = Ipam(store)
    v4(ipam, "n1", "h", 2)
    res = ipam.release_ips([ReleaseOptions("10.0.0.0"), ReleaseOptions("10.0.0.0")])
    assert res.released == ["10.0.0.0"]
    handle = ipam.get_handle("h")
    assert handle is not None and handle.total == 1
    check_invariants(store)


def test_release_by_handle_drops_a_stale_handle_record(store: Datastore) -> None:
    create_pool(store, "pool", "10.0.0.0/29", 29)
    ipam = Ipam(store)
    v4(ipam, "n1", "h", 1)
    key = keys.handle_key("h")
    kv = store.get(key)
    assert kv is not None
    # The record over-counts one block and names a block that does not exist.
    stale = {"handleID": "h", "block": {"10.0.0.0/29": 3, "10.0.0.8/29": 1}, "deleted": False}
    store.update(key, json.dumps(stale), kv.revision)
    assert ipam.release_by_handle("h") == ["10.0.0.0"]
    assert ipam.get_handle("h") is None
    check_invariants(store)


# ------------------------------------------------- emptied blocks go back to the pool


@pytest.mark.parametrize("how", ["handle", "address"])
def test_emptied_blocks_are_returned_but_one_per_pool_stays(store: Datastore, how: str) -> None:
    create_pool(store, "pool", "10.0.0.0/26", 29)  # 8 blocks of 8
    ipam = Ipam(store)
    got = [v4(ipam, "n1", f"h{i}").addresses[0] for i in range(20)]  # 3 blocks
    blocks = {c for c in ipam.confirmed_affinities("n1", 4)}
    assert len(blocks) == 3
    for i, addr in enumerate(got):
        if how == "handle":
            ipam.release_by_handle(f"h{i}")
        else:
            ipam.release_ips([ReleaseOptions(bare(addr))])
    left = ipam.confirmed_affinities("n1", 4)
    assert len(left) == 1 and left[0] in blocks
    # The released blocks are gone from the store, so other nodes can claim them.
    for cidr in blocks - set(left):
        assert ipam.get_block(cidr) is None
        assert affinity_state(store, "n1", cidr) is None
    check_invariants(store)


def test_a_node_keeps_its_only_block_when_it_empties(store: Datastore) -> None:
    create_pool(store, "pool", "10.0.0.0/26", 29)
    ipam = Ipam(store)
    addr = bare(v4(ipam, "n1", "h").addresses[0])
    ipam.release_ips([ReleaseOptions(addr)])
    assert len(ipam.confirmed_affinities("n1", 4)) == 1
    check_invariants(store)
