"""BGP topology benchmark (issue 16): N nodes (default 40) in namespaces, each with its
``tortie node run`` agent and BIRD 2, first as a full iBGP mesh, then switched to two
route reflectors chosen by label (Calico's recipe: mesh off, ``routeReflectorClusterID``,
a BGPPeer with ``peerSelector``).  For each topology: BGP sessions per node, agent and
BIRD CPU (idle window) and RSS per node, and how long a new block on one node takes to
reach every other node's kernel.

Runs as root on namespaces it creates (``tortie.node.lab``) and removes.  Usage:
    sudo .venv/bin/python bench/bgp_bench.py [--nodes 40] [--window 20] [--rounds 5]
Goals (issue 16): reflectors: 2 sessions per family per client, full mesh N-1; a new
block in every other kernel in < 3 s with reflectors.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tortie.node.lab import Lab, LabHost, missing_prerequisites
from tortie.node.status import parse_protocols

TICKS = os.sysconf("SC_CLK_TCK")
RR_NODES = ("node-1", "node-2")
CLUSTER_ID = "224.0.0.1"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pids(host: LabHost) -> tuple[int, int]:
    assert host.agent is not None
    return host.agent.pid, int((host.run_dir / "bird.pid").read_text())


def birdc(host: LabHost, *command: str) -> str:
    return subprocess.run(
        ["birdc", "-s", str(host.run_dir / "bird.ctl"), *command],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout


def established(host: LabHost) -> tuple[int, int]:
    """(established sessions, all sessions) of one node's BIRD."""
    sessions = parse_protocols(birdc(host, "show", "protocols"))
    return sum(s.established for s in sessions), len(sessions)


