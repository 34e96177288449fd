"""CNI benchmark: tortie's IPAM plugin against the reference host-local plugin.

1. IPAM ADD and DEL per call (a new process each), median and p95, with 0, 1,000 and
   5,000 existing allocations: tortie (`calico-ipam` launcher, SQLite) vs `host-local`.
2. 100 concurrent ADDs on one host: wall time, tortie vs host-local.

The existing allocations are made the way each plugin stores them: through tortie's IPAM
service for tortie, and as host-local's one-file-per-address data directory for
host-local (the state N ADDs would leave).  Both run in the same process, alternately,
so machine noise hits both alike.  Full pod ADD (veth + addresses) is measured by
bench/pod_bench.py (needs root).

Run: .venv/bin/python bench/cni_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

from tortie.cni.install import write_executables
from tortie.datastore import keys
from tortie.datastore.sqlite import SqliteDatastore
from tortie.ipam.requests import AutoAssignArgs
from tortie.ipam.service import Ipam

HOST_LOCAL = "/usr/lib/cni/host-local"
NODE = "bench-node"


def env(command: str, container: str) -> dict[str, str]:
    return dict(
        os.environ,
        CNI_COMMAND=command,
        CNI_CONTAINERID=container,
        CNI_NETNS="/var/run/netns/bench",
        CNI_IFNAME="eth0",
        CNI_PATH="/usr/lib/cni",
    )


class Tortie:
    name = "tortie"

    def __init__(self, tmp: str, bin_dir: str, existing: int) -> None:
        self.db = os.path.join(tmp, f"t{existing}-{time.monotonic_ns()}.db")
        store = SqliteDatastore(self.db)
        pool = {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": "bench"},
            "spec": {"cidr": "10.128.0.0/9", "blockSize": 24},
        }
        store.create(keys.resource_key("ippools", "bench"), json.dumps(pool))
        ipam = Ipam(store)
        for i in range(existing):
            ipam.auto_assign(AutoAssignArgs(node=NODE, handle_id=f"bench.pre{i}", num4=1))
        store.close()
        self.plugin = os.path.join(bin_dir, "calico-ipam")
        self.conf = json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "bench",
                "type": "calico-ipam",
                "nodename": NODE,
                "datastore_type": "sqlite",
                "sqlite_path": self.db,
                "ipam": {"type": "calico-ipam"},
            }
        ).encode()

    def call(self, command: str, container: str) -> None:
        out = subprocess.run(
            [self.plugin], input=self.conf, env=env(command, container), capture_output=True
        )
        if out.returncode != 0:
            raise SystemExit(f"{self.name} {command} failed: {out.stdout!r} {out.stderr!r}")

    def popen(self, container: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [self.plugin],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env("ADD", container),
        )


class HostLocal(Tortie):
    name = "host-local"

    def __init__(self, tmp: str, bin_dir: str, existing: int) -> None:
        self.data = os.path.join(tmp, f"hl{existing}-{time.monotonic_ns()}")
        net_dir = os.path.join(self.data, "bench")
        os.makedirs(net_dir)
        base = ipaddress.ip_network("10.128.0.0/9")
        last = None
        for i in range(existing):
            last = base.network_address + 2 + i
            with open(os.path.join(net_dir, str(last)), "w") as fh:
                fh.write(f"pre{i}\neth0")
        if last is not None:
            with open(os.path.join(net_dir, "last_reserved_ip.0"), "w") as fh:
                fh.write(str(last))
        self.plugin = HOST_LOCAL
        self.conf = json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "bench",
                "type": "host-local",
                "ipam": {"type": "host-local", "subnet": "10.128.0.0/9", "dataDir": self.data},
            }
        ).encode()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def per_call(plugins: list[Tortie], calls: int) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {p.name: {"ADD": [], "DEL": []} for p in plugins}
    for command in ("ADD", "DEL"):
        for i in range(calls):
            for p in plugins:
                t = time.perf_counter()
                p.call(command, f"m{i}")
                out[p.name][command].append(time.perf_counter() - t)
    return out


def concurrent(plugin: Tortie, n: int) -> float:
    t = time.perf_counter()
    procs = [plugin.popen(f"conc{i}") for i in range(n)]
    for proc in procs:
        proc.communicate(plugin.conf)
        if proc.returncode != 0:
            raise SystemExit(f"{plugin.name} concurrent ADD failed")
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    calls = 20 if args.quick else 60
    tmp = tempfile.mkdtemp(prefix="tortie-cni-bench-")
    bin_dir = os.path.join(tmp, "bin")
    os.makedirs(bin_dir)
    write_executables(bin_dir)
    report: Callable[[str], None] = print
    try:
        for existing in (0, 1000, 5000):
            plugins = [Tortie(tmp, bin_dir, existing), HostLocal(tmp, bin_dir, existing)]
            res = per_call(plugins, calls)
            for command in ("ADD", "DEL"):
                t, h = res["tortie"][command], res["host-local"][command]
                report(
                    f"{existing:>5} existing, {command}: tortie median {statistics.median(t) * 1e3:.1f} ms "
                    f"p95 {pct(t, 0.95) * 1e3:.1f} | host-local median {statistics.median(h) * 1e3:.1f} ms "
                    f"p95 {pct(h, 0.95) * 1e3:.1f} | ratio {statistics.median(t) / statistics.median(h):.2f}"
                )
        t_wall = concurrent(Tortie(tmp, bin_dir, 0), 100)
        h_wall = concurrent(HostLocal(tmp, bin_dir, 0), 100)
        report(
            f"100 concurrent ADDs: tortie {t_wall:.2f} s, host-local {h_wall:.2f} s, ratio {t_wall / h_wall:.2f}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
