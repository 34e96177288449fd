"""Fixtures for the datastore tests: one backend factory per datastore kind.

etcd runs as real servers started by ``tests/etcd_cluster.py`` (skipped, with the reason
printed, only when the etcd binary is missing).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for etcd_cluster

from etcd_cluster import EtcdCluster, require_etcd
from tortie.datastore.backends import open_datastore
from tortie.datastore.base import Datastore
from tortie.datastore.config import DatastoreSettings
from tortie.datastore.memory import MemoryDatastore


@dataclass
class Backend:
    """How to open (more handles on) one store: ``settings`` is None for memory."""

    kind: str
    settings: DatastoreSettings | None
    open: Callable[[], Datastore]


@pytest.fixture(scope="session")
def etcd_single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One etcd member for the whole session (tests wipe it before use)."""
    require_etcd()
    with EtcdCluster(tmp_path_factory.mktemp("etcd-single"), size=1) as cluster:
        yield cluster


@pytest.fixture(params=["memory", "sqlite", "etcd"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    kind: str = request.param
    if kind == "memory":
        shared = MemoryDatastore()
        return Backend(kind, None, lambda: shared)
    if kind == "sqlite":
        settings = DatastoreSettings(datastore_type="sqlite", sqlite_path=str(tmp_path / "t.db"))
    else:
        cluster: EtcdCluster = request.getfixturevalue("etcd_single")
        cluster.wipe()
        settings = DatastoreSettings(datastore_type="etcdv3", etcd_endpoints=cluster.endpoints)
    return Backend(kind, settings, lambda: open_datastore(settings))


@pytest.fixture
def store(backend: Backend) -> Iterator[Datastore]:
    ds = backend.open()
    yield ds
    ds.close()
