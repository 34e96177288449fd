"""DEL group commit (``tortie.ipam.batch.GroupCommit.release_by_handle``): concurrent
releases of one node form batches, each written in one store transaction; a lost race
is planned again from what the conflict returned; any other failure leaves nothing
half-done; ADD and DEL bursts of one node mix safely.  Memory and SQLite stores here
(the real 3-member etcd run is in ``tests/regressions/test_del_group_commit.py``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest

from tortie.datastore import keys
from tortie.datastore.base import Datastore, Writes
from tortie.datastore.memory import MemoryDatastore
from tortie.datastore.sqlite import SqliteDatastore
from tortie.errors import NotFound, Unavailable
from tortie.ipam.allocator import Allocator
from tortie.ipam.batch import GroupCommit
from tortie.ipam.check import check
from tortie.ipam.requests import AssignRequest
from tortie.ipam.service import Ipam
from tortie.model.ipam_records import decode_handle
from tortie.model.ipamconfig import IPAMConfig

from .helpers import bare, check_invariants, create_pool, read_state
from .txn_proxy import TxnCountingStore

NODE = "node-a"
T = TypeVar("T")


@pytest.fixture(params=["memory", "sqlite"])
def inner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Datastore]:
    store: Datastore = (
        MemoryDatastore() if request.param == "memory" else SqliteDatastore(str(tmp_path / "s.db"))
    )
    yield store
    store.close()


def dual_stack(store: Datastore) -> None:
    create_pool(store, "v4", "10.70.0.0/16", 26)
    create_pool(store, "v6", "fd00:70::/48", 122)


def request(handle: str, node: str = NODE, num6: int = 1) -> AssignRequest:
    return AssignRequest(node=node, handle_id=handle, num4=1, num6=num6, attrs={"pod": handle})


def concurrently(calls: list[Callable[[], T]]) -> list[T | BaseException]:
    """Run every call at once (one thread each, released together)."""
    out: list[T | BaseException] = [RuntimeError("not run")] * len(calls)
    gate = threading.Barrier(len(calls))

    def one(i: int) -> None:
        gate.wait()
        try:
            out[i] = calls[i]()
        except BaseException as exc:
            out[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def add_pods(allocator: Allocator, handles: list[str], num6: int = 1) -> dict[str, list[str]]:
    got = concurrently([partial(allocator.assign, request(h, num6=num6)) for h in handles])
    out = {}
    for h, result in zip(handles, got, strict=True):
        assert isinstance(result, list), (h, result)
        out[h] = result
    return out


def release_all(allocator: Allocator, handles: list[str]) -> list[list[str] | BaseException]:
    return concurrently([partial(allocator.release_by_handle, h) for h in handles])


def assert_clean(store: Datastore) -> None:
    report = check(store)
    assert not report.problems, report.problems
    check_invariants(store)


def test_a_burst_of_dels_is_batched_and_releases_everything(inner: Datastore) -> None:
    store = TxnCountingStore(inner, latency=0.001)
    dual_stack(store)
    commit = GroupCommit(store)
    handles = [f"net.c{i}" for i in range(100)]
    pods = add_pods(commit, handles)
    adds = store.writes
    store.reset()
    results = release_all(commit, handles)
    for h, result in zip(handles, results, strict=True):
        assert isinstance(result, list), (h, result)
        assert sorted(result) == sorted(bare(a) for a in pods[h])
    state = read_state(inner)
    assert state.handles == {} and state.held == {}, "a handle or an address was left"
    assert_clean(inner)
    # Batched: far fewer transactions than pods (one each when unbatched), the burst
    # well under the goal of 2 per pod, and no more than the ADD burst took.
    assert commit.release_batches < 50 and commit.released == 100
    assert store.writes <= 2 * commit.release_batches, (store.writes, commit.release_batches)
    assert store.writes / 100 <= 2 and store.writes <= adds
    # The emptied blocks went back with their batches: one block per pool stays.
    ipam = Ipam(inner)
    assert len(ipam.confirmed_affinities(NODE, 4)) == 1
    assert len(ipam.confirmed_affinities(NODE, 6)) == 1


def test_a_lone_del_is_written_at_once_in_one_transaction(inner: Datastore) -> None:
    store = TxnCountingStore(inner)
    dual_stack(store)
    commit = GroupCommit(store)
    got = commit.assign(request("net.lone"))
    store.reset()
    assert sorted(commit.release_by_handle("net.lone")) == sorted(bare(a) for a in got)
    assert store.writes == 1 and commit.release_batches == 1
    with pytest.raises(NotFound, match=r"handle net\.lone does not exist"):
        commit.release_by_handle("net.lone")
    assert_clean(inner)


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_failed_transaction_leaves_nothing_half_done_and_a_retry_finishes(
    inner: Datastore, when: str
) -> None:
    """``before``: the store fails the batch's transaction (nothing written); ``after``:
    it was applied and then the answer was lost (an etcd timeout; on SQLite the batch's
    transaction is then rolled back).  Either way the DELs of that batch are answered
    with the error, every handle is either whole or gone with all its addresses, and
    the runtime's retry finishes the job."""
    store = TxnCountingStore(inner, latency=0.001)
    dual_stack(store)
    commit = GroupCommit(store)
    handles = [f"net.c{i}" for i in range(40)]
    pods = add_pods(commit, handles)
    store.fail_next_txn(when)
    results = release_all(commit, handles)
    failed = [h for h, r in zip(handles, results, strict=True) if isinstance(r, BaseException)]
    assert store.failed == 1 and failed, results
    assert all(isinstance(r, Unavailable) for r in results if isinstance(r, BaseException))
    state = read_state(inner)
    for h in handles:
        mine = sorted(a for a, owner in state.held.items() if owner == h)
        if h in state.handles:  # whole: its record and every address
            assert mine == sorted(bare(a) for a in pods[h])
        else:  # gone with all its addresses
            assert mine == []
    applied = when == "after" and not isinstance(inner, SqliteDatastore)
    assert all((h in state.handles) != applied for h in failed), (when, failed, state.handles)
    assert_clean(inner)
    retried = release_all(commit, failed)
    for h, r in zip(failed, retried, strict=True):
        if not applied:
            assert isinstance(r, list) and sorted(r) == sorted(bare(a) for a in pods[h])
        else:  # already released: the DEL finds nothing (CNI DEL then succeeds)
            assert isinstance(r, NotFound), r
    state = read_state(inner)
    assert state.handles == {} and state.held == {}
    assert_clean(inner)


