"""etcd-specific behaviour: failover, quorum loss, TLS, authentication, watch, retries."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

import tortie.datastore.etcd as etcd_mod
from etcd_cluster import (
    EtcdCluster,
    EtcdMember,
    TlsFiles,
    closed_port_url,
    make_certs,
    request,
    require_etcd,
)
from tortie.datastore.config import DatastoreSettings
from tortie.datastore.etcd import EtcdDatastore, WatchCompacted, WatchEvent
from tortie.errors import AlreadyExists, InvalidInput, Unavailable

from .cas_worker import increment


def settings(*endpoints: str, **kw: str) -> DatastoreSettings:
    return DatastoreSettings(datastore_type="etcdv3", etcd_endpoints=endpoints, **kw)


@pytest.fixture
def single(etcd_single: EtcdCluster) -> Iterator[EtcdDatastore]:
    etcd_single.wipe()
    ds = EtcdDatastore(settings(*etcd_single.endpoints))
    yield ds
    ds.close()


@pytest.fixture
def cluster3(tmp_path: Path) -> Iterator[EtcdCluster]:
    require_etcd()
    with EtcdCluster(tmp_path / "c3", size=3) as cluster:
        yield cluster


def leader(cluster: EtcdCluster) -> EtcdMember:
    for m in cluster.members:
        if m.pid is None:
            continue
        status, body = request(m, "POST", "/v3/maintenance/status", {})
        if status == 200 and body.get("leader") == body["header"]["member_id"]:  # type: ignore[index]
            return m
    raise AssertionError("no leader")


# --------------------------------------------------------------------------- failover


def test_first_endpoint_down_fails_over_silently(etcd_single: EtcdCluster) -> None:
    etcd_single.wipe()
    with EtcdDatastore(settings(closed_port_url(), *etcd_single.endpoints)) as ds:
        start = time.monotonic()
        kv = ds.create("/f/a", "1")
        assert ds.get("/f/a") == kv
        ds.update("/f/a", "2", kv.revision)
        assert time.monotonic() - start < 2


def test_nothing_listening_is_unavailable_quickly() -> None:
    urls = (closed_port_url(), closed_port_url())
    with EtcdDatastore(settings(*urls)) as ds:
        start = time.monotonic()
        with pytest.raises(Unavailable) as err:
            ds.get("/x")
        assert time.monotonic() - start < 10
    msg = str(err.value)
    assert msg.startswith(f"etcd: no endpoint answered (tried {urls[0]}, {urls[1]}): ")
    assert "connection refused" in msg and "ETCD_ENDPOINTS" in msg and "\n" not in msg


def test_member_killed_during_writes_loses_nothing(cluster3: EtcdCluster) -> None:
    victim = leader(cluster3)
    with EtcdDatastore(settings(*cluster3.endpoints)) as ds:
        ds.create("/w/counter", "0")
        errors: list[BaseException] = []
        done = 0

        def writer() -> None:
            nonlocal done
            try:
                for i in range(150):
                    kv = ds.create(f"/w/{i:04d}", str(i))
                    ds.update(kv.key, f"{i}!", kv.revision)
                    done += 1
            except BaseException as exc:  # reported below
                errors.append(exc)

        t = threading.Thread(target=writer)
        t.start()
        while done < 30 and t.is_alive():
            time.sleep(0.01)
        victim.kill()
        t.join(60)
        assert not errors, errors
        assert done == 150
        kvs = ds.list("/w/0")
        assert [kv.value for kv in kvs] == [f"{i}!" for i in range(150)]


def test_quorum_lost_is_unavailable_in_bounded_time_then_recovers(
    cluster3: EtcdCluster,
) -> None:
    with EtcdDatastore(settings(*cluster3.endpoints)) as ds:
        kv = ds.create("/q/k", "0")
        _survivor, *dead = cluster3.members
        for m in dead:
            m.kill()
        start = time.monotonic()
        with pytest.raises(Unavailable) as err:
            ds.update("/q/k", "1", kv.revision)
        elapsed = time.monotonic() - start
        assert elapsed < 10, elapsed
        msg = str(err.value)
        assert f"(tried {', '.join(cluster3.endpoints)})" in msg or all(
            url in msg for url in cluster3.endpoints
        )
        with pytest.raises(Unavailable):
            ds.get("/q/k")  # linearizable reads need quorum too
        for m in dead:
            m.start()
        cluster3.wait_healthy()
        # The update may or may not have been applied while the cluster went down.
        cur = ds.get("/q/k")
        assert cur is not None and cur.value in ("0", "1")
        assert ds.update("/q/k", "2", cur.revision).value == "2"


def test_threads_share_one_handle(single: EtcdDatastore) -> None:
    single.create("/t/counter", "0")
    threads = [
        threading.Thread(target=increment, args=(single, "/t/counter", 20)) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kv = single.get("/t/counter")
    assert kv is not None and kv.value == "80"


def test_list_paginates_on_one_snapshot(
    single: EtcdDatastore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(23):
        single.create(f"/p/{i:02d}", str(i))
    single.create("/p0", "neighbour")
    monkeypatch.setattr(etcd_mod, "LIST_PAGE_SIZE", 5)
    assert [kv.key for kv in single.list("/p/")] == [f"/p/{i:02d}" for i in range(23)]


def test_current_revision_tracks_writes(single: EtcdDatastore) -> None:
    before = single.current_revision()
    kv = single.create("/r", "1")
    assert kv.revision == before + 1 == single.current_revision()


# --------------------------------------------------------------------------- ambiguous writes


class DroppingProxy:
    """A TCP proxy to etcd that can swallow the next N responses and cut the connection:
    the request reached etcd and was applied, but the client never hears about it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.drop = 0
        self.dropped = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.socks: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                if self.closed:
                    client.close()
                    server.close()
                    return
                self.socks += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, responses: bool) -> None:
        try:
            while data := src.recv(65536):
                if responses and self.drop:
                    self.drop -= 1
                    self.dropped += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            for s in self.socks:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.acceptor.join(5)
        self.listener.close()


