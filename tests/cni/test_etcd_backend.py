"""The plugin process against a real etcd (skipped when etcd is not installed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cni_helpers import add_pool, allocated, netconf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (shared etcd helper)
from etcd_cluster import EtcdCluster, require_etcd
from tortie.datastore.backends import open_datastore
from tortie.datastore.config import DatastoreSettings

PLUGIN = [sys.executable, "-m", "tortie.cni.ipam_main"]


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    require_etcd()
    with EtcdCluster(tmp_path / "etcd") as cluster:
        yield cluster


def test_add_del_on_etcd(etcd: EtcdCluster) -> None:
    endpoints = ",".join(etcd.endpoints)
    store = open_datastore(DatastoreSettings("etcdv3", etcd_endpoints=tuple(etcd.endpoints)))
    add_pool(store, "pool4", "10.93.0.0/24")
    add_pool(store, "pool6", "fd00:93::/120")
    conf = json.dumps(
        netconf(ipam={"assign_ipv6": "true"}, datastore_type="etcdv3", etcd_endpoints=endpoints)
    ).encode()
    base = {"PATH": os.environ.get("PATH", ""), "CNI_NETNS": "/x", "CNI_IFNAME": "eth0"}
    out = subprocess.run(
        PLUGIN,
        input=conf,
        env={**base, "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "e1"},
        capture_output=True,
    )
    assert out.returncode == 0, out
    ips = [ip["address"] for ip in json.loads(out.stdout)["ips"]]
    assert ips[0].startswith("10.93.0.") and ips[1].startswith("fd00:93::")
    assert set(allocated(store).values()) == {"net1.e1"}
    # endpoints from the environment (ETCD_ENDPOINTS / DATASTORE_TYPE) work too
    conf_env = json.dumps(netconf()).encode()
    env = {**base, "DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": endpoints}
    for _ in range(2):
        out = subprocess.run(
            PLUGIN,
            input=conf_env,
            env={**env, "CNI_COMMAND": "DEL", "CNI_CONTAINERID": "e1"},
            capture_output=True,
        )
        assert (out.returncode, out.stdout) == (0, b"")
    assert allocated(store) == {}
    store.close()
