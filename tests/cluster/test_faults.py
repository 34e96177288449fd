"""Real ``calico-ipam`` processes against a 3-member etcd cluster while members fail,
with an endpoint that is down, and with corrupt values stored in etcd."""

from __future__ import annotations

import ipaddress
import json
import time
from pathlib import Path

import pytest
from cluster_harness import (
    Outcome,
    add_pools,
    allocation_count,
    etcd_conf,
    handle_keys,
    pool_doc,
    rotated,
    run_cni,
    run_nodes,
)
from conftest import open_store

from etcd_cluster import EtcdCluster, closed_port_url, require_etcd  # type: ignore[import-not-found, unused-ignore]
from tortie.datastore import keys
from tortie.datastore.base import KV
from tortie.datastore.etcd import EtcdDatastore
from tortie.ipam.check import check

TRY_AGAIN_LATER = 11
GOOD_HALF = ipaddress.ip_network("10.90.0.128/25")  # the two blocks not corrupted


def assert_clean(store: EtcdDatastore) -> None:
    report = check(store)
    assert report.problem_count == 0, [p.line() for p in report.problems] + [
        str(leak) for leak in report.leaks
    ]


@pytest.mark.slow
def test_member_killed_during_adds(
    cluster3: EtcdCluster, store3: EtcdDatastore, plugin: str
) -> None:
    """(a) One of three members is SIGKILLed after about a third of the ADDs: all succeed."""
    add_pools(store3)
    nodes = [f"node-{i:02d}" for i in range(10)]
    confs = {n: etcd_conf(n, rotated(cluster3.endpoints, i)) for i, n in enumerate(nodes)}
    done = 0
    killed_at: list[int] = []
    victim = cluster3.members[0]  # first in the list of several nodes

    def maybe_kill(_: Outcome) -> None:
        nonlocal done
        done += 1
        if done == 65 and not killed_at:
            victim.kill()
            killed_at.append(done)

    run = run_nodes(plugin, confs, 20, "ADD", after_each=maybe_kill)
    assert killed_at == [65] and victim.pid is None
    failed = run.failures()
    assert not failed, "\n".join(o.describe() for o in failed[:5])
    addresses = [a for o in run.all() for a in o.addresses]
    assert len(addresses) == 2 * 200 and len(set(addresses)) == 400
    assert allocation_count(store3) == 400
    assert len(handle_keys(store3)) == 200
    assert_clean(store3)
    victim.start()
    cluster3.wait_healthy()
    assert_clean(store3)


@pytest.mark.slow
def test_quorum_lost_then_restored(
    cluster3: EtcdCluster, store3: EtcdDatastore, plugin: str
) -> None:
    """(b) Two of three members killed: ADD fails in bounded time with code 11 naming the
    endpoints; nothing half-written; after restart ADD works again."""
    add_pools(store3)
    conf = etcd_conf("node-a", cluster3.endpoints)
    assert run_cni(plugin, "ADD", "node-a", 0, conf).ok
    cluster3.members[1].kill()
    cluster3.members[2].kill()

    out = run_cni(plugin, "ADD", "node-a", 1, conf)
    assert out.code == 1, out.describe()
    assert out.seconds < 15, out.describe()
    assert out.result is not None and out.result["code"] == TRY_AGAIN_LATER, out.describe()
    message = f"{out.result['msg']} {out.result.get('details', '')}"
    for url in cluster3.endpoints:
        assert url in message, f"{url} not named in: {message}"

    for m in cluster3.members[1:]:
        m.start()
    cluster3.wait_healthy()
    # nothing half-written by the failed ADD
    assert len(handle_keys(store3)) == 1
    assert allocation_count(store3) == 2
    assert_clean(store3)

    again = run_cni(plugin, "ADD", "node-a", 1, conf)
    assert again.ok, again.describe()
    assert len(again.addresses) == 2
    assert allocation_count(store3) == 4
    assert_clean(store3)