@pytest.fixture
def proxy(etcd_single: EtcdCluster) -> Iterator[DroppingProxy]:
    etcd_single.wipe()
    p = DroppingProxy(etcd_single.members[0].client_port)
    yield p
    p.close()


def test_ambiguous_writes_are_resolved_not_reported_as_conflicts(proxy: DroppingProxy) -> None:
    with EtcdDatastore(settings(proxy.url)) as ds:
        proxy.drop = 1  # fresh connection: the create is applied, its answer lost
        kv = ds.create("/amb/k", "v1")
        assert proxy.dropped == 1
        assert ds.get("/amb/k") == kv
        proxy.drop = 1  # kept-alive connection this time
        kv2 = ds.update("/amb/k", "v2", kv.revision)
        assert proxy.dropped == 2
        assert kv2.revision > kv.revision and ds.get("/amb/k") == kv2
        proxy.drop = 1
        ds.delete("/amb/k", kv2.revision)
        assert ds.get("/amb/k") is None
        ds.create("/amb/j", "x")
        proxy.drop = 1
        ds.delete("/amb/j")  # plain delete: no NotFound for our own earlier attempt
        assert proxy.dropped == 4
        # Without an ambiguous first attempt a conflict is still a conflict.
        ds.create("/amb/k", "v1")
        with pytest.raises(AlreadyExists):
            ds.create("/amb/k", "v1")


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_certs(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory, certs: TlsFiles) -> Iterator[EtcdCluster]:
    require_etcd()
    with EtcdCluster(tmp_path_factory.mktemp("etcd-tls"), tls=certs) as cluster:
        yield cluster


def test_mutual_tls_works(tls_cluster: EtcdCluster, certs: TlsFiles) -> None:
    s = settings(
        *tls_cluster.endpoints,
        etcd_ca_cert_file=str(certs.ca),
        etcd_cert_file=str(certs.client_cert),
        etcd_key_file=str(certs.client_key),
    )
    with EtcdDatastore(s) as ds:
        kv = ds.create("/tls/ok", "1")
        assert ds.get("/tls/ok") == kv
        assert ds.update("/tls/ok", "2", kv.revision).value == "2"
        ds.delete("/tls/ok")


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("wrong-ca", "ETCD_CA_CERT_FILE"),
        ("no-client-cert", "client certificate"),
        ("expired-client-cert", "rejected the client certificate"),
        ("missing-cert-file", "cannot load client certificate"),
        ("plain-http", "is this an https endpoint?"),
    ],
)
def test_tls_misconfiguration_fails_fast_and_clearly(
    tls_cluster: EtcdCluster, certs: TlsFiles, case: str, expect: str
) -> None:
    files = {
        "wrong-ca": (certs.other_ca, certs.client_cert, certs.client_key),
        "no-client-cert": (certs.ca, "", ""),
        "expired-client-cert": (certs.ca, certs.expired_cert, certs.expired_key),
        "missing-cert-file": (certs.ca, certs.client_cert.with_name("nope.pem"), certs.client_key),
        "plain-http": ("", "", ""),
    }[case]
    endpoints = tls_cluster.endpoints
    if case == "plain-http":
        endpoints = tuple(u.replace("https://", "http://") for u in endpoints)
    s = settings(
        *endpoints,
        etcd_ca_cert_file=str(files[0]),
        etcd_cert_file=str(files[1]),
        etcd_key_file=str(files[2]),
    )
    with EtcdDatastore(s) as ds:
        start = time.monotonic()
        with pytest.raises((InvalidInput, Unavailable)) as err:
            ds.get("/tls/x")
        # Certificate problems are final at once; a closed connection is retried.
        assert time.monotonic() - start < (3 if case != "plain-http" else 10)
    msg = str(err.value)
    assert expect in msg, msg
    assert "\n" not in msg