def test_mixed_add_and_del_bursts_of_one_node(inner: Datastore) -> None:
    store = TxnCountingStore(inner, latency=0.001)
    dual_stack(store)
    commit = GroupCommit(store)
    old = [f"net.old{i}" for i in range(60)]
    new = [f"net.new{i}" for i in range(60)]
    before = add_pods(commit, old)
    calls: list[Callable[[], list[str]]] = []
    for o, n in zip(old, new, strict=True):
        calls.append(partial(commit.release_by_handle, o))
        calls.append(partial(commit.assign, request(n)))
    results = concurrently(calls)
    assert not [r for r in results if isinstance(r, BaseException)], results
    for i, o in enumerate(old):
        assert sorted(results[2 * i]) == sorted(bare(a) for a in before[o])  # type: ignore[arg-type]
    state = read_state(inner)
    assert set(state.handles) == set(new)
    for i, n in enumerate(new):
        got = results[2 * i + 1]
        assert isinstance(got, list) and len(got) == 2
        assert all(state.held[bare(a)] == n for a in got)
    assert len(state.held) == 120
    assert commit.release_batches < 60 and commit.batches < 60  # both sides batched
    assert_clean(inner)


def test_a_lost_race_is_planned_again_from_what_the_conflict_returned(inner: Datastore) -> None:
    """Another writer takes an address in the node's block between the batch's reads
    and its transaction: the transaction loses, the batch is planned again from the
    block the conflict returned (not read again) and lands; the other writer's address
    stays."""
    store = TxnCountingStore(inner)
    dual_stack(store)
    commit = GroupCommit(store)
    got = commit.assign(request("net.mine", num6=0))
    block_key = keys.block_key(next(iter(Ipam(inner).confirmed_affinities(NODE, 4))), 4)
    intruder: list[str] = []

    def other_writer(_writes: Writes) -> None:
        res = Ipam(inner).assign(request("other.writer", num6=0))
        intruder.extend(res)

    store.reset()
    store.before_txn = other_writer
    assert commit.release_by_handle("net.mine") == [bare(got[0])]
    assert intruder and store.writes == 2  # lost once, then landed
    assert store.gets[block_key] == 1, "the block was read again after the conflict"
    state = read_state(inner)
    assert set(state.handles) == {"other.writer"}
    assert state.held == {bare(intruder[0]): "other.writer"}
    assert_clean(inner)