def tortie(lab: Lab, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        [str(lab.bin / "tortie"), *args],
        input=stdin,
        env={**os.environ, **lab.store_env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def wait_sessions(lab: Lab, want: dict[str, int], timeout: float = 300) -> float:
    """Until every node has exactly ``want[name]`` sessions, all established."""
    start = time.monotonic()
    pending = dict(want)
    while pending:
        for host in lab.hosts:
            if host.name in pending and established(host) == (want[host.name],) * 2:
                del pending[host.name]
        if time.monotonic() - start > timeout:
            raise SystemExit(f"sessions not established after {timeout:g} s: {sorted(pending)}")
        time.sleep(0.5)
    return time.monotonic() - start


def measure(lab: Lab, window: float, reflectors: bool) -> dict[str, dict[str, float]]:
    """Per-node CPU % over an idle window and RSS, grouped: reflectors, the others."""
    before = {h.name: [cpu_seconds(p) for p in pids(h)] for h in lab.hosts}
    t0 = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - t0
    rows: dict[str, list[dict[str, float]]] = {}
    for h in lab.hosts:
        agent, bird = pids(h)
        a0, b0 = before[h.name]
        group = "reflector" if reflectors and h.name in RR_NODES else "node"
        rows.setdefault(group, []).append(
            {
                "agent_cpu_pct": 100 * (cpu_seconds(agent) - a0) / elapsed,
                "bird_cpu_pct": 100 * (cpu_seconds(bird) - b0) / elapsed,
                "agent_rss_mib": rss_mib(agent),
                "bird_rss_mib": rss_mib(bird),
                "sessions": established(h)[0],
            }
        )
    out: dict[str, dict[str, float]] = {}
    for group, items in rows.items():
        out[group] = {"count": len(items)}
        for key in items[0]:
            out[group][f"{key}_mean"] = round(statistics.mean(i[key] for i in items), 2)
            out[group][f"{key}_max"] = round(max(i[key] for i in items), 2)
    return out


def has_route(host: LabHost, prefix: str) -> bool:
    out = subprocess.run(
        ["ip", "-n", host.netns, "-4", "route", "show", prefix],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return "proto bird" in out and "blackhole" not in out


def propagation(lab: Lab, rounds: int, tag: str) -> list[float]:
    """Claim a new IPv4 block on node-3 (a client when reflectors are on); seconds until
    the route is in every other node's kernel.  Resolution: one pass over the nodes."""
    origin = lab.hosts[2]
    others = [h for h in lab.hosts if h is not origin]
    times = []
    for i in range(rounds):
        start = time.monotonic()
        out = tortie(
            lab,
            "ipam",
            "assign",
            f"--handle={tag}{i}",
            f"--node={origin.name}",
            f"--ipv4={1 if i == 0 and tag == 'mesh' else 64}",
            "-o",
            "json",
        )
        addresses = [a for a in json.loads(out).get("ipv4", []) if a]
        block = str(ipaddress.ip_network(f"{addresses[-1].split('/')[0]}/26", strict=False))
        pending = list(others)
        while pending:
            pending = [h for h in pending if not has_route(h, block)]
            if time.monotonic() - start > 60:
                raise SystemExit(f"{block}: not on {[h.name for h in pending]} after 60 s")
        times.append(time.monotonic() - start)
    return times


def static_neighbours(lab: Lab) -> None:
    """Permanent neighbour entries for every other node, in every node's namespace.

    The kernel's neighbour tables are shared by all namespaces, with a machine-wide
    limit (``gc_thresh3``, 1024 here); a 40-node mesh on one link needs 1,560 entries per
    family and the kernel drops the rest ('neighbor table overflow' in dmesg), which no
    real cluster of 40 machines sees.  Permanent entries are not counted against that
    limit, and the machine's own sysctls stay untouched."""
    macs = {}
    for h in lab.hosts:
        link = json.loads(lab._run("ip", "-j", "-n", h.netns, "link", "show", "eth0"))[0]
        macs[h.name] = link["address"]
    for h in lab.hosts:
        batch = [
            f"neigh replace {addr} lladdr {macs[o.name]} dev eth0 nud permanent"
            for o in lab.hosts
            if o is not h
            for addr in (o.ipv4, o.ipv6)
        ]
        lab._run("ip", "-n", h.netns, "-batch", "-", stdin="\n".join(batch) + "\n")


def switch_to_reflectors(lab: Lab) -> None:
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": {"nodeToNodeMeshEnabled": False},
        },
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPPeer",
            "metadata": {"name": "peer-with-route-reflectors"},
            "spec": {"nodeSelector": "all()", "peerSelector": "route-reflector == 'true'"},
        },
    ]
    for name in RR_NODES:
        node = json.loads(tortie(lab, "get", "node", name, "-o", "json"))
        node["metadata"]["labels"] = {"route-reflector": "true"}
        node["spec"].setdefault("bgp", {})["routeReflectorClusterID"] = CLUSTER_ID
        docs.append(node)
    tortie(lab, "apply", "-f", "-", stdin=json.dumps(docs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=40)
    parser.add_argument("--window", type=float, default=20.0, help="idle CPU window, s")
    parser.add_argument("--rounds", type=int, default=5, help="propagation rounds")
    args = parser.parse_args()
    why = missing_prerequisites()
    if why is not None:
        print(f"bgp_bench: cannot run here: {why}", file=sys.stderr)
        return 2
    n = args.nodes
    results: dict[str, Any] = {"nodes": n, "cpus": os.cpu_count()}
    workdir = Path(tempfile.mkdtemp(prefix="tortie-bgp-bench-"))
    lab = Lab(workdir, hosts=n, say=lambda s: None)
    try:
        lab.build()
        static_neighbours(lab)
        lab.start_agents()
        lab.wait(
            "BIRD on every node",
            lambda: all((h.run_dir / "bird.pid").exists() for h in lab.hosts),
            300,
        )
        mesh = {h.name: 2 * (n - 1) for h in lab.hosts}
        results["mesh_established_s"] = round(wait_sessions(lab, mesh), 1)
        time.sleep(5)
        results["mesh"] = measure(lab, args.window, reflectors=False)
        t = propagation(lab, args.rounds, "mesh")
        results["mesh_propagation_s"] = {
            "median": round(statistics.median(t), 2),
            "max": round(max(t), 2),
        }

        switch_to_reflectors(lab)
        rr = {h.name: 2 * len(RR_NODES) for h in lab.hosts}
        for name in RR_NODES:  # every client, and the other reflector (not a client)
            rr[name] = 2 * (n - 1)
        results["reflectors_established_s"] = round(wait_sessions(lab, rr), 1)
        time.sleep(5)
        results["reflectors"] = measure(lab, args.window, reflectors=True)
        t = propagation(lab, args.rounds, "rr")
        results["reflectors_propagation_s"] = {
            "median": round(statistics.median(t), 2),
            "max": round(max(t), 2),
        }
    finally:
        lab.close()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
