"""A session-wide single etcd member for the overlay tests (skips without etcd)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from etcd_cluster import EtcdCluster, require_etcd


@pytest.fixture(scope="session")
def etcd_single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    require_etcd()
    with EtcdCluster(tmp_path_factory.mktemp("etcd-overlay"), size=1) as cluster:
        yield cluster
