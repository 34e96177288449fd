"""VXLAN benchmark (root; real namespaces, tests/vxlan_lab.py's two-segment lab).

1. Pod-to-pod TCP throughput (iperf3, 3 s runs) between two nodes on one segment:
   through ``vxlan.calico`` (pool ``Always``) against native routing (``CrossSubnet``,
   same segment), alternately on the same hosts and pods, same pod MTU, median of N runs
   each.  IPv4 and IPv6 (``vxlan-v6.calico``).
2. A new node's VTEP usable from every other node, 10 nodes on two segments: time from
   the moment the new node appears until every other node's pod reaches its pod, with
   every node's desired state computed and applied in turn (one process does the work
   of 10 agents, so this is the sum, an upper bound of the parallel case).
3. One idle resync (desired + apply with nothing to change) on a 10-node cluster: the
   per-resync cost an agent pays while nothing happens.

Run: sudo .venv/bin/python bench/vxlan_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from netns import Netns, NetnsPool
from vxlan_lab import Lab, LabNode, ping

IPERF3 = "/usr/bin/iperf3"


def iperf(client: Netns, server: Netns, address: str, seconds: int) -> float:
    """Gbit/s received, one TCP stream."""
    srv = subprocess.Popen(
        ["ip", "netns", "exec", server.name, IPERF3, "-s", "-1", "-B", address],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):
            proc = client.run(
                IPERF3, "-c", address, "-t", str(seconds), "-J", check=False, timeout=60
            )
            report = json.loads(proc.stdout or "{}")
            received = report.get("end", {}).get("sum_received")
            if received is not None:
                return float(received["bits_per_second"]) / 1e9
            time.sleep(0.1)  # server not listening yet
        raise RuntimeError(f"iperf3 to {address} failed: {proc.stdout[-300:]}")
    finally:
        srv.kill()  # by its own PID
        srv.wait()


def throughput(runs: int, seconds: int) -> None:
    with NetnsPool("tb-") as pool:
        lab = Lab(pool, ["a", "a"], pod_mtu=1430)
        n1, n2 = lab.nodes
        results: dict[str, list[float]] = {}
        for _ in range(runs):
            for mode, label in (("CrossSubnet", "native"), ("Always", "vxlan")):
                lab.apply_all(mode)
                for family, dst in (("v4", n2.pod4), ("v6", n2.pod6)):
                    assert ping(n1.pod, dst), f"{label} {dst} unreachable"
                    gbps = iperf(n1.pod, n2.pod, dst, seconds)
                    results.setdefault(f"{label} {family}", []).append(gbps)
        for family in ("v4", "v6"):
            native = statistics.median(results[f"native {family}"])
            vxlan = statistics.median(results[f"vxlan {family}"])
            print(
                f"TCP pod-to-pod IP{family}: native {native:.2f} Gbit/s, VXLAN {vxlan:.2f} "
                f"Gbit/s, ratio {vxlan / native:.2f} (goal >= 0.7; {runs} runs of {seconds} s)"
            )


def convergence(count: int) -> None:
    with NetnsPool("tb-") as pool:
        segments = ["a" if i % 2 else "b" for i in range(count)]
        lab = Lab(pool, segments)
        old, new = lab.nodes[:-1], lab.nodes[-1]
        lab.apply_all("Always", members=old)
        start = time.perf_counter()
        applied: list[float] = []
        for n in [*old, new]:
            t = time.perf_counter()
            n.dataplane().apply(lab.state_for(n, "Always"))
            applied.append(time.perf_counter() - t)
        programmed = time.perf_counter() - start
        pending: list[LabNode] = list(old)
        while pending:
            pending = [n for n in pending if not ping(n.pod, new.pod4)]
        usable = time.perf_counter() - start
        print(
            f"new VTEP usable from all {count - 1} other nodes: {usable:.2f} s (goal < 3 s); "
            f"programming all {count} nodes {programmed:.3f} s, one node's apply "
            f"median {statistics.median(applied) * 1000:.1f} ms, max {max(applied) * 1000:.1f} ms"
        )
        idle: list[float] = []
        cpu0 = time.process_time()
        for _ in range(5):
            for n in lab.nodes:
                t = time.perf_counter()
                result = n.dataplane().apply(lab.state_for(n, "Always"))
                idle.append(time.perf_counter() - t)
                assert result.writes == 0
        cpu = (time.process_time() - cpu0) / len(idle)
        print(
            f"idle resync (desired + apply, no change), {count} nodes: median "
            f"{statistics.median(idle) * 1000:.1f} ms wall, {cpu * 1000:.1f} ms CPU; at one "
            f"resync per 10 s that is {cpu / 10 * 100:.3f} % of a core"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("vxlan_bench: needs root (creates network namespaces); run it with sudo")
    throughput(runs=1 if args.quick else 3, seconds=2 if args.quick else 3)
    convergence(10)


if __name__ == "__main__":
    main()
