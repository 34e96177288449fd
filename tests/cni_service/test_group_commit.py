"""Group commit and warm blocks (tortie.ipam.batch, tortie.ipam.warm): many concurrent
assigns in few block writes, with every IPAM invariant kept while other writers run."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from tortie.datastore import keys
from tortie.datastore.base import Datastore, Writes
from tortie.datastore.memory import MemoryDatastore
from tortie.datastore.sqlite import SqliteDatastore
from tortie.errors import Exhausted
from tortie.ipam.batch import GroupCommit
from tortie.ipam.check import check
from tortie.ipam.requests import AssignRequest
from tortie.ipam.service import Ipam
from tortie.ipam.warm import WarmBlocks
from tortie.model.ipam_records import decode_block, decode_handle
from tortie.model.ipamconfig import IPAMConfig

NODE = "node-a"


def add_pool(store: Datastore, name: str, cidr: str, block_size: int) -> None:
    doc = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"cidr": cidr, "blockSize": block_size},
    }
    store.create(keys.resource_key("ippools", name), json.dumps(doc))


class CountingStore(MemoryDatastore):
    """Counts block writes (the thing group commit saves); each read takes a network
    round trip's time, as on etcd, so concurrent requests overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.block_writes = 0

    def get(self, key: str):  # type: ignore[no-untyped-def]
        time.sleep(0.0005)
        return super().get(key)

    def update(self, key: str, value: str, revision: int):  # type: ignore[no-untyped-def]
        if key.startswith("/calico/ipam/v2/assignment/"):
            self.block_writes += 1
        return super().update(key, value, revision)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Datastore:
    s: Datastore = (
        CountingStore() if request.param == "memory" else SqliteDatastore(str(tmp_path / "s.db"))
    )
    add_pool(s, "v4", "10.80.0.0/16", 26)
    add_pool(s, "v6", "fd00:80::/48", 122)
    return s


def request(i: int, node: str = NODE, num4: int = 1, num6: int = 1) -> AssignRequest:
    return AssignRequest(
        node=node, handle_id=f"net.c{i}", num4=num4, num6=num6, attrs={"pod": f"p{i}"}
    )


def allocations(store: Datastore) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for version in (4, 6):
        for kv in store.list(keys.block_prefix(version)):
            block = decode_block(kv.key, kv.value)
            for ordinal, attr in block.allocated():
                addr = str(block.address(ordinal))
                assert addr not in out, f"{addr} allocated twice"
                out[addr] = attr.handle_id
    return out


