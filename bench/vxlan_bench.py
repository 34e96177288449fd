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
4. With real agents (``--agents``; tests/overlay_cluster/overlay_lab.py): 9 hosts on two
   segments, each running ``tortie node run`` with ``CALICO_NETWORKING_BACKEND=vxlan``
   (IPv4 and IPv6 pools ``Always``) and a pod, then a 10th agent is started: the time
   until its VTEP (neighbour + FDB entry, both families) is in all 9 other kernels —
   from the agent's launch and from its Node's VTEP write (the agent's log line) — and
   from its first pod's creation until all 9 other pods ping it; 5 rounds (the node is
   deleted and comes back).  Reading 9 kernels takes ~0.2 s itself, so the VTEP times
   are upper bounds.  Then every agent's CPU while idle over 60 s (``/proc/<pid>/stat``
   utime + stime of the whole process; the agents re-apply VXLAN every 10 s).

Run: sudo .venv/bin/python bench/vxlan_bench.py [--quick] [--agents | --agents-only]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "overlay_cluster"))
from overlay_lab import DEVICE4, DEVICE6, SegmentedCluster, fdb, neighbours

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


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a whole process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _vtep_write_time(log: str) -> float:
    """Wall-clock time of the agent's last "tunnel address" line (its Node write)."""
    stamps = [line[:23] for line in log.splitlines() if " tunnel address " in line]
    return datetime.strptime(stamps[-1], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def agents(count: int, idle_window: float, rounds: int) -> None:
    env = {
        "CALICO_NETWORKING_BACKEND": "vxlan",
        "CALICO_IPV4POOL_VXLAN": "Always",
        "CALICO_IPV6POOL_VXLAN": "Always",
    }
    with tempfile.TemporaryDirectory(prefix="vxlan-bench-") as tmp, NetnsPool("tb-") as pool:
        store = {"DATASTORE_TYPE": "sqlite", "SQLITE_PATH": f"{tmp}/tortie.db"}
        segments = ["a" if i % 2 else "b" for i in range(count)]
        cluster = SegmentedCluster(pool, Path(tmp), store, segments)
        try:
            old, new = cluster.hosts[:-1], cluster.hosts[-1]
            for host in old:
                cluster.start_agent(host, "dual", **env)
            cluster.wait_running(timeout=120, hosts=old)
            for host in old:
                cluster.add_pod(host, "p", "dual")

            def vteps(n: int) -> bool:
                return all(
                    len(neighbours(h, d)) == n and len(fdb(h, d)) == n
                    for h in old
                    for d in (DEVICE4, DEVICE6)
                )

            rows = []
            for r in range(rounds):
                _wait(lambda: vteps(count - 2), 60)
                launched_wall, launched = time.time(), time.perf_counter()
                cluster.start_agent(new, "dual", **env)
                _wait(lambda: vteps(count - 1), 60)
                programmed_wall, programmed = time.time(), time.perf_counter()
                written = _vtep_write_time(cluster.agent_log(new))
                _wait(lambda: (new.run_dir / "agent.json").exists(), 60)
                began = time.perf_counter()
                target = cluster.add_pod(new, f"p{r}", "dual")
                pending = [(h.pods["p"][0], a) for h in old for a in target]
                while pending:
                    pending = [(ns, a) for ns, a in pending if not _ping_fast(ns, a)]
                usable = time.perf_counter() - began
                rows.append(
                    (programmed - launched, programmed_wall - written, written - launched_wall,
                     usable)
                )  # fmt: skip
                if r < rounds - 1:  # the node goes again: pod, agent, Node
                    new.ns.ip("link", "del", f"calip{r}")
                    cluster.stop_agent(new)
                    gone = cluster.tortie("delete", "node", new.name)
                    assert gone.returncode == 0, gone.stderr
            for label, i in (
                (f"new node's VTEP in all {count - 1} other kernels, from its agent's launch", 0),
                ("  ... from its Node's VTEP write (the agent's log line)", 1),
                ("  (launch to that write)", 2),
                (f"its first pod reachable from all {count - 1} other pods, from the ADD", 3),
            ):
                values = sorted(row[i] for row in rows)
                print(
                    f"agents, {count} nodes, {rounds} rounds: {label}: median "
                    f"{statistics.median(values):.2f} s, max {values[-1]:.2f} s (goal < 3 s)"
                )
            time.sleep(12)  # past a dataplane resync; nothing changes from here on
            pids = [int((h.run_dir / "agent.pid").read_text()) for h in cluster.hosts]
            before = [_cpu_seconds(p) for p in pids]
            start = time.perf_counter()
            time.sleep(idle_window)
            elapsed = time.perf_counter() - start
            shares = [
                (_cpu_seconds(p) - b) / elapsed * 100 for p, b in zip(pids, before, strict=True)
            ]
            print(
                f"agents idle with VXLAN, {count} nodes, {elapsed:.0f} s: CPU per agent mean "
                f"{statistics.mean(shares):.2f} %, max {max(shares):.2f} % of a core "
                f"(goal < 1 %)"
            )
        finally:
            cluster.close()


def _ping_fast(ns: Netns, address: str) -> bool:
    argv = ["ping", "-c", "1", "-W", "0.2", *(["-6"] if ":" in address else []), address]
    return ns.run(*argv, check=False, timeout=10).returncode == 0


def _wait(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while not check():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"timed out after {timeout} s")
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--agents", action="store_true", help="also measure real agents")
    parser.add_argument("--agents-only", action="store_true", help="only the agents part")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("vxlan_bench: needs root (creates network namespaces); run it with sudo")
    if not args.agents_only:
        throughput(runs=1 if args.quick else 3, seconds=2 if args.quick else 3)
        convergence(10)
    if args.agents or args.agents_only:
        agents(10, idle_window=20 if args.quick else 60, rounds=2 if args.quick else 5)


if __name__ == "__main__":
    main()
