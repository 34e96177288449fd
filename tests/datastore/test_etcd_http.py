"""The minimal HTTP/1.1 client of the etcd backend (``tortie.datastore.etcd_http``).

Parsing is checked against a tiny scripted server on 127.0.0.1 (content length, chunked,
``Connection: close``, answers dribbled out a few bytes at a time, broken answers); the
import-cost promise (no ``http.client``/``email``/``ssl`` for plain http) in a fresh
interpreter against the real etcd.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from etcd_cluster import EtcdCluster, closed_port_url
from tortie.datastore.config import DatastoreSettings
from tortie.datastore.etcd import EtcdDatastore
from tortie.datastore.etcd_http import Connection, ProtocolError, RemoteDisconnected
from tortie.errors import DatastoreError, Unavailable

SRC = str(Path(__file__).resolve().parents[2] / "src")


# --------------------------------------------------------------------------- scripted server


@dataclass
class Reply:
    """What the server does with one request: send ``data`` (in pieces of ``piece`` bytes,
    a short pause between them), then close the connection when ``close``.  ``data=None``
    closes without answering."""

    data: bytes | None
    piece: int = 0
    close: bool = False


@dataclass
class Seen:
    head: bytes
    body: bytes
    connection: int  # 1-based number of the connection it came on


@dataclass
class ScriptedServer:
    replies: list[Reply]
    requests: list[Seen] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.replies:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with conn:
                self._serve_connection(conn)

    def _serve_connection(self, conn: socket.socket) -> None:
        buf = b""
        while self.replies:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buf) < length:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            self.requests.append(Seen(head, buf[:length], self.connections))
            buf = buf[length:]
            reply = self.replies.pop(0)
            if reply.data is None:
                return
            step = reply.piece or len(reply.data)
            for i in range(0, len(reply.data), step):
                conn.sendall(reply.data[i : i + step])
                if reply.piece:
                    time.sleep(0.0005)
            if reply.close:
                return

    def close(self) -> None:
        self.replies.clear()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.listener.close()
        self.thread.join(5)


@contextlib.contextmanager
def scripted(*replies: Reply) -> Iterator[ScriptedServer]:
    server = ScriptedServer(list(replies))
    try:
        yield server
    finally:
        server.close()


class CountingSocket:
    """Wraps a connected socket to count ``sendall`` and ``recv`` calls."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sends: list[bytes] = []
        self.recvs = 0

    def sendall(self, data: bytes) -> None:
        self.sends.append(bytes(data))
        self.sock.sendall(data)

    def recv(self, n: int) -> bytes:
        self.recvs += 1
        return self.sock.recv(n)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def connected(server: ScriptedServer, timeout: float = 2.0) -> tuple[Connection, CountingSocket]:
    conn = Connection("127.0.0.1", server.port, timeout)
    conn.connect()
    assert conn.sock is not None
    counting = CountingSocket(conn.sock)
    conn.sock = counting  # type: ignore[assignment]
    return conn, counting


def ok(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", "Content-Type: application/json", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(*chunks: bytes, trailers: str = "") -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c)
    return ok(out + b"0\r\n" + trailers.encode() + b"\r\n", "Transfer-Encoding: chunked")


HEADERS = {"Content-Type": "application/json", "Grpc-Metadata-hasleader": "true"}


# --------------------------------------------------------------------------- parsing


def test_request_is_one_send_and_the_connection_is_kept() -> None:
    with scripted(Reply(ok(b'{"a":1}')), Reply(ok(b'{"b":2}'))) as server:
        conn, sock = connected(server)
        headers = {**HEADERS, "Authorization": "tok.1"}
        resp = conn.request("/v3/kv/range", b'{"key":"YQ=="}', headers)
        assert (resp.status, resp.reason, resp.body, resp.will_close) == (
            200,
            "OK",
            b'{"a":1}',
            False,
        )
        assert resp.headers["content-type"] == "application/json"
        assert len(sock.sends) == 1  # headers and body together
        assert conn.request("/v3/kv/txn", b"{}", HEADERS).body == b'{"b":2}'
        assert len(sock.sends) == 2 and server.connections == 1
        conn.close()
    first = server.requests[0]
    lines = first.head.decode().split("\r\n")
    assert lines[0] == "POST /v3/kv/range HTTP/1.1"
    assert set(lines[1:]) == {
        f"Host: 127.0.0.1:{server.port}",
        "Content-Type: application/json",
        "Grpc-Metadata-hasleader: true",
        "Authorization: tok.1",
        "Content-Length: 14",
    }
    assert first.body == b'{"key":"YQ=="}'
    assert server.requests[1].head.startswith(b"POST /v3/kv/txn HTTP/1.1\r\n")


def test_chunked_body_with_extensions_and_trailers() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
        b'3;name=value\r\n{"a\r\n'
        b'A\r\n":[1,2,3]}\r\n'
        b"0\r\nX-Trailer: yes\r\n\r\n"
    )
    with scripted(Reply(raw), Reply(chunked(b"{}"))) as server:
        conn, _ = connected(server)
        resp = conn.request("/v3/kv/range", b"{}", HEADERS)
        assert resp.body == b'{"a":[1,2,3]}' and not resp.will_close
        assert conn.request("/v3/kv/range", b"{}", HEADERS).body == b"{}"
        assert server.connections == 1
        conn.close()


