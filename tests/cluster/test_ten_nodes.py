"""10 simulated nodes × 100 pods (40 on the in-process route) against a 3-member etcd
cluster, every pod a real dual-stack ``calico-ipam`` ADD process, the nodes running
concurrently; then DEL all."""

from __future__ import annotations

from pathlib import Path

import pytest
from cluster_harness import (
    NodeServices,
    NodesRun,
    add_pools,
    allocation_count,
    block_of,
    blocks_per_node,
    etcd_conf,
    handle_id,
    handle_keys,
    load_blocks,
    rotated,
    run_nodes,
)

from etcd_cluster import EtcdCluster  # type: ignore[import-not-found, unused-ignore]
from tortie.datastore.etcd import EtcdDatastore
from tortie.ipam.check import check
from tortie.ipam.usage import usage

NODES = [f"node-{i:02d}" for i in range(10)]
PODS = 100
# The in-process route (no node service: a Python plugin process per call) proves the same
# properties with fewer pods; 100 per node made it a minute of the suite.
PODS_IN_PROCESS = 40


@pytest.mark.slow
@pytest.mark.parametrize("route", ["in-process", "service"])
def test_ten_nodes_hundred_pods(
    cluster3: EtcdCluster,
    store3: EtcdDatastore,
    plugin: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    route: str,
) -> None:
    add_pools(store3)
    endpoints = {node: rotated(cluster3.endpoints, i) for i, node in enumerate(NODES)}
    confs = {node: etcd_conf(node, eps) for node, eps in endpoints.items()}
    services = NodeServices(tmp_path, endpoints) if route == "service" else None
    try:
        adds, dels = ten_nodes(
            store3, plugin, confs, services, PODS if route == "service" else PODS_IN_PROCESS
        )
    finally:
        if services is not None:
            services.close()
    with capsys.disabled():
        pods = PODS if route == "service" else PODS_IN_PROCESS
        print(f"\n10x{pods} dual-stack on 3-member etcd, {route}: ADD {adds.summary()}")
        print(f"                                  DEL {dels.summary()}")


def ten_nodes(
    store3: EtcdDatastore,
    plugin: str,
    confs: dict[str, bytes],
    services: NodeServices | None,
    pods: int,
) -> tuple[NodesRun, NodesRun]:
    sockets = services.sockets if services is not None else None
    adds = run_nodes(plugin, confs, pods, "ADD", sockets=sockets)
    failed = adds.failures()
    assert not failed, "\n".join(o.describe() for o in failed[:5])

    v4 = [o.addresses[0] for o in adds.all()]
    v6 = [o.addresses[1] for o in adds.all()]
    assert all(len(o.addresses) == 2 for o in adds.all())
    assert all(":" not in a for a in v4) and all(":" in a for a in v6)
    assert len(set(v4)) == len(NODES) * pods
    assert len(set(v6)) == len(NODES) * pods
    # auto-assigned addresses carry the block prefix (reference §3)
    assert {a.split("/")[1] for a in v4} == {"26"} and {a.split("/")[1] for a in v6} == {"122"}

    blocks = list(load_blocks(store3).values())
    for node, outs in adds.outcomes.items():
        for version, col in ((4, 0), (6, 1)):
            used: set[str] = set()
            for o in outs:
                block = block_of(blocks, o.addresses[col])
                assert block is not None, f"{o.addresses[col]} is in no block"
                assert block.host() == node, (
                    f"{o.addresses[col]} of {node} is in {block.cidr} affine to {block.affinity}"
                )
                used.add(block.cidr)
            assert 1 <= len(used) <= 2, f"{node} IPv{version} used blocks {sorted(used)}"
    # every allocation carries the handle of its pod
    owners = {
        attr.handle_id for b in blocks for _, attr in b.allocated() if attr.handle_id is not None
    }
    assert owners == {handle_id(n, p) for n in NODES for p in range(pods)}
    report = check(store3)
    assert report.problem_count == 0, [p.line() for p in report.problems]
    assert report.allocations == 2 * len(NODES) * pods
    assert sum(p.in_use for p in usage(store3)) == 2 * len(NODES) * pods
    assert all(len(c) <= 2 for c in blocks_per_node(blocks).values())

    dels = run_nodes(plugin, confs, pods, "DEL", sockets=sockets)
    failed = dels.failures()
    assert not failed, "\n".join(o.describe() for o in failed[:5])
    assert all(o.result is None for o in dels.all())  # DEL prints nothing on success
    assert allocation_count(store3) == 0
    assert [p.in_use for p in usage(store3)] == [0, 0]
    assert handle_keys(store3) == []
    report = check(store3)
    assert report.problem_count == 0, [p.line() for p in report.problems]

    after = blocks_per_node(load_blocks(store3).values())
    assert None not in {n for n, _ in after}, "a block without affinity survived its last DEL"
    too_many = {k: v for k, v in after.items() if len(v) > 1}
    assert not too_many, f"more than one emptied block kept per node and family: {too_many}"
    return adds, dels
