"""Three hosts on one link, each with ``tortie node run`` and BIRD, one SQLite file:
pods on different hosts reach each other over every enabled family, hosts have no
default route, blocks and nodes that come and go show up in the kernels within seconds."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import BIN, Cluster, Host, ping, wait_for

from netns import Netns, NetnsPool, require_root


def _require() -> None:
    require_root()
    for tool in ("bird", "birdc"):
        if not any(os.access(f"{d}/{tool}", os.X_OK) for d in ("/usr/sbin", "/usr/bin", "/sbin")):
            pytest.skip(f"needs BIRD 2 ({tool} not found): apt-get install bird2")
    if not (BIN / "tortie").exists():
        pytest.skip(f"{BIN}/tortie is not installed (pip install -e .)")


@pytest.fixture(scope="module")
def pool() -> Iterator[NetnsPool]:
    _require()
    with NetnsPool() as p:
        yield p


def learned_at_least(host: Host, version: int, count: int) -> bool:
    return len(host.bird_routes(version)) >= count


def families(mode: str) -> list[int]:
    return {"ipv4": [4], "ipv6": [6], "dual": [4, 6]}[mode]


def established(host: Host, want: int) -> bool:
    out = host.tortie("node", "status", "-o", "json")
    if out.returncode != 0:
        return False
    import json

    sessions = json.loads(out.stdout)["sessions"]
    return len(sessions) == want and all(s["established"] for s in sessions)


def bring_up(cluster: Cluster, mode: str, **extra: str) -> None:
    for host in cluster.hosts:
        cluster.start_agent(host, mode, **extra)
    fams = [4] if extra.get("FELIX_IPV6SUPPORT") == "false" else families(mode)
    sessions = (len(cluster.hosts) - 1) * len(fams)
    for host in cluster.hosts:
        wait_for(
            f"{host.name}: {sessions} BGP sessions established",
            partial(established, host, sessions),
            timeout=40,
            detail=partial(cluster.agent_log, host),
        )


def ping_matrix(cluster: Cluster, versions: list[int]) -> list[str]:
    failures = []
    pods = [(h, name, ns, addrs) for h in cluster.hosts for name, (ns, addrs) in h.pods.items()]
    for (h1, n1, ns1, _a1), (h2, n2, _ns2, a2) in itertools.permutations(pods, 2):
        if h1 is h2:
            continue
        for addr in a2:
            version = 6 if ":" in addr else 4
            if version in versions and not ping(ns1, addr):
                failures.append((ns1, addr, f"{n1}@{h1.name} -> {n2}@{h2.name} {addr}"))
    # Routes in every kernel is not quite "converged": pods added within a second of
    # each other (the node service makes an ADD ~10 ms) can miss the first ping for a
    # few hundred ms.  A pair must answer within 3 s.
    deadline = time.monotonic() + 3
    while failures and time.monotonic() < deadline:
        time.sleep(0.25)
        failures = [f for f in failures if not ping(f[0], f[1])]
    return [f[2] for f in failures]


RECEIVE = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET, "
    "socket.SOCK_DGRAM)\n"
    "s.bind((sys.argv[1], 7001)); s.settimeout(10); print('ready', flush=True)\n"
    "print(s.recvfrom(100)[1][0], flush=True)\n"
)
SEND = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET, "
    "socket.SOCK_DGRAM)\n"
    "s.sendto(b'x', (sys.argv[1], 7001))\n"
)


def source_seen(src: Netns, dst: Netns, address: str) -> str:
    """The source address a datagram from ``src`` to ``address`` (in ``dst``) arrives with."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", dst.name, sys.executable, "-c", RECEIVE, address],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        src.run(sys.executable, "-c", SEND, address)
        return server.stdout.readline().strip()
    finally:
        server.kill()
        server.communicate()


@pytest.mark.parametrize("mode", ["dual", "ipv4", "ipv6"])
def test_pods_on_every_host_reach_each_other(pool: NetnsPool, tmp_path: Path, mode: str) -> None:
    store = {"DATASTORE_TYPE": "sqlite", "SQLITE_PATH": str(tmp_path / "tortie.db")}
    cluster = Cluster(pool, tmp_path, store)
    try:
        bring_up(cluster, mode)
        for host in cluster.hosts:
            assert not host.routes(4) or all(r["dst"] != "default" for r in host.routes(4))
            cluster.add_pod(host, f"{host.name}-a", mode)
        versions = families(mode)
        for host in cluster.hosts:  # every other host's block is in this host's kernel
            for v in versions:
                wait_for(
                    f"{host.name}: IPv{v} routes to both peers' blocks",
                    partial(learned_at_least, host, v, 2),
                    timeout=20,
                    detail=partial(cluster.agent_log, host),
                )
            assert all(r["dst"] != "default" for r in host.routes(4) + host.routes(6))
        assert ping_matrix(cluster, versions) == []
        if mode == "dual":
            # The default IPv4 pool has natOutgoing (IPv6's not, as Calico): the agents
            # program it, and pod-to-pod traffic across nodes still keeps its source.
            tables = cluster.hosts[0].ns.run("nft", "list", "tables", check=False).stdout
            assert "table ip tortie" in tables and "ip6 tortie" not in tables, tables
            (ns1, addrs1), (ns2, addrs2) = (next(iter(h.pods.values())) for h in cluster.hosts[:2])
            for a1, a2 in zip(addrs1, addrs2, strict=True):
                assert source_seen(ns1, ns2, a2) == a1
        status = cluster.hosts[0].tortie("node", "status")
        assert status.returncode == 0 and "Established" in status.stdout
        ready = cluster.hosts[0].tortie("node", "health", "--ready")
        assert ready.returncode == 0, ready.stderr
    finally:
        cluster.close()
    for host in cluster.hosts:  # SIGTERM leaves no BIRD behind
        assert not (host.run_dir / "bird.pid").exists()
        assert not (host.run_dir / "agent.pid").exists()
