"""IPAM engine benchmark (issue: IPAM engine, embedded SQLite datastore, `tortie`).

Measures, on the SQLite datastore:
  1. allocations per second in-process;
  2. allocations per second through `tortie ipam assign` (one process each), next to the
     reference `host-local` IPAM plugin doing one ADD per process in the same run;
  3. the cost of the first allocation on a new node in v4 /16, v4 /8, v6 /64 and v6 /48
     pools (ratio to the /16 case);
  4. the per-allocation cost with 100 and with 10,000 existing allocations.

Run: .venv/bin/python bench/ipam_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from tortie.datastore.sqlite import SqliteDatastore
from tortie.ipam.admin import Admin
from tortie.ipam.requests import AutoAssignArgs
from tortie.ipam.service import Ipam

HOST_LOCAL = "/usr/lib/cni/host-local"


def make_store(tmp: str, pools: list[tuple[str, str, int]]) -> SqliteDatastore:
    store = SqliteDatastore(os.path.join(tmp, f"b{time.monotonic_ns()}.db"))
    admin = Admin(store)
    docs = [
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": name},
            "spec": {"cidr": cidr, "blockSize": bs},
        }
        for name, cidr, bs in pools
    ]
    admin.execute(admin.plan("create", docs))
    return store


def in_process_rate(tmp: str, n: int) -> float:
    store = make_store(tmp, [("p4", "10.0.0.0/8", 26)])
    ipam = Ipam(store)
    start = time.perf_counter()
    for i in range(n):
        ipam.auto_assign(AutoAssignArgs(node=f"node-{i % 50}", handle_id=f"h{i}", num4=1))
    return n / (time.perf_counter() - start)


def process_rate(tmp: str, n: int) -> tuple[float, float]:
    store = make_store(tmp, [("p4", "10.0.0.0/8", 26)])
    env = dict(os.environ, SQLITE_PATH=store.path)
    tortie = os.path.join(os.path.dirname(sys.executable), "tortie")
    times = []
    for i in range(n):
        t = time.perf_counter()
        subprocess.run(
            [tortie, "ipam", "assign", f"--handle=h{i}", "--node=node-1", "--ipv4=1", "-o", "json"],
            env=env,
            check=True,
            capture_output=True,
        )
        times.append(time.perf_counter() - t)
    return statistics.median(times), 1 / statistics.mean(times)


def host_local_rate(tmp: str, n: int) -> float | None:
    if not os.path.exists(HOST_LOCAL):
        return None
    datadir = tempfile.mkdtemp(dir=tmp)
    conf = json.dumps(
        {
            "cniVersion": "0.4.0",
            "name": "bench",
            "ipam": {"type": "host-local", "subnet": "10.0.0.0/8", "dataDir": datadir},
        }
    )
    times = []
    for i in range(n):
        env = dict(
            os.environ,
            CNI_COMMAND="ADD",
            CNI_CONTAINERID=f"c{i}",
            CNI_NETNS="/proc/self/ns/net",
            CNI_IFNAME="eth0",
            CNI_PATH="/usr/lib/cni",
        )
        t = time.perf_counter()
        subprocess.run([HOST_LOCAL], input=conf.encode(), env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def first_allocation(tmp: str, cidr: str, bs: int, nodes: int) -> float:
    store = make_store(tmp, [("p", cidr, bs)])
    ipam = Ipam(store)
    v6 = ":" in cidr
    samples = []
    for i in range(nodes):
        t = time.perf_counter()
        ipam.auto_assign(
            AutoAssignArgs(
                node=f"new-node-{i}", handle_id=f"h{i}", num4=0 if v6 else 1, num6=1 if v6 else 0
            )
        )
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def filled(tmp: str, existing: int) -> tuple[Ipam, int]:
    store = make_store(tmp, [("p4", "10.0.0.0/8", 26)])
    ipam = Ipam(store)
    nodes = max(1, existing // 50)
    for i in range(existing):
        ipam.auto_assign(AutoAssignArgs(node=f"node-{i % nodes}", handle_id=f"pre{i}", num4=1))
    return ipam, nodes


def per_allocation(tmp: str, sizes: tuple[int, int], measure: int) -> tuple[float, float]:
    """Median cost of one allocation in two stores, measured alternately so that the
    machine's drift (other load, disk flushes) hits both the same way."""
    (a, na), (b, nb) = filled(tmp, sizes[0]), filled(tmp, sizes[1])
    samples: tuple[list[float], list[float]] = ([], [])
    for i in range(measure):
        for which, (ipam, nodes) in enumerate(((a, na), (b, nb))):
            t = time.perf_counter()
            ipam.auto_assign(AutoAssignArgs(node=f"node-{i % nodes}", handle_id=f"m{i}", num4=1))
            samples[which].append(time.perf_counter() - t)
    return statistics.median(samples[0]), statistics.median(samples[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    tmp = tempfile.mkdtemp(prefix="tortie-bench-")
    try:
        rate = in_process_rate(tmp, int(2000 * scale))
        print(f"in-process allocations/s (SQLite): {rate:.0f}")
        med, prate = process_rate(tmp, int(100 * scale))
        hl = host_local_rate(tmp, int(100 * scale))
        hl_txt = f"{hl * 1e3:.1f} ms" if hl else "n/a"
        ratio = f"{med / hl:.2f}" if hl else "n/a"
        print(
            f"`tortie ipam assign` process: median {med * 1e3:.1f} ms ({prate:.1f}/s); "
            f"host-local ADD median {hl_txt}; ratio {ratio}"
        )
        base = None
        for cidr, bs in (
            ("10.0.0.0/16", 26),
            ("10.0.0.0/8", 26),
            ("fd00::/64", 122),
            ("fd00::/48", 122),
        ):
            cost = first_allocation(tmp, cidr, bs, int(50 * scale) or 5)
            base = base or cost
            print(
                f"first allocation on a new node, {cidr} /{bs} blocks: {cost * 1e3:.2f} ms (x{cost / base:.2f} of /16)"
            )
        small, large = per_allocation(tmp, (100, int(10000 * scale)), int(500 * scale))
        print(
            f"per-allocation: {small * 1e3:.2f} ms at 100 existing, {large * 1e3:.2f} ms at "
            f"{int(10000 * scale)} existing (x{large / small:.2f})"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
