"""etcd requests per pod for bursts of IPAM ADDs and DELs through the node service
(issue 15: "DEL burst of 100 on one node, etcd transactions per pod ≤ 2", was 12.8).

A 3-member etcd on loopback; per node one ``CniService`` on a socket with its own etcd
connection (as ``tortie node run`` has); every node's ``--pods`` dual-stack IPAM ADDs are
sent at once (one thread per call, the thin client's wire format — no plugin processes,
so only the service's datastore work is measured), then as many DELs.  Per verb: wall
time, and the Range and Txn requests the members handled (``grpc_server_handled_total``
summed over members, as ``bench/service_bench.py`` counts them) per pod.  Every call
must succeed; afterwards no address and no handle may be left and ``ipam check`` must be
clean.  Rounds alternate nothing (one code under test); run it against another checkout
with ``PYTHONPATH=<that checkout>/src`` to compare.

Run: .venv/bin/python bench/burst_txn_bench.py [--nodes 1] [--pods 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "cni")]

from cni_helpers import add_pool, cni_env, netconf  # type: ignore[import-not-found, unused-ignore]  # noqa: E402

from etcd_cluster import EtcdCluster, etcd_binary  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from tortie.cni import thin  # noqa: E402
from tortie.cni.service import CniService, Stores  # noqa: E402
from tortie.datastore import keys  # noqa: E402
from tortie.datastore.backends import open_datastore  # noqa: E402
from tortie.datastore.base import Datastore  # noqa: E402
from tortie.datastore.config import DatastoreSettings  # noqa: E402
from tortie.ipam.check import check  # noqa: E402


def etcd_counts(cluster: EtcdCluster) -> dict[str, float]:
    counts = {"Range": 0.0, "Txn": 0.0}
    for member in cluster.members:
        with urllib.request.urlopen(f"{member.url}/metrics", timeout=10) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith("grpc_server_handled_total{"):
                    for method in counts:
                        if f'grpc_method="{method}"' in line:
                            counts[method] += float(line.rsplit(" ", 1)[1])
    return counts


def same(store: Datastore, _settings: DatastoreSettings) -> Datastore:
    return store


def burst(calls: list[tuple[str, str, str, bytes]]) -> list[int]:
    """(socket, verb, container, stdin) each at once; their exit codes."""
    codes = [-1] * len(calls)
    gate = threading.Barrier(len(calls))

    def one(i: int) -> None:
        path, verb, container, stdin = calls[i]
        env = {k.encode(): v.encode() for k, v in cni_env(verb, container=container).items()}
        gate.wait()
        answer = thin.call(path, b"ipam", env, stdin)
        codes[i] = -2 if answer is None else answer[0]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


def one_round(cluster: EtcdCluster, tmp: str, nodes: int, pods: int) -> dict[str, dict[str, float]]:
    cluster.wipe()
    settings = DatastoreSettings(datastore_type="etcdv3", etcd_endpoints=cluster.endpoints)
    admin = open_datastore(settings)
    add_pool(admin, "v4", "10.73.0.0/16", blockSize=26)
    add_pool(admin, "v6", "fd00:73::/48", blockSize=122)
    services = []
    calls: dict[str, list[tuple[str, str, str, bytes]]] = {"ADD": [], "DEL": []}
    for n in range(nodes):
        store = open_datastore(settings)
        svc = CniService(f"{tmp}/n{n}.sock", Stores(None), open_store=partial(same, store))
        svc.start()
        services.append((svc, store))
        conf = netconf(name="net1", ipam={"assign_ipv4": "true", "assign_ipv6": "true"})
        conf["nodename"] = f"node-{n}"
        stdin = json.dumps(conf).encode()
        for verb in calls:
            calls[verb] += [(svc.path, verb, f"n{n}-pod{p:04d}", stdin) for p in range(pods)]
    out: dict[str, dict[str, float]] = {}
    try:
        for verb, batch in calls.items():
            before = etcd_counts(cluster)
            began = time.monotonic()
            codes = burst(batch)
            wall = time.monotonic() - began
            after = etcd_counts(cluster)
            bad = [c for c in codes if c != 0]
            assert not bad, f"{len(bad)} {verb}s failed: {bad[:5]}"
            total = nodes * pods
            out[verb] = {
                "wall": wall,
                "Range": (after["Range"] - before["Range"]) / total,
                "Txn": (after["Txn"] - before["Txn"]) / total,
            }
        left = admin.list(keys.handle_prefix())
        assert not left, f"{len(left)} handles left"
        report = check(admin)
        assert not report.problems, report.problems
    finally:
        for svc, store in services:
            svc.stop()
            svc.stores.close()
            store.close()
        admin.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--pods", type=int, default=100, help="per node")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if etcd_binary() is None:
        print("needs etcd (apt-get install etcd-server)")
        return 1
    rows: dict[str, list[dict[str, float]]] = {"ADD": [], "DEL": []}
    with (
        tempfile.TemporaryDirectory(prefix="tt-burst-") as tmp,
        EtcdCluster(Path(tmp) / "etcd", size=3) as cluster,
    ):
        for _ in range(args.rounds):
            for verb, row in one_round(cluster, tmp, args.nodes, args.pods).items():
                rows[verb].append(row)
    print(
        f"{args.nodes} node(s) x {args.pods} dual-stack pods, 3-member etcd, median of "
        f"{args.rounds} rounds (min-max)"
    )
    print("| verb | wall (s) | Range per pod | Txn per pod |")
    print("|---|---:|---:|---:|")
    for verb, samples in rows.items():
        cells = []
        for what in ("wall", "Range", "Txn"):
            vals = [s[what] for s in samples]
            cells.append(f"{statistics.median(vals):.2f} ({min(vals):.2f}-{max(vals):.2f})")
        print(f"| {verb} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