@pytest.mark.parametrize("piece", [1, 3, 7])
def test_answer_dribbled_out_over_many_recv_calls(piece: int) -> None:
    big = json.dumps({"kvs": [{"key": "k" * 20, "value": str(i)} for i in range(12)]}).encode()
    parts = [big[i : i + 100] for i in range(0, len(big), 100)]
    with scripted(Reply(ok(big), piece=piece), Reply(chunked(*parts), piece=piece)) as server:
        conn, sock = connected(server)
        assert conn.request("/v3/kv/range", b"{}", HEADERS).body == big
        assert conn.request("/v3/kv/range", b"{}", HEADERS).body == big
        assert sock.recvs > 20  # really read in many pieces
        conn.close()


def test_connection_close_header_closes_and_the_next_request_reconnects() -> None:
    with scripted(
        Reply(ok(b"{}", "Connection: close"), close=True), Reply(ok(b'{"n":2}'))
    ) as server:
        conn = Connection("127.0.0.1", server.port, 2.0)
        resp = conn.request("/v3/kv/range", b"{}", HEADERS)
        assert resp.will_close and conn.sock is None
        assert conn.request("/v3/kv/range", b"{}", HEADERS).body == b'{"n":2}'
        assert server.connections == 2
        conn.close()


@pytest.mark.parametrize(
    "raw",
    [
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"until":"eof"}',
        b'HTTP/1.0 200 OK\r\nContent-Length: 15\r\n\r\n{"until":"eof"}',
    ],
    ids=["no-length", "http-1.0"],
)
def test_answers_that_end_the_connection(raw: bytes) -> None:
    with scripted(Reply(raw, close=True)) as server:
        conn = Connection("127.0.0.1", server.port, 2.0)
        resp = conn.request("/v3/kv/range", b"{}", HEADERS)
        assert resp.body == b'{"until":"eof"}' and resp.will_close and conn.sock is None


def test_interim_1xx_answers_are_skipped_and_lf_only_lines_accepted() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\nContent-Length: 2\n\n{}"
    with scripted(Reply(raw)) as server:
        conn = Connection("127.0.0.1", server.port, 2.0)
        resp = conn.request("/nope", b"", HEADERS)
        assert (resp.status, resp.reason, resp.body) == (404, "Not Found", b"{}")
        conn.close()


def test_close_before_any_answer_is_remote_disconnected() -> None:
    with scripted(Reply(None)) as server:
        conn = Connection("127.0.0.1", server.port, 2.0)
        with pytest.raises(RemoteDisconnected):
            conn.request("/v3/kv/range", b"{}", HEADERS)
        assert conn.sock is None
    assert issubclass(RemoteDisconnected, ConnectionResetError)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Le", "middle of the headers"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", "2 of 10 body bytes"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "2 of 5 body bytes"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "bad status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer"),
    ],
)
def test_broken_answers_are_protocol_errors(raw: bytes, message: str) -> None:
    with scripted(Reply(raw, close=True)) as server:
        conn = Connection("127.0.0.1", server.port, 2.0)
        with pytest.raises(ProtocolError, match=message):
            conn.request("/v3/kv/range", b"{}", HEADERS)
        assert conn.sock is None


