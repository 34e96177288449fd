"""Hosts on one link, each with its own ``tortie node run`` and BIRD, and pods made by the
real ``calico`` CNI plugin: a small cluster in network namespaces the harness creates.

Layout: one namespace holds the bridge ``br0``; every host namespace has ``eth0`` on it
with 10.10.0.(10+i)/24 and fd10::(10+i)/64 and NO default route.  Agents run inside their
host namespace (as calico-node runs on its host); the store is passed in as environment
variables (one SQLite file every agent opens, or etcd members reachable on the link).
Everything is removed on close: agents (by PID, SIGTERM), namespaces.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for netns

from netns import Netns, NetnsPool

BIN = Path(sys.executable).parent
POOL4 = "10.244.0.0/16"
POOL6 = "fd00:244::/48"


def host_addr(i: int, version: int) -> str:
    return f"10.10.0.{10 + i}" if version == 4 else f"fd10::{10 + i}"


@dataclass
class Host:
    index: int
    name: str
    ns: Netns
    run_dir: Path
    agent: subprocess.Popen[bytes] | None = None
    pods: dict[str, tuple[Netns, list[str]]] = field(default_factory=dict)

    def tortie(
        self, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        full = {**os.environ, **(env or {}), "TORTIE_RUN_DIR": str(self.run_dir)}
        return subprocess.run(
            ["ip", "netns", "exec", self.ns.name, str(BIN / "tortie"), *args],
            env=full,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def routes(self, version: int) -> list[dict[str, Any]]:
        return self.ns.routes(f"-{version}")

    def bird_routes(self, version: int) -> set[str]:
        """Routes BIRD learned from peers (this host's own block blackholes left out)."""
        return {
            r["dst"]
            for r in self.routes(version)
            if r.get("protocol") == "bird" and r.get("type") != "blackhole"
        }

    def blackholes(self, version: int) -> set[str]:
        return {r["dst"] for r in self.routes(version) if r.get("type") == "blackhole"}


class Cluster:
    def __init__(
        self, pool: NetnsPool, tmp: Path, store_env: Mapping[str, str], size: int = 3
    ) -> None:
        self.pool = pool
        self.tmp = tmp
        self.store_env = dict(store_env)
        self.bridge = pool.new()
        self.bridge.ip("link", "add", "br0", "type", "bridge")
        self.bridge.ip("link", "set", "br0", "up")
        self.hosts: list[Host] = []
        for i in range(1, size + 1):
            self.hosts.append(self._host(i))

    def _host(self, i: int) -> Host:
        ns = self.pool.new()
        ns.ip("link", "set", "lo", "up")
        port = f"port{i}"
        self.bridge.ip(
            "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns.name
        )
        self.bridge.ip("link", "set", port, "master", "br0", "up")
        ns.ip("link", "set", "eth0", "up")
        ns.ip("addr", "add", f"{host_addr(i, 4)}/24", "dev", "eth0")
        ns.ip("addr", "add", f"{host_addr(i, 6)}/64", "dev", "eth0", "nodad")
        run_dir = self.tmp / f"host-{i}"
        run_dir.mkdir(exist_ok=True)
        return Host(i, f"host-{i}", ns, run_dir)

    def attach(self, ns: Netns, address4: str, address6: str) -> None:
        """Put another namespace (e.g. an etcd member) on the link."""
        port = f"px{address4.rsplit('.', 1)[1]}"
        self.bridge.ip(
            "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns.name
        )
        self.bridge.ip("link", "set", port, "master", "br0", "up")
        ns.ip("link", "set", "lo", "up")
        ns.ip("link", "set", "eth0", "up")
        ns.ip("addr", "add", f"{address4}/24", "dev", "eth0")
        ns.ip("addr", "add", f"{address6}/64", "dev", "eth0", "nodad")

    # ------------------------------------------------------------------ agents

    def agent_env(self, host: Host, mode: str, **extra: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            **self.store_env,
            "NODENAME": host.name,
            "CALICO_NODENAME_FILE": str(host.run_dir / "nodename"),
            "TORTIE_RUN_DIR": str(host.run_dir),
            "CALICO_IPV4POOL_CIDR": POOL4,
            "CALICO_IPV6POOL_CIDR": POOL6,
            "TORTIE_BGP_HOLD_TIME": "9",
            "TORTIE_BGP_CONNECT_RETRY_TIME": "1",
        }
        if mode == "ipv4":
            env.update(IP="autodetect", IP6="none", CALICO_IPV6POOL_CIDR="none")
        elif mode == "ipv6":
            env.update(IP="none", IP6="autodetect", CALICO_ROUTER_ID="hash")
        else:
            env.update(IP="autodetect", IP6="autodetect")
        env.update(extra)
        return env

    def start_agent(self, host: Host, mode: str, **extra: str) -> None:
        env = self.agent_env(host, mode, **extra)
        log = open(host.run_dir / "agent.log", "ab")  # noqa: SIM115 - closed with the agent
        host.agent = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                host.ns.name,
                "env",
                "-i",
                *(f"{k}={v}" for k, v in env.items()),
                str(BIN / "tortie"),
                "node",
                "run",
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()

    def stop_agent(self, host: Host, timeout: float = 15) -> int | None:
        if host.agent is None:
            return None
        host.agent.send_signal(signal.SIGTERM)
        try:
            rc = host.agent.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            host.agent.kill()
            rc = host.agent.wait()
        host.agent = None
        return rc

    def agent_log(self, host: Host) -> str:
        path = host.run_dir / "agent.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ------------------------------------------------------------------ pods

    def add_pod(self, host: Host, name: str, mode: str) -> list[str]:
        pod = self.pool.new()
        ipam: dict[str, str] = {"type": "calico-ipam"}
        if mode == "ipv6":
            ipam.update(assign_ipv4="false", assign_ipv6="true")
        elif mode == "dual":
            ipam.update(assign_ipv6="true")
        conf = {
            "cniVersion": "1.0.0",
            "name": "k8s-pod-network",
            "type": "calico",
            "nodename": host.name,
            "ipam": ipam,
        }
        env = {
            **os.environ,
            **self.store_env,
            "CNI_COMMAND": "ADD",
            "TORTIE_RUN_DIR": str(host.run_dir),  # the node agent's CNI service
            "CNI_CONTAINERID": name,
            "CNI_NETNS": pod.path,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(BIN),
        }
        proc = subprocess.run(
            ["ip", "netns", "exec", host.ns.name, str(BIN / "calico")],
            input=json.dumps(conf),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        addrs = [ip["address"].split("/")[0] for ip in json.loads(proc.stdout)["ips"]]
        host.pods[name] = (pod, addrs)
        return addrs

    # ------------------------------------------------------------------ waiting

    def close(self) -> None:
        for host in self.hosts:
            self.stop_agent(host)


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout: float = 30,
    detail: Callable[[], str] = lambda: "",
) -> float:
    """Poll ``check`` until it is true; seconds it took.  Fails with ``what`` and detail."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{detail()}")
        time.sleep(0.2)


def ping(src: Netns, address: str) -> bool:
    proc = src.run("ping", "-c", "1", "-W", "2", address, check=False, timeout=10)
    return proc.returncode == 0