def test_first_endpoint_down(tmp_path: Path, plugin: str) -> None:
    """(c) A closed port first in the endpoint list: ADD succeeds without an error."""
    require_etcd()
    with EtcdCluster(tmp_path / "etcd", size=1) as cluster:
        store = open_store(tuple(cluster.endpoints))
        try:
            add_pools(store)
            endpoints = [closed_port_url(), *cluster.endpoints]
            out = run_cni(plugin, "ADD", "node-a", 0, etcd_conf("node-a", endpoints))
            assert out.ok, out.describe()
            assert len(out.addresses) == 2
            assert out.stderr == b""
            assert allocation_count(store) == 2
            assert_clean(store)
        finally:
            store.close()


def _corrupt_setup(store: EtcdDatastore) -> tuple[str, str, dict[str, KV | None]]:
    """A pool of four /26 blocks, two of them holding corrupt values."""
    store.create(keys.resource_key("ippools", "small"), pool_doc("small", "10.90.0.0/24", 26))
    not_json = keys.block_key("10.90.0.0/26", 4)
    not_block = keys.block_key("10.90.0.64/26", 4)
    store.create(not_json, '{"cidr": "10.90.0.0/26", "allocations": [nul')
    store.create(not_block, json.dumps({"hello": "world", "allocations": "many"}))
    return not_json, not_block, {k: store.get(k) for k in (not_json, not_block)}


def test_corrupt_values_reported_and_kept(
    cluster3: EtcdCluster, store3: EtcdDatastore, plugin: str
) -> None:
    """(d) Block keys holding invalid JSON and a JSON non-block: ``check`` names each key
    (``corrupt-value``); ADDs on other nodes work (claiming the two good blocks, walking
    past the corrupt ones) and leave both values untouched."""
    not_json, not_block, before = _corrupt_setup(store3)
    report = check(store3)
    corrupt = {p.subject for p in report.problems if p.kind == "corrupt-value"}
    assert corrupt == {not_json, not_block}, [p.line() for p in report.problems]

    for node in ("other-0", "other-1"):
        for pod in range(3):
            out = run_cni(plugin, "ADD", node, pod, etcd_conf(node, cluster3.endpoints, v6=False))
            assert out.ok, out.describe()
            (address,) = out.addresses
            assert ipaddress.ip_interface(address).ip in GOOD_HALF, address
    assert {k: store3.get(k) for k in (not_json, not_block)} == before
    report = check(store3)
    assert {p.subject for p in report.problems if p.kind == "corrupt-value"} == {
        not_json,
        not_block,
    }
    assert report.problem_count == 2, [p.line() for p in report.problems]


def test_borrow_skips_corrupt_blocks(
    cluster3: EtcdCluster, store3: EtcdDatastore, plugin: str
) -> None:
    """(d, borrowing) Every block taken (two corrupt, two affine to other nodes): a third
    node must borrow from a good block, not fail on a corrupt one nor touch it."""
    not_json, not_block, before = _corrupt_setup(store3)
    for node in ("other-0", "other-1", "other-2"):
        out = run_cni(plugin, "ADD", node, 0, etcd_conf(node, cluster3.endpoints, v6=False))
        assert out.ok, out.describe()
    assert {k: store3.get(k) for k in (not_json, not_block)} == before


def test_add_bounded_when_all_down(tmp_path: Path, plugin: str) -> None:
    """No etcd at all (every endpoint a closed port): code 11 quickly, endpoints named."""
    endpoints = [closed_port_url(), closed_port_url()]
    t0 = time.monotonic()
    out = run_cni(plugin, "ADD", "node-a", 0, etcd_conf("node-a", endpoints))
    assert time.monotonic() - t0 < 15
    assert out.result is not None and out.result["code"] == TRY_AGAIN_LATER, out.describe()
    for url in endpoints:
        assert url in f"{out.result['msg']} {out.result.get('details', '')}"
