"""Changes while the agents run: a new block appears on the peers within seconds, a killed
BIRD is restarted, a deleted node's routes disappear, FELIX_IPV6SUPPORT=false programs no
IPv6 routes."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import Cluster, ping, wait_for
from test_cluster_sqlite import _require, bring_up, established

from netns import NetnsPool


@pytest.fixture(scope="module")
def pool() -> Iterator[NetnsPool]:
    _require()
    with NetnsPool() as p:
        yield p


def block_of(cluster: Cluster, node: str, version: int) -> list[str]:
    proc = cluster.hosts[0].tortie(
        "ipam", "show", "--show-blocks", "-o", "json", env=cluster.store_env
    )
    assert proc.returncode == 0, proc.stderr
    return [
        b["cidr"]
        for p in json.loads(proc.stdout)["pools"]
        for b in p.get("blocks", [])
        if b.get("affinity") == f"host:{node}" and (":" in b["cidr"]) == (version == 6)
    ]


def test_blocks_bird_restart_and_node_delete(pool: NetnsPool, tmp_path: Path) -> None:
    store = {"DATASTORE_TYPE": "sqlite", "SQLITE_PATH": str(tmp_path / "tortie.db")}
    cluster = Cluster(pool, tmp_path, store)
    h1, h2, h3 = cluster.hosts
    try:
        bring_up(cluster, "dual")
        # a block newly claimed on host-1 appears on the others within seconds
        cluster.add_pod(h1, "p1", "dual")
        blocks = block_of(cluster, "host-1", 4) + block_of(cluster, "host-1", 6)
        assert len(blocks) == 2, blocks
        took = wait_for(
            "host-1's blocks on host-2 and host-3",
            lambda: all(set(blocks) <= h.bird_routes(4) | h.bird_routes(6) for h in (h2, h3)),
            timeout=10,
        )
        assert took < 5, f"route propagation took {took:.1f} s"
        cluster.add_pod(h3, "p3", "dual")
        wait_for("host-3's blocks on host-1", lambda: len(h1.bird_routes(4)) == 1, timeout=10)
        for addr in h3.pods["p3"][1]:
            assert ping(h1.pods["p1"][0], addr)

        # a killed BIRD is restarted by its agent and the sessions come back
        old = int((h2.run_dir / "bird.pid").read_text())
        os.kill(old, signal.SIGKILL)

        def restarted() -> bool:
            try:
                pid = int((h2.run_dir / "bird.pid").read_text())
            except (OSError, ValueError):
                return False
            return pid != old and established(h2, 4)

        wait_for(
            "host-2's BIRD restarted with its sessions",
            restarted,
            timeout=40,
            detail=lambda: cluster.agent_log(h2)[-2000:],
        )
        assert "restarting it" in cluster.agent_log(h2)

        # a deleted node's routes disappear from the others
        h3_blocks = block_of(cluster, "host-3", 4) + block_of(cluster, "host-3", 6)
        assert cluster.stop_agent(h3) == 0
        proc = h1.tortie("delete", "node", "host-3", env=store)
        assert proc.returncode == 0, proc.stderr
        wait_for(
            "host-3's routes gone from host-1 and host-2",
            lambda: (
                not any(set(h3_blocks) & (h.bird_routes(4) | h.bird_routes(6)) for h in (h1, h2))
            ),
            timeout=15,
        )
        assert block_of(cluster, "host-3", 4) == []
        show = h1.tortie("ipam", "show", f"--ip={h3.pods['p3'][1][0]}", env=store)
        assert "is not assigned" in show.stdout
        wait_for("host-1 down to one session per family", lambda: established(h1, 2), timeout=15)
    finally:
        cluster.close()


def test_ipv6_support_false_programs_no_ipv6_routes(pool: NetnsPool, tmp_path: Path) -> None:
    store = {"DATASTORE_TYPE": "sqlite", "SQLITE_PATH": str(tmp_path / "tortie.db")}
    cluster = Cluster(pool, tmp_path, store, size=2)
    h1, h2 = cluster.hosts
    try:
        bring_up(cluster, "dual", FELIX_IPV6SUPPORT="false", CALICO_IPV6POOL_CIDR="none")
        cluster.add_pod(h1, "a", "ipv4")
        cluster.add_pod(h2, "b", "ipv4")
        wait_for(
            "IPv4 routes", lambda: len(h1.bird_routes(4)) == 1 == len(h2.bird_routes(4)), timeout=15
        )
        assert ping(h1.pods["a"][0], h2.pods["b"][1][0])
        assert h1.bird_routes(6) == set() and h2.bird_routes(6) == set()
        conf = (h1.run_dir / "bird.cfg").read_text()
        assert "ipv6" not in conf.replace("IPv6", "")
    finally:
        cluster.close()
