"""Fixtures for the cluster tests: real etcd clusters (3 members on loopback) and the
``calico-ipam`` launcher.  Skipped, with the reason printed, only when etcd is missing."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_harness import make_plugin

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for etcd_cluster

from etcd_cluster import EtcdCluster, require_etcd  # type: ignore[import-not-found, unused-ignore]
from tortie.datastore.config import DatastoreSettings
from tortie.datastore.etcd import EtcdDatastore


@pytest.fixture
def cluster3(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A fresh 3-member etcd cluster for one test, stopped by PID afterwards."""
    require_etcd()
    with EtcdCluster(tmp_path / "etcd", size=3) as cluster:
        yield cluster


@pytest.fixture
def plugin(tmp_path: Path) -> str:
    return make_plugin(tmp_path / "bin")


def open_store(endpoints: tuple[str, ...]) -> EtcdDatastore:
    return EtcdDatastore(DatastoreSettings(datastore_type="etcdv3", etcd_endpoints=endpoints))


@pytest.fixture
def store3(cluster3: EtcdCluster) -> Iterator[EtcdDatastore]:
    """A client on the 3-member cluster (all endpoints)."""
    store = open_store(tuple(cluster3.endpoints))
    yield store
    store.close()