def test_a_handle_named_twice_at_once_is_released_once(inner: Datastore) -> None:
    store = TxnCountingStore(inner, latency=0.002)
    dual_stack(store)
    commit = GroupCommit(store)
    got = commit.assign(request("net.twice"))
    results = release_all(commit, ["net.twice"] * 4)
    released = [r for r in results if isinstance(r, list)]
    assert released == [sorted(bare(a) for a in got)] or [sorted(r) for r in released] == [
        sorted(bare(a) for a in got)
    ]
    assert sum(isinstance(r, NotFound) for r in results) == 3
    assert_clean(inner)


def test_transactions_stay_within_etcds_limit_of_128_writes() -> None:
    """Tiny blocks (2 addresses): a batch of 150 DELs touches 75 blocks, a batch of 75
    ADDs 75 half-full ones; each transaction carries at most 128 writes (etcd refuses
    more), the rest go in the next one (DEL) or take the ordinary path (ADD); nothing
    is lost."""
    inner = MemoryDatastore()
    store = TxnCountingStore(inner, latency=0.0005)
    create_pool(store, "tiny", "10.71.0.0/22", 31)
    Ipam(store).set_config(IPAMConfig(max_blocks_per_host=1000))
    plain = Ipam(store)
    first = [f"net.a{i}" for i in range(150)]

    def fill() -> None:  # one by one: the node claims 75 blocks
        for h in first:
            plain.assign(AssignRequest(node=NODE, handle_id=h, num4=1))
        assert len(plain.confirmed_affinities(NODE, 4)) == 75

    fill()
    commit = GroupCommit(store, max_batch=200)
    store.reset()
    results = release_all(commit, first)
    assert all(isinstance(r, list) and len(r) == 1 for r in results), results
    assert 100 < store.largest <= 128, store.largest  # one full transaction, then more
    assert read_state(inner).handles == {}
    assert_clean(inner)
    # ADDs: every block half full (every other pod deleted), then 75 at once.
    fill()
    for h in first[::2]:
        plain.release_by_handle(h)
    store.reset()
    second = [f"net.b{i}" for i in range(75)]
    got = concurrently(
        [partial(commit.assign, AssignRequest(node=NODE, handle_id=h, num4=1)) for h in second]
    )
    assert all(isinstance(r, list) and len(r) == 1 for r in got), got
    assert 100 < store.largest <= 128, store.largest
    assert len(plain.confirmed_affinities(NODE, 4)) == 75  # every one from the node's blocks
    assert len(read_state(inner).held) == 150
    assert_clean(inner)


def test_both_allocators_meet_the_interface(inner: Datastore) -> None:
    dual_stack(inner)
    for allocator in (Ipam(inner), GroupCommit(inner)):
        typed: Allocator = allocator
        got = typed.assign(request("net.iface"))
        kv = inner.get(keys.handle_key("net.iface"))
        assert kv is not None and sum(decode_handle(kv.key, kv.value).block.values()) == 2
        res = typed.release_addresses([])
        assert res.released == []
        assert sorted(typed.release_by_handle("net.iface")) == sorted(bare(a) for a in got)
    assert_clean(inner)
