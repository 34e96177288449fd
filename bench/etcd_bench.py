"""IPAM at cluster scale: 10 nodes × 100 dual-stack pods, etcd (3 members) vs SQLite.

Every pod is a real ``calico-ipam`` ADD process (the ``-IS`` launcher); the 10 nodes run
concurrently (one thread per node, each running its pods' ADDs one after another), exactly
as ``tests/cluster/test_ten_nodes.py`` does (same harness).  Both datastores are measured in
the same run on the same machine:

* wall time and allocations/s of the 1,000 ADDs (2,000 addresses) and of the 1,000 DELs;
* per-call ADD latency under that load (median, p95);
* per-call ADD latency of one process at a time (no load), etcd and SQLite.

Target context: the IPAM part of 1,000 pods on 10 nodes in under 10 s.

Run: .venv/bin/python bench/etcd_bench.py [--nodes 10] [--pods 100] [--serial 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "cluster"), str(ROOT / "tests")]

from cluster_harness import (  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
    NodesRun,
    add_pools,
    allocation_count,
    etcd_conf,
    make_plugin,
    percentile,
    rotated,
    run_cni,
    run_nodes,
    sqlite_conf,
)

from etcd_cluster import EtcdCluster, etcd_binary  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from tortie.datastore.backends import open_datastore  # noqa: E402
from tortie.datastore.base import Datastore  # noqa: E402
from tortie.datastore.config import DatastoreSettings  # noqa: E402


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def scale_run(
    plugin: str,
    store: Datastore,
    conf_for: Callable[[str, int], bytes],
    nodes: int,
    pods: int,
    serial: int,
) -> dict[str, float]:
    """Pools, then the concurrent ADDs, the concurrent DELs and ``serial`` lone ADD/DELs."""
    add_pools(store)
    names = [f"node-{i:02d}" for i in range(nodes)]
    confs = {n: conf_for(n, i) for i, n in enumerate(names)}
    adds: NodesRun = run_nodes(plugin, confs, pods, "ADD")
    bad = adds.failures()
    if bad:
        raise SystemExit(f"{len(bad)} ADDs failed, first: {bad[0].describe()}")
    allocations = allocation_count(store)
    if allocations != 2 * nodes * pods:
        raise SystemExit(f"expected {2 * nodes * pods} allocations, found {allocations}")
    dels: NodesRun = run_nodes(plugin, confs, pods, "DEL")
    if dels.failures() or allocation_count(store) != 0:
        raise SystemExit("DEL failed or left allocations")
    lone = []
    for i in range(serial):
        out = run_cni(plugin, "ADD", "lone-node", i, conf_for("lone-node", i))
        if not out.ok:
            raise SystemExit(out.describe())
        lone.append(out.seconds)
    lat = adds.latencies()
    return {
        "add_wall": adds.wall,
        "add_rate": 2 * nodes * pods / adds.wall,
        "add_med": statistics.median(lat),
        "add_p95": percentile(lat, 95),
        "del_wall": dels.wall,
        "lone_med": statistics.median(lone) if lone else 0.0,
        "lone_p95": percentile(lone, 95),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--pods", type=int, default=100, help="pods per node")
    ap.add_argument("--serial", type=int, default=50, help="lone ADDs for unloaded latency")
    args = ap.parse_args()
    if etcd_binary() is None:
        print("etcd is not installed (apt-get install etcd-server)", file=sys.stderr)
        return 2
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="tortie-etcd-bench-") as tmp:
        t = Path(tmp)
        plugin = make_plugin(t / "bin")
        with EtcdCluster(t / "etcd", size=3) as cluster:
            eps = tuple(cluster.endpoints)
            store = open_datastore(DatastoreSettings(datastore_type="etcdv3", etcd_endpoints=eps))
            try:
                results["etcd (3 members)"] = scale_run(
                    plugin,
                    store,
                    lambda node, i: etcd_conf(node, rotated(eps, i)),
                    args.nodes,
                    args.pods,
                    args.serial,
                )
            finally:
                store.close()
        db = str(t / "tortie.db")
        store = open_datastore(DatastoreSettings(datastore_type="sqlite", sqlite_path=db))
        try:
            results["SQLite"] = scale_run(
                plugin,
                store,
                lambda node, _i: sqlite_conf(node, db),
                args.nodes,
                args.pods,
                args.serial,
            )
        finally:
            store.close()

    n = args.nodes * args.pods
    print(
        f"\nIPAM, {args.nodes} nodes x {args.pods} dual-stack pods ({n} CNI ADD processes, "
        f"{2 * n} addresses), nodes concurrent; {os.cpu_count()} CPUs, "
        f"{time.strftime('%Y-%m-%d')}\n"
    )
    head = (
        "| datastore | ADD wall (s) | addresses/s | ADD median (ms) | ADD p95 (ms) "
        "| DEL wall (s) | lone ADD median (ms) | lone ADD p95 (ms) |"
    )
    print(head)
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(
            f"| {name} | {r['add_wall']:.1f} | {r['add_rate']:.0f} | {ms(r['add_med'])} | "
            f"{ms(r['add_p95'])} | {r['del_wall']:.1f} | {ms(r['lone_med'])} | "
            f"{ms(r['lone_p95'])} |"
        )
    print(
        "\nADD median/p95: per process while all nodes run; lone: one process at a time "
        f"({args.serial} ADDs). Target: {n} pods' IPAM in under 10 s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
