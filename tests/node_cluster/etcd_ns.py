"""A 3-member etcd cluster whose members live in their own namespaces on the cluster's
link (agents in host namespaces cannot reach the machine's loopback).  Stopped by PID."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

from harness import Cluster


class EtcdOnLink:
    def __init__(self, cluster: Cluster, directory: Path, size: int = 3) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.addrs = [f"10.10.0.{101 + i}" for i in range(size)]
        self.namespaces = []
        for i, addr in enumerate(self.addrs):
            ns = cluster.pool.new()
            cluster.attach(ns, addr, f"fd10::{101 + i}")
            self.namespaces.append(ns)
        etcd = shutil.which("etcd") or "/usr/bin/etcd"
        initial = ",".join(f"m{i}=http://{a}:2380" for i, a in enumerate(self.addrs))
        for i, (ns, addr) in enumerate(zip(self.namespaces, self.addrs, strict=True)):
            data = directory / f"m{i}"
            data.mkdir(parents=True, exist_ok=True)
            log = open(directory / f"m{i}.log", "ab")  # noqa: SIM115 - closed right after
            self.procs.append(
                subprocess.Popen(
                    [
                        "ip",
                        "netns",
                        "exec",
                        ns.name,
                        etcd,
                        "--name",
                        f"m{i}",
                        "--data-dir",
                        str(data / "data"),
                        "--listen-client-urls",
                        f"http://{addr}:2379",
                        "--advertise-client-urls",
                        f"http://{addr}:2379",
                        "--listen-peer-urls",
                        f"http://{addr}:2380",
                        "--initial-advertise-peer-urls",
                        f"http://{addr}:2380",
                        "--initial-cluster",
                        initial,
                        "--initial-cluster-state",
                        "new",
                        "--initial-cluster-token",
                        "tortie-node-test",
                        "--heartbeat-interval",
                        "50",
                        "--election-timeout",
                        "500",
                    ],
                    stdout=log,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                )
            )
            log.close()
        self.wait_healthy()

    @property
    def endpoints(self) -> str:
        return ",".join(f"http://{a}:2379" for a in self.addrs)

    def wait_healthy(self, timeout: float = 30) -> None:
        etcdctl = shutil.which("etcdctl") or "/usr/bin/etcdctl"
        deadline = time.monotonic() + timeout
        while True:
            proc = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.namespaces[0].name,
                    etcdctl,
                    f"--endpoints={self.endpoints}",
                    "endpoint",
                    "health",
                ],
                capture_output=True,
                text=True,
                env={"ETCDCTL_API": "3"},
                check=False,
            )
            if proc.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"etcd on the link not healthy: {proc.stderr[-500:]}")
            time.sleep(0.3)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
