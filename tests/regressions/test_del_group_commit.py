"""Issue 15: a burst of DELs on one node cost 12.8 etcd transactions per pod (ADD 1.4),
because every DEL released its handle on its own, block by block, racing the others.

Now the node service batches DELs as it batches ADDs (``tortie.ipam.batch``): these
tests send real CNI calls to a ``CniService`` on a socket (the thin client's wire
format), on SQLite and on a real 3-member etcd, and check that a burst of 100 DELs
releases everything — no handle, no address left, ``ipam check`` clean — in at most 2
store transactions per pod (counted by a proxy in front of the store, and on etcd also by
the members' own ``grpc_server_handled_total{grpc_method="Txn"}``), and that ADDs and
DELs of one node mixed in one burst keep every invariant.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # etcd helper, ipam proxy
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cni"))
from cni_helpers import add_pool, cni_env, netconf

from etcd_cluster import EtcdCluster, require_etcd
from ipam.txn_proxy import TxnCountingStore
from tortie.cni import thin
from tortie.cni.service import CniService, Stores
from tortie.datastore import keys
from tortie.datastore.backends import open_datastore
from tortie.datastore.base import Datastore
from tortie.datastore.config import DatastoreSettings
from tortie.datastore.sqlite import SqliteDatastore
from tortie.ipam.check import check
from tortie.model.ipam_records import decode_block

PODS = 100


@pytest.fixture(scope="module")
def etcd3() -> Iterator[EtcdCluster]:
    require_etcd()
    directory = Path(tempfile.mkdtemp(prefix="tt-delgc-etcd-"))
    try:
        with EtcdCluster(directory / "etcd", size=3) as cluster:
            yield cluster
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class World:
    def __init__(self, store: Datastore, cluster: EtcdCluster | None, directory: str) -> None:
        self.inner = store
        self.cluster = cluster
        self.store = TxnCountingStore(store)
        add_pool(store, "v4", "10.72.0.0/16", blockSize=26)
        add_pool(store, "v6", "fd00:72::/48", blockSize=122)
        self.service = CniService(
            f"{directory}/cni.sock", Stores(None), open_store=lambda _s: self.store
        )
        self.conf = json.dumps(
            netconf(name="net1", ipam={"assign_ipv4": "true", "assign_ipv6": "true"})
        ).encode()

    def call(self, command: str, container: str) -> tuple[int, Any]:
        env = {k.encode(): v.encode() for k, v in cni_env(command, container=container).items()}
        answer = thin.call(self.service.path, b"ipam", env, self.conf)
        assert answer is not None, "the service did not answer"
        code, out = answer
        return code, json.loads(out) if out else None

    def burst(self, calls: list[tuple[str, str]]) -> list[tuple[int, Any]]:
        out: list[tuple[int, Any]] = [(-1, None)] * len(calls)
        gate = threading.Barrier(len(calls))

        def one(i: int) -> None:
            gate.wait()
            out[i] = self.call(*calls[i])

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    def etcd_txns(self) -> float:
        """Txn requests the members handled (summed over members, as in bench/)."""
        assert self.cluster is not None
        total = 0.0
        for member in self.cluster.members:
            with urllib.request.urlopen(f"{member.url}/metrics", timeout=10) as resp:
                for line in resp.read().decode().splitlines():
                    if line.startswith("grpc_server_handled_total{") and (
                        'grpc_method="Txn"' in line
                    ):
                        total += float(line.rsplit(" ", 1)[1])
        return total

    def allocations(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for version in (4, 6):
            for kv in self.inner.list(keys.block_prefix(version)):
                block = decode_block(kv.key, kv.value)
                for ordinal, attr in block.allocated():
                    addr = str(block.address(ordinal))
                    assert addr not in out, f"{addr} allocated twice"
                    out[addr] = attr.handle_id
        return out

    def assert_clean(self) -> None:
        report = check(self.inner)
        assert not report.problems, report.problems


@pytest.fixture(params=["sqlite", "etcd"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    directory = tempfile.mkdtemp(prefix="tt-delgc-")
    cluster: EtcdCluster | None = None
    if request.param == "sqlite":
        store: Datastore = SqliteDatastore(f"{directory}/store.db")
    else:
        cluster = request.getfixturevalue("etcd3")
        cluster.wipe()
        store = open_datastore(
            DatastoreSettings(datastore_type="etcdv3", etcd_endpoints=cluster.endpoints)
        )
    w = World(store, cluster, directory)
    w.service.start()
    try:
        yield w
    finally:
        w.service.stop()
        w.service.stores.close()
        store.close()
        shutil.rmtree(directory, ignore_errors=True)


def addresses_of(out: Any) -> list[str]:
    return [ip["address"].split("/")[0] for ip in out["ips"]]


def test_a_burst_of_100_dels_takes_at_most_2_transactions_per_pod(world: World) -> None:
    pods = [f"pod{i:03d}" for i in range(PODS)]
    world.store.reset()
    added = world.burst([("ADD", p) for p in pods])
    assert all(code == 0 for code, _ in added), [a for a in added if a[0] != 0][:3]
    got = {p: addresses_of(out) for p, (_, out) in zip(pods, added, strict=True)}
    held = world.allocations()
    assert len(held) == 2 * PODS and all(held[a] == f"net1.{p}" for p in pods for a in got[p])
    add_writes = world.store.writes

    world.store.reset()
    txns_before = world.etcd_txns() if world.cluster else 0.0
    deleted = world.burst([("DEL", p) for p in pods])
    del_writes = world.store.writes
    txns = world.etcd_txns() - txns_before if world.cluster else float(del_writes)
    assert all(code == 0 for code, _ in deleted), [d for d in deleted if d[0] != 0][:3]

    assert world.allocations() == {}, "an address was left"
    assert world.inner.list(keys.handle_prefix()) == [], "a handle was left"
    world.assert_clean()
    commit = world.service.stores.group_commit(world.store)
    print(
        f"\n{'etcd' if world.cluster else 'sqlite'}: ADD burst {add_writes / PODS:.2f} write "
        f"round trips per pod; DEL burst {del_writes / PODS:.2f} per pod "
        f"({commit.release_batches} batches), etcd Txn per pod {txns / PODS:.2f}"
    )
    assert del_writes / PODS <= 2 and txns / PODS <= 2, (del_writes, txns)
    assert commit.release_batches < PODS // 2  # batched, not one by one


def test_mixed_add_and_del_bursts_of_one_node(world: World) -> None:
    old = [f"old{i:03d}" for i in range(60)]
    new = [f"new{i:03d}" for i in range(60)]
    first = world.burst([("ADD", p) for p in old])
    assert all(code == 0 for code, _ in first)
    calls = [c for o, n in zip(old, new, strict=True) for c in (("DEL", o), ("ADD", n))]
    results = world.burst(calls)
    assert all(code == 0 for code, _ in results), [r for r in results if r[0] != 0][:3]
    held = world.allocations()
    assert set(held.values()) == {f"net1.{p}" for p in new} and len(held) == 2 * len(new)
    for (verb, pod), (_, out) in zip(calls, results, strict=True):
        if verb == "ADD":
            assert sorted(a for a, h in held.items() if h == f"net1.{pod}") == sorted(
                addresses_of(out)
            )
    handles = {kv.key.rsplit("/", 1)[1] for kv in world.inner.list(keys.handle_prefix())}
    assert handles == {f"net1.{p}" for p in new}
    world.assert_clean()