def test_no_answer_is_a_timeout() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    try:
        conn = Connection("127.0.0.1", listener.getsockname()[1], 0.3)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            conn.request("/v3/kv/range", b"{}", HEADERS)
        assert 0.25 < time.monotonic() - start < 2
        assert conn.sock is None
    finally:
        listener.close()


def test_header_values_cannot_smuggle_lines() -> None:
    with scripted(Reply(ok(b"{}"))) as server:
        conn = Connection("127.0.0.1", server.port, 2.0)
        with pytest.raises(ProtocolError, match="Authorization"):
            conn.request("/", b"", {"Authorization": "x\r\nEvil: 1"})


# --------------------------------------------------------------------------- in the datastore

RANGE = {
    "header": {"revision": "7"},
    "kvs": [{"key": "L2s=", "value": "MQ==", "mod_revision": "5"}],
}


def store(url: str, timeout: float = 6.0) -> EtcdDatastore:
    s = DatastoreSettings(datastore_type="etcdv3", etcd_endpoints=(url,))
    return EtcdDatastore(s, request_timeout=min(timeout, 2.0), total_timeout=timeout)


def test_kept_alive_connection_closed_by_the_server_is_retried_on_a_fresh_one() -> None:
    answer = json.dumps(RANGE).encode()
    # The server closes the idle connection after the first answer (no Connection: close).
    with scripted(Reply(ok(answer), close=True), Reply(chunked(answer))) as server:
        with store(server.url) as ds:
            first = ds.get("/k")
            assert first is not None and (first.value, first.revision) == ("1", 5)
            assert ds.get("/k") == first
        assert server.connections == 2 and len(server.requests) == 2


def test_fresh_connection_closed_without_answer_names_the_cause() -> None:
    with (
        scripted(*[Reply(None) for _ in range(100)]) as server,
        store(server.url, 0.5) as ds,
        pytest.raises(Unavailable, match=r"is this an https endpoint\?"),
    ):
        ds.get("/k")


def test_non_json_answer_is_reported() -> None:
    with (
        scripted(Reply(ok(b"<html>", status="404 Not Found"))) as server,
        store(server.url) as ds,
        pytest.raises(DatastoreError, match="answered HTTP 404 Not Found with no JSON"),
    ):
        ds.get("/k")


def test_large_chunked_list_from_etcd(etcd_single: EtcdCluster) -> None:
    etcd_single.wipe()
    value = "v" * 2000  # ~270 KB of JSON: etcd sends it chunked
    with store(etcd_single.endpoints[0]) as ds:
        for i in range(100):
            ds.create(f"/big/{i:03d}", value)
        kvs = ds.list("/big/")
    assert [kv.key for kv in kvs] == [f"/big/{i:03d}" for i in range(100)]
    assert all(kv.value == value for kv in kvs)


# --------------------------------------------------------------------------- import cost

PROBE = """
import json, sys
sys.path.insert(0, {src!r})
import tortie.datastore.etcd as etcd
from tortie.datastore.config import DatastoreSettings
ds = etcd.EtcdDatastore(DatastoreSettings(datastore_type="etcdv3", etcd_endpoints=({url!r},)),
                        total_timeout=0.3)
try:
    kv = ds.create("/imports/k", "1")
    assert ds.get("/imports/k") == kv
    ds.update("/imports/k", "2", kv.revision)
    ds.list("/imports/")
    ds.delete("/imports/k")
except etcd.Unavailable:
    pass
ds.close()
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("http", "email", "ssl"))))
"""


def loaded_after_use(url: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-S", "-c", PROBE.format(src=SRC, url=url)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_plain_http_use_imports_no_http_client_email_or_ssl(etcd_single: EtcdCluster) -> None:
    etcd_single.wipe()
    assert loaded_after_use(etcd_single.endpoints[0]) == []


def test_https_endpoint_imports_ssl_but_not_http_client() -> None:
    url = closed_port_url().replace("http://", "https://")
    assert loaded_after_use(url) == ["ssl"]
