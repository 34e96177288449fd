"""natOutgoing benchmark (root; real namespaces, tests/nat_lab.py's node + outside host).

1. Rules re-applied after a pool change with 1,000 pools (500 IPv4, 500 IPv6, half of
   them natOutgoing): ``desired`` + ``render`` + ``NatTables.apply`` after one pool's
   natOutgoing flips, median of N; and the idle check (same rules: one ``nft list
   chains``, nothing written).
2. Pod -> outside host TCP throughput (iperf3, one stream) through the NAT against the
   same path without NAT (the outside host given a route back to the pools, tortie's
   tables removed), alternately, median of N each, IPv4 and IPv6.

Run: sudo .venv/bin/python bench/nat_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from nat_lab import NODE4, NODE6, OUT4, OUT6, NatLab, pool
from netns import Netns, NetnsPool
from tortie.dataplane.nat import NatTables
from tortie.model.ippool import IPPool
from tortie.node.nat import desired, render
from tortie.node.natsettings import NatSettings

IPERF3 = "/usr/bin/iperf3"


def many_pools(n: int, flipped: int | None = None) -> list[IPPool]:
    out = []
    for i in range(n // 2):
        nat = (i % 2 == 0) != (i == flipped)
        out.append(pool(f"p4-{i}", str(ipaddress.ip_network(f"10.{i // 256}.{i % 256}.0/24")),
                        natOutgoing=nat))  # fmt: skip
        out.append(pool(f"p6-{i}", f"fd00:{i:x}::/64", natOutgoing=nat))
    return out


def reapply(ns: Netns, n: int, runs: int) -> None:
    tables = NatTables(ns.name)
    tables.apply(render(desired(many_pools(n), NatSettings(), [NODE4, NODE6])))
    changed, idle = [], []
    for r in range(runs):
        pools = many_pools(n, flipped=r % 2 * 7)
        start = time.perf_counter()
        wrote = tables.apply(render(desired(pools, NatSettings(), [NODE4, NODE6])))
        changed.append(time.perf_counter() - start)
        assert wrote
        start = time.perf_counter()
        wrote = tables.apply(render(desired(pools, NatSettings(), [NODE4, NODE6])))
        idle.append(time.perf_counter() - start)
        assert not wrote
    text = render(desired(many_pools(n), NatSettings()))
    print(f"| rules re-applied after a pool change, {n:,} pools (desired + render + nft -f) "
          f"| {statistics.median(changed) * 1000:.0f} ms (max {max(changed) * 1000:.0f}) |")  # fmt: skip
    print(f"| idle check, same rules (nothing written) | {statistics.median(idle) * 1000:.1f} ms |")
    print(f"| script size, {n:,} pools | {len(text) / 1024:.0f} KiB |")


def iperf(lab: NatLab, dst: str, seconds: int) -> float:
    srv = subprocess.Popen(
        ["ip", "netns", "exec", lab.outside.name, IPERF3, "-s", "-1", "-B", dst],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):
            proc = lab.pod_a.ns.run(
                IPERF3, "-c", dst, "-t", str(seconds), "-J", check=False, timeout=60
            )
            received = json.loads(proc.stdout or "{}").get("end", {}).get("sum_received")
            if received is not None:
                return float(received["bits_per_second"]) / 1e9
            time.sleep(0.1)
        raise RuntimeError(f"iperf3 to {dst} failed: {proc.stdout[-300:]}")
    finally:
        srv.kill()
        srv.wait()


def throughput(lab: NatLab, runs: int, seconds: int) -> None:
    tables = NatTables(lab.node.name)
    nat_text = render(desired([pool("a", "10.244.0.0/16", natOutgoing=True),
                               pool("a6", "fd00:244::/48", natOutgoing=True)], NatSettings()))  # fmt: skip
    out = lab.outside
    for family, dst, via, cidr in (("-4", OUT4, NODE4, "10.244.0.0/16"),
                                   ("-6", OUT6, NODE6, "fd00:244::/48")):  # fmt: skip
        nat, plain = [], []
        for _ in range(runs):
            tables.apply(nat_text)
            nat.append(iperf(lab, dst, seconds))
            tables.cleanup()
            out.ip(family, "route", "add", cidr, "via", via)
            plain.append(iperf(lab, dst, seconds))
            out.ip(family, "route", "del", cidr, "via", via)
        n, p = statistics.median(nat), statistics.median(plain)
        print(f"| pod -> outside TCP, IPv{family[1]}: NAT vs routed back, median of {runs} x "
              f"{seconds} s | {n:.2f} vs {p:.2f} Gbit/s (**{n / p:.2f}x**) |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    runs, seconds = (3, 2) if args.quick else (7, 3)
    print("| measurement | result |\n|---|---|")
    with NetnsPool("tb-") as namespaces, tempfile.TemporaryDirectory() as tmp:
        reapply(namespaces.new(), 1000, 5 if args.quick else 20)
        lab = NatLab(namespaces, Path(tmp))
        try:
            throughput(lab, runs, seconds)
        finally:
            lab.close()


if __name__ == "__main__":
    main()
