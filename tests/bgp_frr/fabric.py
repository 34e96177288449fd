"""The nodes of tests/node_cluster/harness.py (agents + BIRD in host namespaces on one
bridge, pods through the real ``calico`` plugin) plus the network around them: a
top-of-rack FRR router on the same link (10.10.0.254, fd10::254, AS 64600) and an
outside host behind it (192.168.50.10, fd50::10) whose only way to the pods is the ToR.

The ToR announces the outside network to the nodes; with nothing else, the hosts have no
route to it (they have no default route).  Resources go in with the ``tortie`` CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node_cluster"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from frr import Frr, Neighbor
from harness import BIN, Cluster, Host, host_addr, ping, wait_for

from netns import Netns, NetnsPool

TOR4, TOR6, TOR_AS = "10.10.0.254", "fd10::254", 64600
OUTSIDE4, OUTSIDE6 = "192.168.50.10", "fd50::10"
OUTSIDE_NET4, OUTSIDE_NET6 = "192.168.50.0/24", "fd50::/64"


def doc(kind: str, name: str, spec: Mapping[str, Any], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": kind,
        "metadata": {"name": name, **meta},
        "spec": dict(spec),
    }


def tor_peers() -> list[dict[str, Any]]:
    """Calico's global peers (every node) with the ToR, one per family."""
    return [
        doc("BGPPeer", "tor-v4", {"peerIP": TOR4, "asNumber": TOR_AS}),
        doc("BGPPeer", "tor-v6", {"peerIP": TOR6, "asNumber": TOR_AS}),
    ]


