"""Node agent benchmark (issue 7): how fast a new block's route reaches the other nodes,
and what the agent costs in CPU and memory, alone, with 3 and with 20 peers.

Runs as root on namespaces it creates (``tortie.node.lab``) and removes.  Usage:
    sudo .venv/bin/python bench/node_bench.py [--quick] [--store sqlite|etcd]
Goals (issue 7): route on the peers < 3 s, agent idle CPU < 1 %, RSS < 60 MiB.
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
from pathlib import Path

from tortie.node.lab import Lab, LabHost, missing_prerequisites

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bird_pid(host: LabHost) -> int:
    return int((host.run_dir / "bird.pid").read_text())


def measure(host: LabHost, seconds: float) -> dict[str, float]:
    assert host.agent is not None
    agent, bird = host.agent.pid, bird_pid(host)
    a0, b0, t0 = cpu_seconds(agent), cpu_seconds(bird), time.monotonic()
    time.sleep(seconds)
    a1, b1, t1 = cpu_seconds(agent), cpu_seconds(bird), time.monotonic()
    return {
        "agent_cpu_pct": 100 * (a1 - a0) / (t1 - t0),
        "bird_cpu_pct": 100 * (b1 - b0) / (t1 - t0),
        "agent_rss_mib": rss_mib(agent),
        "bird_rss_mib": rss_mib(bird),
    }


def tortie(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(lab.bin / "tortie"), *args],
        env={**os.environ, **lab.store_env},
        capture_output=True,
        text=True,
        check=True,
    )


def route_propagation(lab: Lab, rounds: int) -> list[float]:
    """Claim a new IPv4 block on node-1 each round; seconds until both peers have it."""
    peers = lab.hosts[1:]
    times = []
    for i in range(rounds):
        before = {p.name: {r["dst"] for r in lab.learned_routes(p, 4)} for p in peers}
        start = time.monotonic()
        # the first call claims node-1's first block; each later one fills the current
        # block (64 addresses) and claims the next with its last address
        tortie(
            lab,
            "ipam",
            "assign",
            f"--handle=bench{i}",
            "--node=node-1",
            f"--ipv4={1 if i == 0 else 64}",
            "-o",
            "json",
        )
        while True:
            now = {p.name: {r["dst"] for r in lab.learned_routes(p, 4)} for p in peers}
            if all(now[p.name] - before[p.name] for p in peers):
                break
            if time.monotonic() - start > 30:
                raise SystemExit(f"round {i}: no new route on the peers after 30 s")
            time.sleep(0.02)
        times.append(time.monotonic() - start)
    return times


def simulate_peers(lab: Lab, count: int, first: int = 0) -> None:
    """Nodes that exist only in the datastore (addresses on the link that do not answer),
    each with a block, as a larger cluster looks to one agent."""
    docs = []
    for i in range(first, first + count):
        docs.append(
            json.dumps(
                {
                    "apiVersion": "projectcalico.org/v3",
                    "kind": "Node",
                    "metadata": {"name": f"sim-{i:02d}"},
                    "spec": {
                        "bgp": {
                            "ipv4Address": f"10.10.0.{100 + i}/24",
                            "ipv6Address": f"fd10::{100 + i}/64",
                        }
                    },
                }
            )
        )
    subprocess.run(
        [str(lab.bin / "tortie"), "apply", "-f", "-"],
        input="---\n" + "\n---\n".join(docs),
        env={**os.environ, **lab.store_env},
        capture_output=True,
        text=True,
        check=True,
    )
    for i in range(count):
        tortie(
            lab, "ipam", "assign", f"--handle=sim{i}", f"--node=sim-{i:02d}", "--ipv4=1", "--ipv6=1"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short windows, fewer rounds")
    args = parser.parse_args()
    why = missing_prerequisites()
    if why is not None:
        print(f"node_bench: cannot run here: {why}", file=sys.stderr)
        return 2
    window = 10.0 if args.quick else 30.0
    rounds = 5 if args.quick else 10
    results: dict[str, object] = {}
    workdir = Path(tempfile.mkdtemp(prefix="tortie-bench-"))
    lab = Lab(workdir, hosts=3, say=lambda s: None)
    try:
        lab.build()
        lab.start_agents()
        took = lab.wait("sessions", lambda: all(lab.ready(h) for h in lab.hosts))
        results["mesh_established_s"] = round(took, 2)
        times = route_propagation(lab, rounds)
        results["route_propagation_s"] = {
            "median": round(statistics.median(times), 3),
            "max": round(max(times), 3),
            "rounds": len(times),
        }
        simulate_peers(lab, 1, first=0)  # 2 real peers + 1 in the datastore only
        time.sleep(3)
        results["peers_3"] = measure(lab.hosts[0], window)
        simulate_peers(lab, 17, first=1)  # 2 real + 18 simulated
        time.sleep(5)
        results["peers_20"] = measure(lab.hosts[0], window)
    finally:
        lab.close()
    workdir2 = Path(tempfile.mkdtemp(prefix="tortie-bench-"))
    alone = Lab(workdir2, hosts=1, say=lambda s: None)
    try:
        alone.build()
        alone.start_agents()
        alone.wait("agent", lambda: (alone.hosts[0].run_dir / "bird.pid").exists())
        time.sleep(3)
        results["alone"] = measure(alone.hosts[0], window)
    finally:
        alone.close()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
