"""The node service and the thin plugin: wire format, socket choice, metrics, ordering of
calls for one container, the launcher's use of the service and its fallback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cni"))
from cni_helpers import add_pool, cni_env, netconf

from tortie.cni import thin
from tortie.cni.calls import CallQueue, QueuedCall
from tortie.cni.install import write_executables
from tortie.cni.service import BadRequest, CniService, Stores, parse_request
from tortie.datastore.sqlite import SqliteDatastore
from tortie.node.agent import cni_observer
from tortie.node.metrics import AgentMetrics


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "store.db")
    store = SqliteDatastore(path)
    add_pool(store, "v4", "10.90.0.0/16")
    add_pool(store, "v6", "fd00:90::/48")
    store.close()
    return path


@pytest.fixture
def service(tmp_path: Path, db: str) -> Iterator[CniService]:
    metrics = AgentMetrics()
    svc = CniService(str(tmp_path / "cni.sock"), Stores(None), observe=cni_observer(metrics))
    svc.metrics = metrics  # type: ignore[attr-defined]  # for the metrics test
    svc.start()
    yield svc
    assert svc.stop()
    svc.stores.close()


def send(svc: CniService, command: str, container: str, conf: dict[str, Any]) -> tuple[int, Any]:
    env = {k.encode(): v.encode() for k, v in cni_env(command, container=container).items()}
    answer = thin.call(svc.path, b"ipam", env, json.dumps(conf).encode())
    assert answer is not None
    code, out = answer
    return code, json.loads(out) if out else None


def test_wire_format_round_trip() -> None:
    env = {b"CNI_COMMAND": b"ADD", b"WEIRD": b"a=b=c", b"EMPTY": b""}
    data = thin.encode_request(b"main", env, b'{"x": "\x00"}')
    plugin, got_env, stdin = parse_request(data)
    assert plugin.tag == "calico" and stdin == b'{"x": "\x00"}'
    assert got_env == {"CNI_COMMAND": "ADD", "WEIRD": "a=b=c", "EMPTY": ""}
    assert thin.decode_answer(thin.encode_answer(1, b"out\nput")) == (1, b"out\nput")
    assert thin.decode_answer(thin.encode_answer(0, b"abc")[:-1]) is None  # cut short
    assert thin.decode_answer(b"") is None and thin.decode_answer(b"garbage") is None
    for bad in (b"GET / HTTP/1.0\r\n", thin.MAGIC + b"nope\n\0", thin.MAGIC + b"ipam\nNOEQ\0\0"):
        with pytest.raises(BadRequest):
            parse_request(bad)
    with pytest.raises(BadRequest, match="cut short"):
        parse_request(thin.MAGIC + b"ipam\nA=1\0")


def test_socket_choice() -> None:
    assert thin.socket_path({}, "/d.sock") == "/d.sock"
    assert thin.socket_path({b"TORTIE_RUN_DIR": b"/run/x"}, "/d.sock") == "/run/x/cni.sock"
    explicit = {b"TORTIE_RUN_DIR": b"/run/x", b"TORTIE_CNI_SOCKET": b"/s"}
    assert thin.socket_path(explicit, "/d.sock") == "/s"
    assert thin.socket_path({b"TORTIE_CNI_SOCKET": b"none"}, "/d.sock") is None
    assert thin.socket_path({b"TORTIE_CNI_SOCKET": b""}, "/d.sock") is None


def test_try_again_is_valid_cni_error_json() -> None:
    code, out = thin.try_again(b'{"cniVersion" : "0.4.0", "name": "n"}', 'died "badly"')
    doc = json.loads(out)
    assert code == 1 and doc["code"] == 11 and doc["cniVersion"] == "0.4.0"
    assert doc["msg"] == 'died "badly"'
    assert json.loads(thin.try_again(b"garbage", "x")[1])["cniVersion"] == "1.1.0"


def test_no_service_means_none() -> None:
    assert thin.call("/nonexistent/cni.sock", b"ipam", {}, b"") is None


def test_calls_are_counted_by_verb_and_result_and_timed(service: CniService, db: str) -> None:
    conf = netconf(sqlite_path=db, ipam={"assign_ipv6": "true"})
    for i in range(3):
        code, out = send(service, "ADD", f"c{i}", conf)
        assert code == 0 and len(out["ips"]) == 2
    code, _ = send(service, "DEL", "c0", conf)
    assert code == 0
    code, out = send(service, "ADD", "c9", {**conf, "cniVersion": "9.9.9"})
    assert code == 1 and out["code"] == 1  # incompatible version
    text = generate_latest(service.metrics.registry).decode()  # type: ignore[attr-defined]
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    assert got[("tortie_cni_requests_total", (("result", "ok"), ("verb", "ADD")))] == 3
    assert got[("tortie_cni_requests_total", (("result", "ok"), ("verb", "DEL")))] == 1
    assert got[("tortie_cni_requests_total", (("result", "error"), ("verb", "ADD")))] == 1
    assert got[("tortie_cni_request_duration_seconds_count", (("verb", "ADD"),))] == 4
    assert got[("tortie_cni_request_duration_seconds_sum", (("verb", "ADD"),))] > 0


def test_calls_for_one_container_run_in_order_one_at_a_time() -> None:
    """200 calls for 4 containers from 8 submitting threads on 8 workers: each
    container's calls run in the order they were queued, never two at once."""
    queue = CallQueue(8)
    ran: dict[str, list[int]] = {f"c{i}": [] for i in range(4)}
    busy: set[str] = set()
    overlap: list[str] = []
    guard = threading.Lock()
    submitted: dict[str, list[int]] = {k: [] for k in ran}

    def job(cid: str, n: int) -> QueuedCall:
        def run() -> None:
            with guard:
                if cid in busy:
                    overlap.append(cid)
                busy.add(cid)
            time.sleep(0.001)
            with guard:
                busy.discard(cid)
                ran[cid].append(n)

        return QueuedCall(cid, run, lambda: None, lambda: False, f"call {n}")

    def submitter(t: int) -> None:
        for n in range(25):
            cid = f"c{(t + n) % 4}"
            with guard:  # queue and record under one lock: the record is the queue order
                submitted[cid].append(t * 100 + n)
                assert queue.submit(job(cid, t * 100 + n))

    threads = [threading.Thread(target=submitter, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert queue.close(30.0) == 0
    assert not overlap
    assert ran == submitted


def test_launcher_uses_the_service_and_falls_back_without_it(
    tmp_path: Path, db: str, service: CniService
) -> None:
    bin_dir = tmp_path / "bin"
    write_executables(str(bin_dir), service.path)
    conf = json.dumps(netconf(sqlite_path=db)).encode()

    def run(container: str, **extra: str) -> subprocess.CompletedProcess[bytes]:
        env = {**cni_env("ADD", container=container), **extra}
        return subprocess.run(
            [bin_dir / "calico-ipam"], input=conf, env=env, capture_output=True, timeout=60
        )

    before = service.served
    proc = run("via-service")
    assert proc.returncode == 0, proc
    assert service.served == before + 1
    proc = run("forced-local", TORTIE_CNI_SOCKET="none")
    assert proc.returncode == 0, proc
    assert service.served == before + 1  # ran in the plugin's own process
    proc = run("no-service", TORTIE_CNI_SOCKET=str(tmp_path / "absent.sock"))
    assert proc.returncode == 0, proc
    addrs = {json.loads(p.stdout)["ips"][0]["address"] for p in (run("a"), run("b"), run("c"))}
    assert len(addrs) == 3


def test_socket_is_private_and_removed_on_stop(tmp_path: Path) -> None:
    svc = CniService(str(tmp_path / "s.sock"), Stores(None))
    svc.start()
    try:
        assert os.stat(svc.path).st_mode & 0o777 == 0o600
        second = CniService(svc.path, Stores(None))
        with pytest.raises(Exception, match="already answers"):
            second.start()
    finally:
        svc.stop()
    assert not os.path.exists(svc.path)


def test_thin_plugin_imports_only_what_it_needs(
    tmp_path: Path, db: str, service: CniService
) -> None:
    """With a service answering, the plugin process loads tortie.cni.thin and _socket and
    nothing else beyond the interpreter's own start-up (-X importtime lists every import)."""
    bin_dir = tmp_path / "bin"
    write_executables(str(bin_dir), service.path)
    launcher = bin_dir / "calico-ipam"
    interpreter = launcher.read_text().splitlines()[0][2:].split()[0]
    env = {**cni_env("ADD", container="imports")}
    proc = subprocess.run(
        [interpreter, "-IS", "-X", "importtime", str(launcher)],
        input=json.dumps(netconf(sqlite_path=db)).encode(),
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc
    imported = {
        line.split("|")[-1].strip()
        for line in proc.stderr.decode().splitlines()
        if line.startswith("import time:") and "|" in line and "imported package" not in line
    }
    bare = subprocess.run(
        [interpreter, "-IS", "-X", "importtime", "-c", "pass"], capture_output=True, timeout=60
    )
    baseline = {
        line.split("|")[-1].strip()
        for line in bare.stderr.decode().splitlines()
        if line.startswith("import time:") and "|" in line
    }
    extra = {m.strip() for m in imported - baseline}
    assert extra == {"tortie", "tortie.cni", "tortie.cni.thin", "tortie.cni.wire", "_socket"}, extra


def test_garbage_is_refused_at_once_even_when_the_client_keeps_the_connection_open(
    service: CniService,
) -> None:
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(service.path)
    began = time.monotonic()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: cni\r\n\r\n")  # and never closes
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    sock.close()
    assert time.monotonic() - began < 1.0  # not after the 5 s read deadline
    answer = thin.decode_answer(data)
    assert answer is not None and answer[0] == 1
    doc = json.loads(answer[1])
    assert doc["code"] == 6 and "not a tortie CNI request" in doc["msg"]


def test_many_calls_keep_datastore_connections_bounded(service: CniService, db: str) -> None:
    """Calls run on a fixed set of workers: SQLite's per-thread connections do not pile up
    (a thread per call once leaked two descriptors a call)."""
    conf = netconf(sqlite_path=db)
    send(service, "ADD", "warm-up", conf)
    before = len(os.listdir("/proc/self/fd"))
    for i in range(150):
        code, _ = send(service, "ADD" if i % 2 == 0 else "DEL", f"c{i // 2}", conf)
        assert code == 0
    assert len(os.listdir("/proc/self/fd")) <= before + 2 * 32 + 8
    assert len(os.listdir("/proc/self/fd")) < before + 150  # not one per call