class Fabric:
    def __init__(self, pool: NetnsPool, tmp: Path, size: int = 3) -> None:
        self.tmp = tmp
        self.store_env = {"DATASTORE_TYPE": "sqlite", "SQLITE_PATH": str(tmp / "tortie.db")}
        self.cluster = Cluster(pool, tmp, self.store_env, size=size)
        self.pool = pool
        self.tor_ns = pool.new()
        self.cluster.attach(self.tor_ns, TOR4, TOR6)
        self.outside = pool.new()
        self.outside.ip("link", "set", "lo", "up")
        self.tor_ns.ip(
            "link",
            "add",
            "to-out",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            self.outside.name,
        )
        self.tor_ns.ip("addr", "add", "192.168.50.1/24", "dev", "to-out")
        self.tor_ns.ip("addr", "add", "fd50::1/64", "dev", "to-out", "nodad")
        self.tor_ns.ip("link", "set", "to-out", "up")
        self.outside.ip("addr", "add", f"{OUTSIDE4}/24", "dev", "eth0")
        self.outside.ip("addr", "add", f"{OUTSIDE6}/64", "dev", "eth0", "nodad")
        self.outside.ip("link", "set", "eth0", "up")
        self.outside.ip("route", "add", "default", "via", "192.168.50.1")
        self.outside.ip("-6", "route", "add", "default", "via", "fd50::1")
        self.tor_ns.set_sysctl("net/ipv4/ip_forward", "1")
        self.tor_ns.set_sysctl("net/ipv6/conf/all/forwarding", "1")
        self.tor = self.router(
            self.tor_ns,
            "tor",
            TOR_AS,
            TOR4,
            [h.index for h in self.hosts],
            networks=(OUTSIDE_NET4, OUTSIDE_NET6),
        )

    @property
    def hosts(self) -> list[Host]:
        return self.cluster.hosts

    def router(
        self,
        ns: Netns,
        name: str,
        asn: int,
        router_id: str,
        host_indexes: Iterable[int],
        networks: Iterable[str] = (),
    ) -> Frr:
        """An FRR router in ``ns`` peering with the given hosts over both families (any AS
        but its own: per-node AS numbers need no change here)."""
        neighbors = [Neighbor(host_addr(i, v), "external") for i in host_indexes for v in (4, 6)]
        frr = Frr(ns, self.tmp / name, asn, router_id, neighbors, tuple(networks))
        frr.start()
        return frr

    @staticmethod
    def addresses(ns: Netns, ifname: str = "eth0") -> set[str]:
        """Every address of an interface, link-local included (IPv6 routes learned over
        a direct eBGP session go via the router's link-local address)."""
        link = ns.link(ifname) or {}
        return {a["local"] for a in link.get("addr_info", [])}

    # ------------------------------------------------------------------ CLI

    def tortie(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        import os

        return subprocess.run(
            [str(BIN / "tortie"), *args],
            input=stdin,
            env={**os.environ, **self.store_env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def apply(self, *docs: Mapping[str, Any]) -> None:
        proc = self.tortie("apply", "-f", "-", stdin=json.dumps(list(docs)))
        assert proc.returncode == 0, proc.stderr

    def bgp_resources(self, *docs: Mapping[str, Any]) -> None:
        """Make BGPPeers and BGPConfigurations exactly ``docs`` (others deleted)."""
        wanted = {(d["kind"], d["metadata"]["name"]) for d in docs}
        for kind, plural in (("BGPPeer", "bgppeers"), ("BGPConfiguration", "bgpconfigurations")):
            listed = json.loads(self.tortie("get", plural, "-o", "json").stdout)["items"]
            for item in listed:
                if (kind, item["metadata"]["name"]) not in wanted:
                    proc = self.tortie("delete", plural, item["metadata"]["name"])
                    assert proc.returncode == 0, proc.stderr
        if docs:
            self.apply(*docs)

    def node(self, host: Host) -> dict[str, Any]:
        proc = self.tortie("get", "node", host.name, "-o", "json")
        assert proc.returncode == 0, proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def set_node(
        self,
        host: Host,
        labels: Mapping[str, str] | None = None,
        as_number: int | None = None,
        cluster_id: str | None = None,
    ) -> None:
        """Labels, spec.bgp.asNumber, spec.bgp.routeReflectorClusterID of one node (None:
        removed), as a Calico user does with calicoctl/kubectl."""
        node = self.node(host)
        before = json.dumps(node, sort_keys=True)
        node["metadata"]["labels"] = dict(labels or {})
        if not node["metadata"]["labels"]:
            node["metadata"].pop("labels")
        bgp = node["spec"].setdefault("bgp", {})
        for key, value in (("asNumber", as_number), ("routeReflectorClusterID", cluster_id)):
            if value is None:
                bgp.pop(key, None)
            else:
                bgp[key] = value
        if json.dumps(node, sort_keys=True) != before:
            self.apply(node)

    def reset(self, *docs: Mapping[str, Any], nodes: Mapping[str, Mapping[str, Any]] = {}) -> None:
        """The whole BGP state of a test: every node's labels / asNumber / cluster id
        (``nodes``: host name -> keyword arguments of ``set_node``; others: none) and
        exactly the BGP resources ``docs``."""
        for host in self.hosts:
            self.set_node(host, **nodes.get(host.name, {}))
        self.bgp_resources(*docs)

    def birdc(self, host: Host, *command: str) -> str:
        proc = host.ns.run("birdc", "-s", str(host.run_dir / "bird.ctl"), *command, check=False)
        return proc.stdout

    # ------------------------------------------------------------------ observing

    def sessions(self, host: Host) -> list[dict[str, Any]]:
        out = host.tortie("node", "status", "-o", "json")
        if out.returncode != 0:
            return []
        sessions: list[dict[str, Any]] = json.loads(out.stdout)["sessions"]
        return sessions

    def established(self, host: Host) -> set[tuple[str, str]]:
        """(peer address, peer type) of the host's established sessions."""
        return {(s["peer"], s["peer_type"]) for s in self.sessions(host) if s["established"]}

    def wait_sessions(self, host: Host, want: set[tuple[str, str]], timeout: float = 30) -> None:
        """Until the host's established sessions are exactly ``want`` and none is down."""

        def ok() -> bool:
            sessions = self.sessions(host)
            up = {(s["peer"], s["peer_type"]) for s in sessions if s["established"]}
            return up == want and len(sessions) == len(want)

        wait_for(
            f"{host.name}: sessions {sorted(want)}",
            ok,
            timeout=timeout,
            detail=lambda: f"{self.sessions(host)}\n{self.cluster.agent_log(host)[-1500:]}",
        )

    def pods(self) -> list[tuple[Host, Netns, str]]:
        return [(h, ns, a) for h in self.hosts for ns, addrs in h.pods.values() for a in addrs]

    def unreachable(self, pairs: list[tuple[Netns, str]], within: float = 10) -> list[str]:
        """The (source, address) pairs whose ping still fails after ``within`` seconds."""
        failing = list(pairs)
        deadline = time.monotonic() + within
        while True:
            failing = [(ns, a) for ns, a in failing if not ping(ns, a)]
            if not failing or time.monotonic() > deadline:
                return [f"{ns.name} -> {a}" for ns, a in failing]
            time.sleep(0.5)

    def pod_matrix(self) -> list[tuple[Netns, str]]:
        """Every pod to every address of a pod on another host."""
        return [
            (ns1, a2)
            for h1 in self.hosts
            for ns1, _ in h1.pods.values()
            for h2, _ns2, a2 in self.pods()
            if h1 is not h2
        ]

    def close(self) -> None:
        self.cluster.close()
        self.tor.stop()
