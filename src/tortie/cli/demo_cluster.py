"""``tortie demo`` as root: three dual-stack nodes in network namespaces, an agent and
BIRD 2 on each, two pods per node through the ``calico`` plugin, and a ping matrix."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from tortie.cli.output import table
from tortie.node.lab import Lab
from tortie.rundir import RunDir


def _matrix(lab: Lab, version: int) -> tuple[str, int, int]:
    results = lab.matrix(version)
    names = [p.name for p in lab.pods]
    rows = []
    for a in names:
        rows.append([a] + ["-" if a == b else ("ok" if results[(a, b)] else "FAIL") for b in names])
    good = sum(results.values())
    return table(["FROM \\ TO", *names], rows, border=False), good, len(results)


def run_cluster_demo(keep: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="tortie-demo-"))
    lab = Lab(workdir, hosts=3, say=print)
    started = time.monotonic()
    failed = 0
    try:
        print("tortie demo: three dual-stack nodes in network namespaces, each with the tortie")
        print("node agent and BIRD 2, no default routes; pods wired by the calico CNI plugin.\n")
        lab.build()
        for h in lab.hosts:
            print(f"  {h.name}: eth0 {h.ipv4}/24 {h.ipv6}/64 (namespace {h.netns})")
        lab.start_agents()
        took = lab.wait(
            "every BGP session established", lambda: all(lab.ready(h) for h in lab.hosts)
        )
        print(f"\nAgents up; full iBGP mesh over IPv4 and IPv6 established in {took:.1f} s.")
        adds = []
        for h in lab.hosts:
            for n in (1, 2):
                began = time.monotonic()
                lab.add_pod(h, f"{h.name.replace('node-', 'pod')}{'ab'[n - 1]}")
                adds.append(time.monotonic() - began)
        served = all(Path(RunDir(str(h.run_dir)).cni_socket).exists() for h in lab.hosts)
        rows = [[p.host.name, p.name, ", ".join(p.addresses)] for p in lab.pods]
        sock = Path(RunDir().cni_socket).name
        how = f"handed to each node's agent over {sock}" if served else "run in-process"
        print(
            f"\nPods (two per node, an address of each family; each CNI ADD {how}, "
            f"median {sorted(adds)[len(adds) // 2] * 1000:.0f} ms):"
        )
        print(table(["NODE", "POD", "ADDRESSES"], rows, border=False), end="")
        took = lab.wait(
            "every node's blocks in the other nodes' kernels",
            lambda: all(
                len(lab.learned_routes(h, v)) >= len(lab.hosts) - 1
                for h in lab.hosts
                for v in (4, 6)
            ),
        )
        print(f"\nBlock routes learned by every node within {took:.1f} s, e.g. on node-1:")
        for v in (4, 6):
            for r in lab.learned_routes(lab.hosts[0], v):
                print(
                    f"  {r['dst']} via {r.get('gateway', '?')} dev {r.get('dev', '?')} proto bird"
                )
        for v in (4, 6):
            text, good, total = _matrix(lab, v)
            print(f"\nIPv{v} ping matrix ({good} of {total} pings answered):")
            print(text, end="")
            failed += total - good
        print(
            "\nAll pods reach each other over both families."
            if not failed
            else f"\n{failed} pings failed."
        )
    except KeyboardInterrupt:
        print("\ninterrupted; removing the demo cluster")
        failed = 1
    finally:
        lab.close()
        if keep:
            print(f"Agent and BIRD logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        print(
            f"Removed the demo's namespaces, agents and BIRDs ({time.monotonic() - started:.0f} s in all)."
        )
    return 0 if not failed else 1
