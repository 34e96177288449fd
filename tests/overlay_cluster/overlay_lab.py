"""Hosts on two L2 segments joined by a plain router, each host with its own
``tortie node run``, pods made by the real ``calico`` CNI plugin (root).

Extends ``tests/node_cluster/harness.py`` (agents, pods, waiting) with
``tests/vxlan_lab.py``'s topology: the router namespace holds two bridges, ``seg-a``
(10.1.0.0/24, fd00:a::/64) and ``seg-b`` (10.2.0.0/24, fd00:b::/64), with its own
address ``.1`` / ``::1`` on each and forwarding on.  It knows only the two host subnets:
no pod routes, no BGP.  Host ``i`` sits on one segment with 10.<seg>.0.<10+i>/24 and
fd00:<seg>::<10+i>/64 and a route to the other segment's subnet via the router — and no
default route, so a pod packet to another node has no way out but the tunnel (or a
route the agent programs).  Every link of the segments has the same MTU (``mtu``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node_cluster"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import BIN, Cluster, Host, wait_for

from netns import Netns, NetnsPool, require_root

SEGMENTS = {"a": 1, "b": 2}
POOL4 = "10.244.0.0/16"
POOL6 = "fd00:244::/48"
DEVICE4 = "vxlan.calico"
DEVICE6 = "vxlan-v6.calico"
TORTIE_PROTOCOL = 81  # tortie's VXLAN routes (src/tortie/node/vxlan.py ROUTE_PROTOCOL)


def require() -> None:
    require_root()
    if not (BIN / "tortie").exists():
        pytest.skip(f"needs {BIN}/tortie (pip install -e .)")


def host4(seg: str, i: int) -> str:
    return f"10.{SEGMENTS[seg]}.0.{10 + i}"


def host6(seg: str, i: int) -> str:
    return f"fd00:{seg}::{10 + i}"


class SegmentedCluster(Cluster):
    """``segments[i]`` is host ``i+1``'s segment ("a" or "b")."""

    def __init__(
        self,
        pool: NetnsPool,
        tmp: Path,
        store_env: Mapping[str, str],
        segments: Sequence[str],
        mtu: int = 1500,
    ) -> None:
        self.pool = pool
        self.tmp = tmp
        self.store_env = dict(store_env)
        self.mtu = mtu
        self.segment: dict[str, str] = {}
        r = self.router = pool.new()
        r.ip("link", "set", "lo", "up")
        for seg, n in SEGMENTS.items():
            r.ip("link", "add", f"seg-{seg}", "mtu", str(mtu), "type", "bridge")
            r.ip("addr", "add", f"10.{n}.0.1/24", "dev", f"seg-{seg}")
            r.ip("addr", "add", f"fd00:{seg}::1/64", "dev", f"seg-{seg}", "nodad")
            r.ip("link", "set", f"seg-{seg}", "up")
        r.set_sysctl("net/ipv4/ip_forward", "1")
        r.set_sysctl("net/ipv6/conf/all/forwarding", "1")
        self.hosts: list[Host] = []
        for i, seg in enumerate(segments, start=1):
            self.hosts.append(self._segment_host(i, seg))
        self._check_underlay()

    def _check_underlay(self) -> None:
        """Every host reaches the router (and so every other host) before any agent runs."""
        for host in self.hosts:
            gateway = f"10.{SEGMENTS[self.segment[host.name]]}.0.1"
            wait_for(
                f"{host.name} to reach the router at {gateway}",
                partial(ping, host.ns, gateway, wait=1),
                timeout=5,
                detail=neighbour_table_usage,
            )

    def _segment_host(self, i: int, seg: str) -> Host:
        ns, r, mtu = self.pool.new(), self.router, str(self.mtu)
        other = next(s for s in SEGMENTS if s != seg)
        r.ip("link", "add", f"port{i}", "mtu", mtu, "type", "veth",
             "peer", "name", "eth0", "mtu", mtu, "netns", ns.name)  # fmt: skip
        r.ip("link", "set", f"port{i}", "master", f"seg-{seg}", "up")
        ns.ip("link", "set", "lo", "up")
        ns.ip("link", "set", "eth0", "up")
        ns.ip("addr", "add", f"{host4(seg, i)}/24", "dev", "eth0")
        ns.ip("addr", "add", f"{host6(seg, i)}/64", "dev", "eth0", "nodad")
        ns.ip("route", "add", f"10.{SEGMENTS[other]}.0.0/24", "via", f"10.{SEGMENTS[seg]}.0.1")
        ns.ip("-6", "route", "add", f"fd00:{other}::/64", "via", f"fd00:{seg}::1")
        run_dir = self.tmp / f"host-{i}"
        run_dir.mkdir(exist_ok=True)
        host = Host(i, f"host-{i}", ns, run_dir)
        self.segment[host.name] = seg
        return host

    def host_address(self, host: Host, version: int) -> str:
        seg = self.segment[host.name]
        return host4(seg, host.index) if version == 4 else host6(seg, host.index)

    def tortie(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """``tortie ARGS`` against the cluster's store, from the machine (no namespace)."""
        return subprocess.run(
            [str(BIN / "tortie"), *args],
            env={**os.environ, **self.store_env},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start_all(self, mode: str = "dual", **extra: str) -> None:
        for host in self.hosts:
            self.start_agent(host, mode, **extra)

    def wait_running(self, timeout: float = 40, hosts: Sequence[Host] | None = None) -> None:
        """Every agent (of ``hosts``) past its start-up (status file written), alive."""
        for host in self.hosts if hosts is None else hosts:
            wait_for(
                f"{host.name}: agent running",
                partial(self.running, host),
                timeout=timeout,
                detail=partial(self.log_tail, host),
            )

    def running(self, host: Host) -> bool:
        return self.agent_alive(host) and (host.run_dir / "agent.json").exists()

    def log_tail(self, host: Host) -> str:
        return self.agent_log(host)[-3000:]

    def agent_alive(self, host: Host) -> bool:
        return host.agent is not None and host.agent.poll() is None

    def node(self, name: str) -> dict[str, Any]:
        proc = self.tortie("get", "node", name, "-o", "json")
        assert proc.returncode == 0, proc.stderr
        doc: dict[str, Any] = json.loads(proc.stdout)
        return doc

    def pairs(self) -> list[tuple[Host, str, Host, str, str]]:
        """(from host, from pod, to host, to pod, address) for pods on different hosts."""
        pods = [(h, n, a) for h in self.hosts for n, (_ns, addrs) in h.pods.items() for a in addrs]
        out = []
        for h1 in self.hosts:
            for n1 in h1.pods:
                for h2, n2, addr in pods:
                    if h2 is not h1:
                        out.append((h1, n1, h2, n2, addr))
        return out


# ---------------------------------------------------------------------------- kernel state


def vxlan_routes(host: Host, version: int) -> dict[str, dict[str, Any]]:
    """tortie's VXLAN routes (protocol 81) by destination."""
    return {
        r["dst"]: r
        for r in host.ns.ip_json(f"-{version}", "route", "show", "proto", str(TORTIE_PROTOCOL))
    }


def neighbours(host: Host, device: str) -> dict[str, str]:
    """Permanent neighbour entries on ``device``: IP -> MAC ({} when no device)."""
    if device not in host.ns.link_names():
        return {}
    return {
        n["dst"]: n.get("lladdr", "")
        for n in host.ns.ip_json("neigh", "show", "dev", device, "nud", "permanent")
    }


def fdb(host: Host, device: str) -> dict[str, str]:
    """FDB entries with a destination on ``device``: MAC -> remote host address."""
    if device not in host.ns.link_names():
        return {}
    proc = host.ns.run("bridge", "-j", "fdb", "show", "dev", device)
    return {e["mac"]: e["dst"] for e in json.loads(proc.stdout or "[]") if "dst" in e}


def link(ns: Netns, ifname: str) -> dict[str, Any]:
    """``ip -d addr show dev IFNAME`` in ``ns``; fails the test when it is missing."""
    found = ns.link(ifname)
    assert found is not None, f"no {ifname} in {ns.name}"
    return found


def ping(src: Any, dst: str, size: int | None = None, df: bool = False, wait: int = 2) -> bool:
    argv = ["ping", "-c", "1", "-W", str(wait)]
    if ":" in dst:
        argv.append("-6")
    if size is not None:
        argv += ["-s", str(size)]
    if df:
        argv += ["-M", "do"]
    return bool(src.run(*argv, dst, check=False, timeout=10).returncode == 0)


def unreachable(cluster: SegmentedCluster, versions: Sequence[int], grace: float = 3) -> list[str]:
    """Pod pairs on different hosts (of the given families) that do not answer a ping
    within ``grace`` seconds of retrying; [] when every pod reaches every other."""
    failures = [
        (h1.pods[n1][0], addr, f"{n1}@{h1.name} -> {n2}@{h2.name} {addr}")
        for h1, n1, h2, n2, addr in cluster.pairs()
        if (6 if ":" in addr else 4) in versions
    ]
    failures = [f for f in failures if not ping(f[0], f[1])]
    deadline = time.monotonic() + grace
    while failures and time.monotonic() < deadline:
        time.sleep(0.25)
        failures = [f for f in failures if not ping(f[0], f[1])]
    return [f[2] for f in failures]


def bgp_established(host: Host, want: int) -> bool:
    """``want`` BGP sessions, all Established (``tortie node status``)."""
    out = host.tortie("node", "status", "-o", "json")
    if out.returncode != 0:
        return False
    sessions = json.loads(out.stdout)["sessions"]
    return len(sessions) == want and all(s["established"] for s in sessions)


def route_get(host: Host, address: str) -> dict[str, Any]:
    """The kernel's forwarding decision for ``address`` on ``host`` (``ip route get``);
    {} when there is none (no route)."""
    proc = subprocess.run(
        ["ip", "-n", host.ns.name, "-j", "route", "get", address],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    found: list[dict[str, Any]] = json.loads(proc.stdout) if proc.returncode == 0 else [{}]
    return found[0]


def bird_routes_in(host: Host, version: int, pool: str) -> list[str]:
    """Routes BIRD installed inside ``pool`` (its own blackholes left out)."""
    net = ipaddress.ip_network(pool)
    return [
        r["dst"]
        for r in host.routes(version)
        if r.get("protocol") == "bird"
        and r.get("type") != "blackhole"
        and r["dst"] != "default"
        and ipaddress.ip_network(r["dst"]).subnet_of(net)  # type: ignore[arg-type]
    ]


def set_pool_mode(cluster: SegmentedCluster, version: int, **modes: str) -> None:
    """Change the default pool of a family (``vxlanMode="Always"``) with get + apply."""
    name = f"default-ipv{version}-ippool"
    got = cluster.tortie("get", "ippool", name, "-o", "yaml")
    assert got.returncode == 0, got.stderr
    doc = yaml.safe_load(got.stdout)
    doc["spec"].update(modes)
    applied = cluster.tortie("apply", "-f", "-", stdin=yaml.safe_dump(doc))
    assert applied.returncode == 0, applied.stderr


def netns_processes(ns: Netns) -> dict[int, str]:
    """pid -> command name of every process living in the namespace ``ns``."""
    want = os.stat(ns.path).st_ino
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino != want:
                continue
            with open(f"/proc/{entry}/comm", encoding="utf-8") as fh:
                out[int(entry)] = fh.read().strip()
        except OSError:
            continue  # gone meanwhile
    return out


def df_ping(src: Netns, dst: str, size: int) -> tuple[bool, str]:
    """One don't-fragment ping of ``size`` payload bytes: (answered, ping's output)."""
    argv = ["ping", "-c", "1", "-W", "2", "-M", "do", "-s", str(size)]
    proc = src.run(*argv, *(["-6"] if ":" in dst else []), dst, check=False, timeout=10)
    return proc.returncode == 0, proc.stdout + proc.stderr


def neighbour_table_usage() -> str:
    """The machine-wide IPv4 neighbour table's fill: every namespace shares it, and when
    it is full (other tests' namespaces) no new neighbour resolves ("No buffer space")."""
    try:
        with open("/proc/net/stat/arp_cache", encoding="ascii") as fh:
            entries = int(fh.read().splitlines()[1].split()[0], 16)
        with open("/proc/sys/net/ipv4/neigh/default/gc_thresh3", encoding="ascii") as fh:
            limit = int(fh.read())
    except (OSError, ValueError, IndexError):
        return ""
    full = " - FULL: namespaces of other tests hold them" if entries >= limit else ""
    return f"machine-wide IPv4 neighbour entries: {entries} of gc_thresh3 {limit}{full}"
