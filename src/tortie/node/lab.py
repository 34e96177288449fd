"""A small cluster in network namespaces on this machine: hosts on one link, an agent and
BIRD 2 per host, pods through the real ``calico`` CNI plugin.  ``tortie demo`` uses it.

Everything it makes is named ``tortie-lab-<id>-…`` and removed by ``close()`` (agents by
PID, then the namespaces, then the work directory), also after a failure or Ctrl-C.  It
never touches the machine's own namespace: addresses, routes and sysctls are set inside
the namespaces only.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tortie.errors import TortieError
from tortie.rundir import RunDir

POOL4 = "10.244.0.0/16"
POOL6 = "fd00:10:244::/48"


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    for d in ("/usr/sbin", "/sbin", "/usr/bin"):
        if found is None and os.access(f"{d}/{name}", os.X_OK):
            found = f"{d}/{name}"
    return found


def missing_prerequisites() -> str | None:
    """Why the lab cannot run here (one line), or None."""
    if os.geteuid() != 0:
        return "it needs root (it creates network namespaces)"
    for tool, package in (("ip", "iproute2"), ("bird", "bird2"), ("ping", "iputils-ping")):
        if _tool(tool) is None:
            return f"'{tool}' is not installed (Debian package {package})"
    for exe in ("tortie", "calico", "calico-ipam"):
        if not Path(sys.executable).with_name(exe).exists():
            return f"{exe} is not installed next to {sys.executable} (pip install -e .)"
    return None


@dataclass
class LabHost:
    name: str
    netns: str
    ipv4: str
    ipv6: str
    run_dir: Path
    agent: subprocess.Popen[bytes] | None = None


@dataclass
class Pod:
    name: str
    host: LabHost
    netns: str
    addresses: list[str] = field(default_factory=list)


class Lab:
    def __init__(self, workdir: Path, hosts: int = 3, say: Callable[[str], None] = print) -> None:
        self.id = secrets.token_hex(3)
        self.workdir = workdir
        self.say = say
        self.ip = _tool("ip") or "ip"
        self.bin = Path(sys.executable).parent
        self.namespaces: list[str] = []
        self.hosts: list[LabHost] = []
        self.pods: list[Pod] = []
        self.store_env = {"DATASTORE_TYPE": "sqlite", "SQLITE_PATH": str(workdir / "tortie.db")}
        self._count = hosts

    # ------------------------------------------------------------------ building

    def _netns(self, suffix: str) -> str:
        name = f"tortie-lab-{self.id}-{suffix}"
        self._run(self.ip, "netns", "add", name)
        self.namespaces.append(name)
        return name

    def _run(self, *argv: str, netns: str | None = None, stdin: str | None = None) -> str:
        cmd = [self.ip, "netns", "exec", netns, *argv] if netns else list(argv)
        proc = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, timeout=60, check=False
        )
        if proc.returncode != 0:
            raise TortieError(f"lab: {' '.join(argv[:6])} failed: {proc.stderr.strip()[:300]}")
        return proc.stdout

    def build(self) -> None:
        bridge = self._netns("link")
        self._run(self.ip, "-n", bridge, "link", "add", "br0", "type", "bridge")
        self._run(self.ip, "-n", bridge, "link", "set", "br0", "up")
        for i in range(1, self._count + 1):
            ns = self._netns(f"node{i}")
            host = LabHost(
                f"node-{i}", ns, f"10.10.0.{10 + i}", f"fd10::{10 + i}", self.workdir / f"node-{i}"
            )
            host.run_dir.mkdir(parents=True, exist_ok=True)
            self._run(
                self.ip,
                "-n",
                bridge,
                "link",
                "add",
                f"port{i}",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
            )
            self._run(self.ip, "-n", bridge, "link", "set", f"port{i}", "master", "br0", "up")
            for args in (
                ("link", "set", "lo", "up"),
                ("link", "set", "eth0", "up"),
                ("addr", "add", f"{host.ipv4}/24", "dev", "eth0"),
                ("addr", "add", f"{host.ipv6}/64", "dev", "eth0", "nodad"),
            ):
                self._run(self.ip, "-n", ns, *args)
            self.hosts.append(host)

    def start_agents(self) -> None:
        for host in self.hosts:
            env = {
                "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                **self.store_env,
                "NODENAME": host.name,
                "CALICO_NODENAME_FILE": RunDir(str(host.run_dir)).nodename,
                "TORTIE_RUN_DIR": str(host.run_dir),
                "IP": "autodetect",
                "IP6": "autodetect",
                "CALICO_IPV4POOL_CIDR": POOL4,
                "CALICO_IPV6POOL_CIDR": POOL6,
                "TORTIE_BGP_HOLD_TIME": "9",
                "TORTIE_BGP_CONNECT_RETRY_TIME": "1",
            }
            with open(RunDir(str(host.run_dir)).agent_log, "ab") as log:
                host.agent = subprocess.Popen(
                    [
                        self.ip,
                        "netns",
                        "exec",
                        host.netns,
                        "env",
                        "-i",
                        *(f"{k}={v}" for k, v in env.items()),
                        str(self.bin / "tortie"),
                        "node",
                        "run",
                    ],
                    stdout=log,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                )

    def ready(self, host: LabHost) -> bool:
        proc = subprocess.run(
            [
                self.ip,
                "netns",
                "exec",
                host.netns,
                str(self.bin / "tortie"),
                "node",
                "health",
                "--ready",
            ],
            env={**os.environ, "TORTIE_RUN_DIR": str(host.run_dir)},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        want = 2 * (len(self.hosts) - 1)  # one session per peer and family
        return proc.returncode == 0 and f" {want} BGP sessions established" in proc.stdout

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 60) -> float:
        start = time.monotonic()
        while not check():
            for host in self.hosts:
                if host.agent is not None and host.agent.poll() is not None:
                    log = Path(RunDir(str(host.run_dir)).agent_log).read_text(errors="replace")
                    raise TortieError(f"lab: the agent of {host.name} exited: {log.strip()[-400:]}")
            if time.monotonic() - start > timeout:
                raise TortieError(f"lab: timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.25)
        return time.monotonic() - start

    def add_pod(self, host: LabHost, name: str) -> Pod:
        pod = Pod(name, host, self._netns(name))
        conf = {
            "cniVersion": "1.0.0",
            "name": "k8s-pod-network",
            "type": "calico",
            "nodename": host.name,
            "ipam": {"type": "calico-ipam", "assign_ipv4": "true", "assign_ipv6": "true"},
        }
        env = {
            **os.environ,
            **self.store_env,
            "CNI_COMMAND": "ADD",
            "TORTIE_RUN_DIR": str(host.run_dir),  # the node agent's CNI service
            "CNI_CONTAINERID": name,
            "CNI_NETNS": f"/run/netns/{pod.netns}",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(self.bin),
        }
        proc = subprocess.run(
            [self.ip, "netns", "exec", host.netns, str(self.bin / "calico")],
            input=json.dumps(conf),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            raise TortieError(f"lab: CNI ADD of {name} failed: {proc.stdout.strip()[:300]}")
        pod.addresses = [ip["address"].split("/")[0] for ip in json.loads(proc.stdout)["ips"]]
        self.pods.append(pod)
        return pod

    def learned_routes(self, host: LabHost, version: int) -> list[dict[str, str]]:
        out = self._run(self.ip, f"-{version}", "-j", "-n", host.netns, "route", "show")
        return [
            r
            for r in json.loads(out or "[]")
            if r.get("protocol") == "bird" and r.get("type") != "blackhole"
        ]

    def ping(self, src: Pod, address: str) -> bool:
        proc = subprocess.run(
            [self.ip, "netns", "exec", src.netns, "ping", "-c", "1", "-W", "2", address],
            capture_output=True,
            timeout=10,
            check=False,
        )
        return proc.returncode == 0

    def matrix(self, version: int) -> dict[tuple[str, str], bool]:
        out = {}
        for a, b in itertools.product(self.pods, repeat=2):
            if a is b:
                continue
            address = next(x for x in b.addresses if (":" in x) == (version == 6))
            out[(a.name, b.name)] = self.ping(a, address)
        # Routes just learned can miss a first ping for a few hundred ms: a pair that
        # did not answer gets 3 s more before it counts as unreachable.
        deadline = time.monotonic() + 3
        while not all(out.values()) and time.monotonic() < deadline:
            time.sleep(0.25)
            for (a_name, b_name), ok in out.items():
                if not ok:
                    a = next(p for p in self.pods if p.name == a_name)
                    b = next(p for p in self.pods if p.name == b_name)
                    address = next(x for x in b.addresses if (":" in x) == (version == 6))
                    out[(a_name, b_name)] = self.ping(a, address)
        return out

    # ------------------------------------------------------------------ removing

    def close(self) -> None:
        for host in self.hosts:
            if host.agent is not None and host.agent.poll() is None:
                host.agent.send_signal(signal.SIGTERM)
        for host in self.hosts:
            if host.agent is not None:
                try:
                    host.agent.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    host.agent.kill()
                    host.agent.wait()
        for name in reversed(self.namespaces):
            subprocess.run([self.ip, "netns", "delete", name], capture_output=True, check=False)
        self.namespaces.clear()