# --------------------------------------------------------------------------- auth

PASSWORD = "s3cr3t-Pa55word-xyz"


@pytest.fixture(scope="module")
def auth_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    require_etcd()
    with EtcdCluster(tmp_path_factory.mktemp("etcd-auth")) as cluster:
        cluster.enable_auth("tortie", PASSWORD)
        yield cluster


def test_username_password_works_and_token_is_renewed(auth_cluster: EtcdCluster) -> None:
    s = settings(*auth_cluster.endpoints, etcd_username="tortie", etcd_password=PASSWORD)
    with EtcdDatastore(s) as ds:
        kv = ds.create("/auth/k", "1")
        ds._token = "bogus.1"  # an expired/invalid token: logged in again once
        assert ds.get("/auth/k") == kv
        ds.delete("/auth/k")
        assert PASSWORD not in repr(ds)
        assert PASSWORD not in repr(s)


def _everything_printed(err: BaseException) -> str:
    return "".join(traceback.format_exception(err)) + repr(err)


def test_wrong_password_is_clear_and_never_shows_the_password(auth_cluster: EtcdCluster) -> None:
    wrong = PASSWORD + "-wrong"
    s = settings(*auth_cluster.endpoints, etcd_username="tortie", etcd_password=wrong)
    with EtcdDatastore(s) as ds:
        start = time.monotonic()
        with pytest.raises(InvalidInput) as err:
            ds.get("/auth/k")
        assert time.monotonic() - start < 3
        assert wrong not in repr(ds)
    msg = str(err.value)
    assert "authentication failed for user 'tortie'" in msg and "ETCD_PASSWORD" in msg
    assert PASSWORD not in _everything_printed(err.value)


def test_no_credentials_when_auth_is_on(auth_cluster: EtcdCluster) -> None:
    with (
        EtcdDatastore(settings(*auth_cluster.endpoints)) as ds,
        pytest.raises(InvalidInput, match=r"requires authentication.*ETCD_USERNAME"),
    ):
        ds.get("/auth/k")


def test_credentials_are_ignored_when_auth_is_off(
    single: EtcdDatastore, etcd_single: EtcdCluster
) -> None:
    s = settings(*etcd_single.endpoints, etcd_username="who", etcd_password=PASSWORD)
    with EtcdDatastore(s) as ds:
        assert ds.create("/noauth", "1").value == "1"


# --------------------------------------------------------------------------- watch


def test_watch_delivers_puts_and_deletes_under_a_prefix(single: EtcdDatastore) -> None:
    start = single.current_revision() + 1
    a = single.create("/watch/a", "1")
    single.create("/watchx", "neighbour")
    a2 = single.update("/watch/a", "2", a.revision)
    single.delete("/watch/a")
    events = single.watch("/watch/", start)
    try:
        got = [next(events) for _ in range(3)]
        assert got == [
            WatchEvent("PUT", "/watch/a", "1", a.revision),
            WatchEvent("PUT", "/watch/a", "2", a2.revision),
            WatchEvent("DELETE", "/watch/a", "", a2.revision + 1),
        ]
        # Live events, written from another thread while we wait.
        writer = threading.Timer(0.2, lambda: single.create("/watch/b", "live"))
        writer.start()
        ev = next(events)
        writer.join()
        assert (ev.type, ev.key, ev.value) == ("PUT", "/watch/b", "live")
    finally:
        events.close()


def test_watch_from_a_compacted_revision(single: EtcdDatastore, etcd_single: EtcdCluster) -> None:
    kv = single.create("/wc/a", "1")
    single.update("/wc/a", "2", kv.revision)
    status, _ = request(
        etcd_single.members[0], "POST", "/v3/kv/compaction", {"revision": str(kv.revision + 1)}
    )
    assert status == 200
    events = single.watch("/wc/", kv.revision)
    with pytest.raises(WatchCompacted) as err:
        next(events)
    assert err.value.compact_revision == kv.revision + 1


def test_watch_survives_its_member_dying(cluster3: EtcdCluster) -> None:
    first, *others = cluster3.members
    with (
        EtcdDatastore(settings(*cluster3.endpoints)) as watcher,
        EtcdDatastore(settings(*(m.url for m in others))) as writer,
    ):
        start = watcher.current_revision() + 1
        events = watcher.watch("/ws/", start)  # connects to the first member
        got: list[WatchEvent] = []

        def consume() -> None:
            for ev in events:
                got.append(ev)
                if len(got) == 10:
                    return

        reader = threading.Thread(target=consume, daemon=True)
        reader.start()
        for i in range(5):
            writer.create(f"/ws/{i}", str(i))
        deadline = time.monotonic() + 5
        while len(got) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        first.kill()
        for i in range(5, 10):
            writer.create(f"/ws/{i}", str(i))
        reader.join(15)
        assert [ev.key for ev in got] == [f"/ws/{i}" for i in range(10)]
        events.close()
