"""A user outgrows one machine: copy the embedded SQLite store into etcd, key for key,
and keep allocating there.  Also the CLI's etcd settings: environment and --config file.

Runs a real etcd member on loopback (skipped, with the reason printed, only when the etcd
binary is missing).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for etcd_cluster

from etcd_cluster import EtcdCluster, require_etcd
from tortie.cli.main import main
from tortie.datastore.backends import open_datastore
from tortie.datastore.config import DatastoreSettings
from tortie.datastore.sqlite import SqliteDatastore
from tortie.ipam.check import check

POOLS = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool-v4}
spec: {cidr: 10.20.0.0/16, blockSize: 26}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool-v6}
spec: {cidr: "fd20::/112", blockSize: 122}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node-1, labels: {zone: a}}
spec: {bgp: {ipv4Address: 192.0.2.10/24}}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: node--1-k8s-web-eth0, namespace: default}
spec: {orchestrator: k8s, node: node-1, pod: web, endpoint: eth0, containerID: c1,
       ipNetworks: [10.20.99.1/32], interfaceName: cali0123456789a}
"""


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    require_etcd()
    with EtcdCluster(tmp_path_factory.mktemp("etcd-migrate"), size=1) as cluster:
        yield cluster


@pytest.fixture
def etcd_env(etcd: EtcdCluster, monkeypatch: pytest.MonkeyPatch) -> DatastoreSettings:
    etcd.wipe()
    monkeypatch.setenv("DATASTORE_TYPE", "etcdv3")
    monkeypatch.setenv("ETCD_ENDPOINTS", ",".join(etcd.endpoints))
    monkeypatch.delenv("SQLITE_PATH", raising=False)
    return DatastoreSettings(datastore_type="etcdv3", etcd_endpoints=etcd.endpoints)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def sqlite_cluster(
    path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small single-machine cluster: pools, a node, an endpoint, allocations, config."""
    with monkeypatch.context() as m:
        m.setenv("DATASTORE_TYPE", "sqlite")
        m.setenv("SQLITE_PATH", str(path))
        (path.parent / "res.yaml").write_text(POOLS)
        assert run(["apply", "-f", str(path.parent / "res.yaml")], capsys)[0] == 0
        assert (
            run(
                [
                    "ipam",
                    "assign",
                    "--handle=k8s-pod-network.c1",
                    "--node=node-1",
                    "--ip=10.20.99.1",
                ],
                capsys,
            )[0]
            == 0
        )
        for i in range(5):
            code, _, err = run(
                [
                    "ipam",
                    "assign",
                    f"--handle=h{i}",
                    f"--node=node-{i % 2 + 1}",
                    "--ipv4=2",
                    "--ipv6=1",
                ],
                capsys,
            )
            assert code == 0, err
        assert run(["ipam", "configure", "--strictaffinity=true"], capsys)[0] == 0


def test_copy_from_sqlite_to_etcd_preserves_everything(
    tmp_path: Path,
    etcd_env: DatastoreSettings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = tmp_path / "tortie.db"
    sqlite_cluster(db, capsys, monkeypatch)
    source = SqliteDatastore(str(db))
    before = {kv.key: kv.value for kv in source.list("/calico/")}
    source.close()
    kinds = {k.split("/")[4] if k.startswith("/calico/ipam") else k.split("/")[5] for k in before}
    assert {
        "assignment",
        "host",
        "handle",
        "config",
        "ippools",
        "nodes",
        "workloadendpoints",
    } <= kinds

    code, out, err = run(["datastore", "migrate", "copy", "--from-sqlite", str(db)], capsys)
    assert code == 0, err
    assert f"Copied {len(before)} keys" in out

    target = open_datastore(etcd_env)
    try:
        after = {kv.key: kv.value for kv in target.list("/calico/")}
        assert after == before
        assert check(target).problem_count == 0
    finally:
        target.close()

    # Allocation goes on in etcd with the copied state: no address is handed out twice.
    code, out, _ = run(
        ["ipam", "assign", "--handle=new", "--node=node-3", "--ipv4=3", "--ipv6=3", "-o", "json"],
        capsys,
    )
    assert code == 0
    fresh = json.loads(out)
    held = []
    for value in before.values():
        doc = json.loads(value)
        if "allocations" in doc:
            net = doc["cidr"]
            held += [(net, i) for i, a in enumerate(doc["allocations"]) if a is not None]
    assert len(fresh["ipv4"]) == 3 and len(fresh["ipv6"]) == 3
    code, out, _ = run(["ipam", "show", "-o", "json"], capsys)
    in_use = sum(p["inUse"] for p in json.loads(out)["pools"])
    assert in_use == len(held) + 6
    code, out, _ = run(["ipam", "show", "--show-configuration", "-o", "json"], capsys)
    assert json.loads(out)["strictAffinity"] is True

    # A second copy would merge two clusters: refused, nothing written.
    code, _, err = run(["datastore", "migrate", "copy", "--from-sqlite", str(db)], capsys)
    assert code == 2 and "import only into an empty datastore" in err


def test_export_then_import_into_etcd(
    tmp_path: Path,
    etcd_env: DatastoreSettings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = tmp_path / "tortie.db"
    sqlite_cluster(db, capsys, monkeypatch)
    export = tmp_path / "export.json"
    with monkeypatch.context() as m:
        m.setenv("DATASTORE_TYPE", "sqlite")
        m.setenv("SQLITE_PATH", str(db))
        assert run(["datastore", "migrate", "export", str(export)], capsys)[0] == 0
    count = len(json.loads(export.read_text())["keys"])
    code, out, err = run(["datastore", "migrate", "import", str(export)], capsys)
    assert code == 0, err
    assert f"Imported {count} keys into etcd at" in out
    code, out, _ = run(["get", "ippools", "-o", "json"], capsys)
    assert [i["metadata"]["name"] for i in json.loads(out)["items"]] == ["pool-v4", "pool-v6"]


def test_a_broken_export_writes_nothing(
    tmp_path: Path, etcd_env: DatastoreSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "format": "tortie-datastore-export/v1",
                "keys": [
                    {"key": "/calico/resources/v3/projectcalico.org/ippools/a", "value": "{}"},
                    {"key": "/etc/passwd", "value": "x"},
                ],
            }
        )
    )
    code, _, err = run(["datastore", "migrate", "import", str(bad)], capsys)
    assert code == 2 and "outside /calico/" in err and "\n" not in err.strip()
    store = open_datastore(etcd_env)
    try:
        assert store.list("/calico/") == []
    finally:
        store.close()


def test_config_file_selects_etcd(
    tmp_path: Path,
    etcd: EtcdCluster,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    etcd.wipe()
    monkeypatch.delenv("DATASTORE_TYPE", raising=False)
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "unused.db"))
    cfg = tmp_path / "calicoctl.cfg"
    cfg.write_text(
        "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata: {}\n"
        f"spec:\n  datastoreType: etcdv3\n  etcdEndpoints: {','.join(etcd.endpoints)}\n"
    )
    (tmp_path / "pool.yaml").write_text(POOLS.split("---")[0])
    assert run(["--config", str(cfg), "apply", "-f", str(tmp_path / "pool.yaml")], capsys)[0] == 0
    code, out, _ = run(
        ["--config", str(cfg), "ipam", "assign", "--handle=a", "--node=n1", "-o", "json"], capsys
    )
    assert code == 0 and json.loads(out)["ipv4"][0].startswith("10.20.")
    assert not (tmp_path / "unused.db").exists()


def test_unreachable_etcd_is_one_line_and_hides_the_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATASTORE_TYPE", "etcdv3")
    monkeypatch.setenv("ETCD_ENDPOINTS", "http://127.0.0.1:9")
    monkeypatch.setenv("ETCD_USERNAME", "root")
    monkeypatch.setenv("ETCD_PASSWORD", "s3cr3t-pw")
    code, out, err = run(["get", "ippools"], capsys)
    assert code == 1
    assert "s3cr3t-pw" not in out + err
    assert err.count("\n") == 1 and "http://127.0.0.1:9" in err and "ETCD_ENDPOINTS" in err
