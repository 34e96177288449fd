"""The compiled client against the real node service (``CniService`` with a SQLite
store): ADD and DEL answered by the service, the same answers as the Python thin
client for a huge payload, garbage stdin and a service that went away."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cni"))
from cclient_helpers import cni_error, install, run
from cni_helpers import add_pool, cni_env, netconf

from tortie.cni import thin
from tortie.cni.errors import DECODE_FAILURE
from tortie.cni.service import MAX_REQUEST, CniService, Stores
from tortie.datastore.sqlite import SqliteDatastore


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "store.db")
    store = SqliteDatastore(path)
    add_pool(store, "v4", "10.93.0.0/16")
    add_pool(store, "v6", "fd00:93::/48")
    store.close()
    return path


@pytest.fixture
def service(sock_dir: Path, db: str) -> Iterator[CniService]:
    svc = CniService(str(sock_dir / "cni.sock"), Stores(None))
    svc.start()
    yield svc
    svc.stop()
    svc.stores.close()


def python_thin(svc: CniService, command: str, container: str, stdin: bytes) -> tuple[int, bytes]:
    env = {k.encode(): v.encode() for k, v in cni_env(command, container=container).items()}
    answer = thin.call(svc.path, b"ipam", env, stdin)
    assert answer is not None
    return answer


def test_add_and_del_through_the_service(
    client: Path, tmp_path: Path, db: str, service: CniService
) -> None:
    bin_dir = install(client, tmp_path / "bin", socket_path=service.path)
    conf = json.dumps(netconf(sqlite_path=db, ipam={"assign_ipv6": "true"})).encode()
    before = service.served
    proc = run(bin_dir / "calico-ipam", conf, cni_env("ADD", container="cc1"))
    assert proc.returncode == 0, proc
    ips = sorted(ip["address"] for ip in json.loads(proc.stdout)["ips"])
    assert ips[0].startswith("10.93.") and ips[1].startswith("fd00:93:"), ips
    assert service.served == before + 1  # the service ran it, not a fallback
    proc = run(bin_dir / "calico-ipam", conf, cni_env("DEL", container="cc1"))
    assert (proc.returncode, proc.stdout) == (0, b""), proc
    # The same container again gets an address: DEL released it through the service.
    assert run(bin_dir / "calico-ipam", conf, cni_env("ADD", container="cc2")).returncode == 0
    assert service.served == before + 3


@pytest.mark.parametrize(
    "stdin",
    [b"\xff\xfe{not json", b'{"cniVersion": "1.1.0", "name": ', b"z" * (2 * MAX_REQUEST)],
    ids=["binary", "cut json", "2 MiB"],
)
def test_bad_input_gets_the_python_thin_clients_answer(
    client: Path, tmp_path: Path, service: CniService, stdin: bytes
) -> None:
    bin_dir = install(client, tmp_path / "bin", socket_path=service.path)
    proc = run(bin_dir / "calico-ipam", stdin, cni_env("ADD", container="bad"))
    doc = cni_error(proc)
    code, out = python_thin(service, "ADD", "bad", stdin)
    assert (1, doc) == (code, json.loads(out))
    assert doc["code"] == DECODE_FAILURE


def test_a_stopped_service_leaves_the_plugin_running_here(
    client: Path, tmp_path: Path, db: str, sock_dir: Path
) -> None:
    svc = CniService(str(sock_dir / "gone.sock"), Stores(None))
    svc.start()
    svc.stop()
    svc.stores.close()
    bin_dir = install(client, tmp_path / "bin", socket_path=svc.path)
    conf = json.dumps(netconf(sqlite_path=db)).encode()
    proc = run(bin_dir / "calico-ipam", conf, cni_env("ADD", container="alone"))
    assert proc.returncode == 0, proc
    assert json.loads(proc.stdout)["ips"][0]["address"].startswith("10.93.")
