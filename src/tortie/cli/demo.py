"""``tortie demo``: tortie at work on a throw-away embedded store."""

from __future__ import annotations

import json
import shutil
import tempfile

from tortie.cli.output import count, table, with_percent
from tortie.datastore import keys
from tortie.datastore.sqlite import SqliteDatastore
from tortie.ipam.admin import Admin
from tortie.ipam.requests import AutoAssignArgs
from tortie.ipam.service import Ipam
from tortie.ipam.usage import usage

POOLS = [
    {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": "default-ipv4-ippool"},
        "spec": {"cidr": "10.244.0.0/16", "blockSize": 26, "natOutgoing": True},
    },
    {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": "default-ipv6-ippool"},
        "spec": {"cidr": "fd00:10:244::/48", "blockSize": 122},
    },
]
WORKLOADS = [
    ("node-1", "default", "nginx-7d9f"),
    ("node-1", "default", "nginx-b41c"),
    ("node-2", "kube-system", "coredns-5c8d"),
    ("node-2", "default", "api-66fd"),
    ("node-3", "default", "worker-0"),
    ("node-3", "default", "worker-1"),
]


def run_demo(keep: bool = False) -> int:
    workdir = tempfile.mkdtemp(prefix="tortie-demo-")
    path = f"{workdir}/tortie.db"
    store = SqliteDatastore(path)
    try:
        print(f"tortie demo: a fresh embedded store at {path}\n")
        admin = Admin(store)
        for line in admin.execute(admin.plan("create", POOLS)):
            print(line)
        for node in ("node-1", "node-2", "node-3"):
            store.create(
                keys.resource_key("nodes", node),
                json.dumps(
                    {
                        "apiVersion": "projectcalico.org/v3",
                        "kind": "Node",
                        "metadata": {"name": node},
                        "spec": {},
                    }
                ),
            )
        print("\nDual-stack addresses for six workloads on three nodes:")
        ipam = Ipam(store)
        rows = []
        for node, ns, pod in WORKLOADS:
            res = ipam.auto_assign(
                AutoAssignArgs(
                    node=node,
                    handle_id=f"k8s-pod-network.{pod}",
                    num4=1,
                    num6=1,
                    attrs={"namespace": ns, "pod": pod},
                )
            )
            rows.append([node, f"{ns}/{pod}", ", ".join(res.ipv4.addresses + res.ipv6.addresses)])
        print(table(["NODE", "WORKLOAD", "ADDRESSES (block prefix)"], rows, border=False))
        print("Each node claimed its own block in each pool (tortie ipam show --show-blocks):")
        lines = []
        for p in usage(store):
            lines.append(["IP Pool", p.cidr, "", count(p.total), with_percent(p.in_use, p.total)])
            for b in p.blocks:
                lines.append(
                    [
                        "Block",
                        b.cidr,
                        b.affinity or "",
                        count(b.total),
                        with_percent(b.in_use, b.total),
                    ]
                )
        print(table(["GROUPING", "CIDR", "AFFINITY", "IPS TOTAL", "IPS IN USE"], lines))
        print(
            "Try it yourself: tortie apply -f pool.yaml; tortie ipam assign --handle=h1 --node=n1 --ipv4=1 --ipv6=1"
        )
    finally:
        store.close()
        if keep:
            print(f"\nThe demo store is kept at {path} (SQLITE_PATH={path} tortie ipam show)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0
