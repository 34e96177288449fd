"""The same three hosts with their agents on a 3-member etcd (members on the link):
every pod reaches every pod on the other hosts over both families, and a new block
appears on the peers by etcd watch within seconds."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etcd_ns import EtcdOnLink
from harness import Cluster, wait_for
from test_cluster_sqlite import _require, bring_up, learned_at_least, ping_matrix

from netns import NetnsPool


@pytest.fixture(scope="module")
def pool() -> Iterator[NetnsPool]:
    _require()
    if shutil.which("etcd") is None and not Path("/usr/bin/etcd").exists():
        pytest.skip("needs etcd (Debian etcd-server)")
    with NetnsPool() as p:
        yield p


@pytest.mark.parametrize("mode", ["dual", "ipv6"])
def test_pods_reach_each_other_on_etcd(pool: NetnsPool, tmp_path: Path, mode: str) -> None:
    cluster = Cluster(pool, tmp_path, {})
    etcd = EtcdOnLink(cluster, tmp_path / "etcd")
    cluster.store_env = {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": etcd.endpoints}
    try:
        bring_up(cluster, mode)
        for host in cluster.hosts:
            cluster.add_pod(host, f"{host.name}-a", mode)
        versions = [4, 6] if mode == "dual" else [6]
        for host in cluster.hosts:
            for v in versions:
                took = wait_for(
                    f"{host.name}: IPv{v} routes to both peers' blocks",
                    partial(learned_at_least, host, v, 2),
                    timeout=15,
                )
                assert took < 10
        assert ping_matrix(cluster, versions) == []
    finally:
        cluster.close()
        etcd.stop()