def burst(commit: GroupCommit, n: int, start: int = 0, node: str = NODE) -> dict[str, list[str]]:
    results: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    gate = threading.Barrier(n)

    def one(i: int) -> None:
        gate.wait()
        try:
            results[f"net.c{i}"] = commit.assign(request(i, node))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(start + i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_a_burst_is_written_in_few_batches_and_every_invariant_holds(store: Datastore) -> None:
    Ipam(store).assign(request(999))  # the node's first blocks exist
    commit = GroupCommit(store)
    got = burst(commit, 100)
    assert len(got) == 100
    assert commit.batches < 60 and commit.batched >= 50  # coalesced, not one write each
    owners = allocations(store)
    assert len(owners) == 202  # 101 handles x 2 families, no duplicate
    for handle, addrs in got.items():
        assert len(addrs) == 2 and ":" not in addrs[0] and ":" in addrs[1]  # v4 then v6
        for a in addrs:
            assert owners[a.split("/")[0]] == handle
        kv = store.get(keys.handle_key(handle))
        assert kv is not None and sum(decode_handle(kv.key, kv.value).block.values()) == 2
    report = check(store)
    assert not report.problems, report.problems
    if isinstance(store, CountingStore):
        assert store.block_writes < 150  # 100 one-by-one assigns write 200 times


def test_other_writers_at_the_same_time_never_collide(store: Datastore) -> None:
    commit = GroupCommit(store)
    plain = Ipam(store)
    errors: list[BaseException] = []

    def cli_writer() -> None:  # another process on the same node, and another node
        try:
            for i in range(30):
                plain.assign(request(500 + i))
                plain.assign(request(600 + i, node="node-b"))
        except BaseException as exc:
            errors.append(exc)

    other = threading.Thread(target=cli_writer)
    other.start()
    got = burst(commit, 60)
    other.join()
    assert not errors
    owners = allocations(store)
    assert len(owners) == 2 * (60 + 60)
    assert {owners[a.split("/")[0]] for addrs in got.values() for a in addrs} == set(got)
    assert not check(store).problems


def test_existing_handle_adds_and_specific_addresses_take_the_ordinary_path(
    store: Datastore,
) -> None:
    Ipam(store).assign(request(0))  # the node's blocks exist
    commit = GroupCommit(store)
    first = commit.assign(request(1))
    assert commit.batches == 1
    again = commit.assign(request(1))  # same handle: adds, as Ipam.assign does
    assert set(first).isdisjoint(again) and commit.batches == 2
    kv = store.get(keys.handle_key("net.c1"))
    assert kv is not None and sum(decode_handle(kv.key, kv.value).block.values()) == 4
    specific = commit.assign(
        AssignRequest(node=NODE, handle_id="net.fixed", addresses=("10.80.200.7",))
    )
    assert specific == ["10.80.200.7/32"]
    assert commit.batches == 2  # the specific address went the ordinary way


def test_shortfall_is_all_or_nothing_with_the_ordinary_message(tmp_path: Path) -> None:
    s = MemoryDatastore()
    add_pool(s, "v4", "10.81.0.0/30", 30)  # 4 addresses
    add_pool(s, "v6", "fd00:81::/48", 122)
    commit = GroupCommit(s)
    for i in range(4):
        commit.assign(request(i))
    with pytest.raises(Exhausted) as err:
        commit.assign(request(9))
    assert "IPv4" in str(err.value) or err.value.ip_version == 4
    assert s.get(keys.handle_key("net.c9")) is None  # nothing kept for the failed request
    assert all(h != "net.c9" for h in allocations(s).values())


def test_warm_block_is_claimed_ahead_once_and_within_limits() -> None:
    s = MemoryDatastore()
    add_pool(s, "v4", "10.82.0.0/16", 28)  # 16 addresses a block
    warm = WarmBlocks(s, low_water=8)
    commit = GroupCommit(s, warm.note)
    for i in range(10):  # 10 of 16 used: below the low-water mark of 8 free
        commit.assign(request(i, num6=0))
    for _ in range(200):
        if warm.claimed:
            break
        threading.Event().wait(0.01)
    assert len(warm.claimed) == 1
    owned = Ipam(s).confirmed_affinities(NODE, 4)
    assert len(owned) == 2
    # With the next block warm, the next ADDs never claim inline.
    for i in range(10, 16):
        commit.assign(request(i, num6=0))
    # maxBlocksPerHost: at the limit nothing more is claimed ahead.
    Ipam(s).set_config(IPAMConfig(max_blocks_per_host=2))
    assert warm.claim_if_low(NODE, 4, Ipam(s).resolve_pools(NODE, {4: ()}, "Workload")[4]) is None
    Ipam(s).set_config(IPAMConfig(auto_allocate_blocks=False))
    assert warm.claim_if_low(NODE, 4, Ipam(s).resolve_pools(NODE, {4: ()}, "Workload")[4]) is None


class RacingStore(MemoryDatastore):
    """Another writer takes an address in a block between the batch's read and its
    write, once: the batch's compare-and-swap must lose and nothing may be lost."""

    def __init__(self) -> None:
        super().__init__()
        self.raced = False

    def update(self, key: str, value: str, revision: int):  # type: ignore[no-untyped-def]
        if key.startswith("/calico/ipam/v2/assignment/ipv4/") and not self.raced:
            self.raced = True
            block = decode_block(key, super().get(key).value)  # type: ignore[union-attr]
            free = next(o for o in range(block.size) if block.owner(o) is None)
            Ipam(self).assign_ip(str(block.address(free)), "other.writer", {}, NODE)
        return super().update(key, value, revision)

    def txn(self, writes: Writes) -> int:  # the batch's blocks travel in a transaction
        for w in writes:
            if w.key.startswith("/calico/ipam/v2/assignment/ipv4/") and not self.raced:
                self.raced = True
                block = decode_block(w.key, super().get(w.key).value)  # type: ignore[union-attr]
                free = next(o for o in range(block.size) if block.owner(o) is None)
                Ipam(self).assign_ip(str(block.address(free)), "other.writer", {}, NODE)
        return super().txn(writes)


def test_a_lost_block_race_sends_the_batch_down_the_ordinary_path() -> None:
    s = RacingStore()
    add_pool(s, "v4", "10.83.0.0/16", 26)
    add_pool(s, "v6", "fd00:83::/48", 122)
    Ipam(s).assign(request(0))
    s.raced = False
    commit = GroupCommit(s)
    got = commit.assign(request(1))
    assert s.raced and len(got) == 2
    owners = allocations(s)
    assert owners[got[0].split("/")[0]] == "net.c1" and owners[got[1].split("/")[0]] == "net.c1"
    assert "other.writer" in owners.values()
    kv = s.get(keys.handle_key("net.c1"))
    assert kv is not None and sum(decode_handle(kv.key, kv.value).block.values()) == 2
    assert not check(s).problems
