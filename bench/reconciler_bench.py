"""Node agent as a reconciler (issue 15): what idle agents cost the datastore, and what one
node's pod churn costs every other agent.  The agent before the change (a tree given with
--before, e.g. a `git worktree` of the commit before) runs in the same run for ratios.

Runs as root on namespaces it creates (``tortie.node.lab``: hosts on one bridge, each with
``tortie node run`` and BIRD) plus one etcd member in a namespace on the same link.
Datastore reads are etcd's own count (``etcd_mvcc_range_total`` on its /metrics), CPU
is /proc/<pid>/stat of the agent processes.

    sudo .venv/bin/python bench/reconciler_bench.py [--before DIR] [--sizes 8,16]
        [--idle 60] [--churn 30]
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
from pathlib import Path

from tortie.node.lab import Lab, LabHost, missing_prerequisites

TICKS = os.sysconf("SC_CLK_TCK")
ETCD_ADDR = "10.10.0.250"


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def agent_pids(host: LabHost) -> list[int]:
    """The agent process (under ``ip netns exec`` / ``env``, which exec it)."""
    assert host.agent is not None
    return [host.agent.pid]


class EtcdOnLab:
    """One etcd member in its own namespace on the lab's bridge; stopped by PID."""

    def __init__(self, lab: Lab, directory: Path) -> None:
        self.lab = lab
        self.ns = lab._netns("etcd")
        bridge = lab.namespaces[0]
        ip = lab.ip
        lab._run(ip, "-n", bridge, "link", "add", "petcd", "type", "veth", "peer", "name",
                 "eth0", "netns", self.ns)  # fmt: skip
        lab._run(ip, "-n", bridge, "link", "set", "petcd", "master", "br0", "up")
        lab._run(ip, "-n", self.ns, "link", "set", "lo", "up")
        lab._run(ip, "-n", self.ns, "link", "set", "eth0", "up")
        lab._run(ip, "-n", self.ns, "addr", "add", f"{ETCD_ADDR}/24", "dev", "eth0")
        etcd = shutil.which("etcd") or "/usr/bin/etcd"
        self.log = open(directory / "etcd.log", "ab")  # noqa: SIM115 - closed in stop()
        url = f"http://{ETCD_ADDR}:2379"
        self.proc = subprocess.Popen(
            [ip, "netns", "exec", self.ns, etcd, "--data-dir", str(directory / "etcd"),
             "--listen-client-urls", url, "--advertise-client-urls", url,
             "--listen-peer-urls", f"http://{ETCD_ADDR}:2380"],
            stdout=self.log, stderr=self.log,
        )  # fmt: skip
        self.url = url
        deadline = time.monotonic() + 20
        while self.metric("etcd_mvcc_range_total") is None:
            if time.monotonic() > deadline:
                raise SystemExit("etcd did not start")
            time.sleep(0.2)

    def metric(self, name: str) -> float | None:
        proc = subprocess.run(
            [self.lab.ip, "netns", "exec", self.ns, sys.executable, "-c",
             f"import urllib.request;print(urllib.request.urlopen('{self.url}/metrics',"
             "timeout=2).read().decode())"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        for line in proc.stdout.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def start_agents(lab: Lab, command: list[str], extra_env: dict[str, str]) -> None:
    for host in lab.hosts:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            **lab.store_env,
            **extra_env,
            "NODENAME": host.name,
            "CALICO_NODENAME_FILE": str(host.run_dir / "nodename"),
            "TORTIE_RUN_DIR": str(host.run_dir),
            "IP": "autodetect",
            "IP6": "autodetect",
            "CALICO_IPV4POOL_CIDR": "10.244.0.0/16",
            "CALICO_IPV6POOL_CIDR": "fd00:244::/48",
            "TORTIE_BGP_HOLD_TIME": "9",
            "TORTIE_BGP_CONNECT_RETRY_TIME": "1",
        }
        with open(host.run_dir / "agent.log", "ab") as log:
            host.agent = subprocess.Popen(
                [lab.ip, "netns", "exec", host.netns, "env", "-i",
                 *(f"{k}={v}" for k, v in env.items()), *command],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )  # fmt: skip


def cpu_of(hosts: list[LabHost]) -> dict[str, float]:
    return {h.name: sum(cpu_seconds(p) for p in agent_pids(h)) for h in hosts}


def run_one(
    label: str, command: list[str], env: dict[str, str], size: int, args: argparse.Namespace
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tortie-recbench-") as tmp:
        lab = Lab(Path(tmp), hosts=size, say=lambda s: None)
        etcd = None
        try:
            lab.build()
            etcd = EtcdOnLab(lab, Path(tmp))
            lab.store_env = {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": etcd.url}
            start_agents(lab, command, env)
            lab.wait("every BGP session up", lambda: all(lab.ready(h) for h in lab.hosts), 120)
            time.sleep(5)  # let start-up writes settle
            r0, c0, t0 = (
                etcd.metric("etcd_mvcc_range_total") or 0,
                cpu_of(lab.hosts),
                time.monotonic(),
            )
            time.sleep(args.idle)
            r1, c1, t1 = (
                etcd.metric("etcd_mvcc_range_total") or 0,
                cpu_of(lab.hosts),
                time.monotonic(),
            )
            idle_s = t1 - t0
            reads = (r1 - r0) / idle_s / size
            others = lab.hosts[1:]
            idle_cpu = statistics.mean(100 * (c1[h.name] - c0[h.name]) / idle_s for h in others)
            # churn: pods added on node-1 through its agent's CNI service for args.churn s
            c2, t2 = cpu_of(lab.hosts), time.monotonic()
            n = 0
            while time.monotonic() - t2 < args.churn:
                lab.add_pod(lab.hosts[0], f"p{n}")
                n += 1
            c3, t3 = cpu_of(lab.hosts), time.monotonic()
            churn_s = t3 - t2
            churn_cpu = statistics.mean(100 * (c3[h.name] - c2[h.name]) / churn_s for h in others)
            out = {
                "reads_per_agent_s": reads,
                "idle_cpu_pct": idle_cpu,
                "churn_cpu_pct": churn_cpu,
                "pods": n,
            }
            print(f"{label:>7} N={size:2d}: reads/s/agent {reads:.3f}; other agents' CPU idle "
                  f"{idle_cpu:.2f} %, while node-1 adds {n} pods {churn_cpu:.2f} % "
                  f"({churn_cpu / max(idle_cpu, 0.01):.2f}x)", flush=True)  # fmt: skip
            return out
        finally:
            lab.close()
            if etcd is not None:
                etcd.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="", help="a source tree of the agent before")
    parser.add_argument("--sizes", default="8,16")
    parser.add_argument("--idle", type=float, default=60)
    parser.add_argument("--churn", type=float, default=30)
    args = parser.parse_args()
    why = missing_prerequisites()
    if why is not None:
        print(f"cannot run: {why}")
        return 2
    after = [str(Path(sys.executable).parent / "tortie"), "node", "run"]
    contenders: list[tuple[str, list[str], dict[str, str]]] = [("after", after, {})]
    if args.before:
        src = str(Path(args.before) / "src")
        contenders.insert(
            0,
            (
                "before",
                [sys.executable, "-c", "import sys; from tortie.cli.main import main; "
                 "sys.argv[0] = 'tortie'; sys.exit(main())", "node", "run"],
                {"PYTHONPATH": src},
            ),
        )  # fmt: skip
    print(f"{time.strftime('%Y-%m-%d %H:%M')} {os.uname().nodename}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    results = {}
    for size in (int(s) for s in args.sizes.split(",")):
        for label, command, env in contenders:
            results[f"{label}-{size}"] = run_one(label, command, env, size, args)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
