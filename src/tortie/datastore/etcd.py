"""The etcd v3 datastore: the protocol of ``tortie.datastore.base`` over etcd's JSON gateway.

Standard library only (``socket``, ``json``, ``base64``): the CNI plugin imports this
module on every pod, so there is no ``requests``/gRPC/protobuf, and not even
``http.client`` (~15 ms of imports): unary calls go through the minimal HTTP/1.1 client
in ``tortie.datastore.etcd_http``; ``ssl`` is imported only for ``https://`` endpoints and
``http.client`` only by ``watch``.  See ``docs/design/etcd-client.md`` for the decision
and the measured numbers.

* Every call is one ``POST /v3/...`` on a kept-alive connection (a small pool per endpoint,
  safe to share between threads).  Keys and values travel base64-encoded, revisions as
  JSON strings.  Revisions are etcd mod revisions.
* Writes are single transactions: create = ``create_revision == 0 -> put``, update and
  delete = ``mod_revision == rev -> put/deleterange``; the failure branch reads the key.
* Failover: a connection error, timeout or "no leader"-type answer moves on to the next
  endpoint; each request waits at most ``request_timeout`` (2 s) and the whole operation
  at most ``total_timeout`` (6 s), then ``Unavailable`` names the endpoints tried.  Every
  request carries ``hasleader`` metadata, so a member without quorum answers at once with
  "no leader" instead of hanging.
* Ambiguous writes: when a write attempt failed after it was sent (timeout, reset,
  "request timed out"), it may have been applied.  The retry is the same compare-and-swap
  transaction; if its compare fails, the key as read in that same transaction decides:
  holding exactly the value we wrote (create/update) or being gone (delete) counts as our
  own earlier attempt having succeeded.
* TLS (``https://`` endpoints, CA and client certificate) and user/password auth (token
  from ``/v3/auth/authenticate``, refreshed once when etcd says it is invalid).  The
  password is never put in a message, a log or a ``repr``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Generator, Iterator

from tortie.datastore.base import KV, Writes, check_writes, conflict_of
from tortie.datastore.config import DatastoreSettings
from tortie.datastore.etcd_http import Connection, ProtocolError, RemoteDisconnected
from tortie.datastore.etcd_support import (
    Endpoint,
    Failed,
    WatchCompacted,
    WatchEvent,
    b64,
    describe,
    parse_endpoint,
    prefix_end,
    summary,
    text,
)
from tortie.datastore.etcd_watch import WatchStreams
from tortie.errors import (
    AlreadyExists,
    DatastoreError,
    InvalidInput,
    NotFound,
    RevisionConflict,
    Unavailable,
)

__all__ = ["EtcdDatastore", "WatchCompacted", "WatchEvent"]

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:  # imported lazily: ssl for https only, http.client for watch only
    import ssl
    from typing import Any

    from tortie.datastore.etcd_feed import EtcdFeed

DEFAULT_ENDPOINT = "http://127.0.0.1:2379"
REQUEST_TIMEOUT = 2.0
TOTAL_TIMEOUT = 6.0
LIST_PAGE_SIZE = 1000
_POOL_SIZE = 8

# gRPC status codes that etcd returns for "not now" (no leader, leader changed, request
# timed out, too many requests, deadline exceeded): try another member.
_RETRY_CODES = frozenset({4, 8, 14})
_UNAUTHENTICATED = 16
_PERMISSION_DENIED = 7


class EtcdDatastore(WatchStreams):
    """The datastore protocol on an etcd v3 cluster (3.4+) through its JSON gateway."""

    def __init__(
        self,
        settings: DatastoreSettings,
        *,
        request_timeout: float = REQUEST_TIMEOUT,
        total_timeout: float = TOTAL_TIMEOUT,
    ) -> None:
        urls = settings.etcd_endpoints or (DEFAULT_ENDPOINT,)
        self._endpoints = tuple(parse_endpoint(u) for u in urls)
        self._settings = settings
        self.request_timeout = request_timeout
        self.total_timeout = total_timeout
        self._ssl: ssl.SSLContext | None = None
        self._pool: dict[Endpoint, list[Connection]] = {}
        self._lock = threading.Lock()
        self._preferred = 0
        self._token: str | None = None
        self._auth_disabled = False
        self._closed = False

    def __repr__(self) -> str:
        user = f", user={self._settings.etcd_username!r}" if self._settings.etcd_username else ""
        return f"EtcdDatastore({', '.join(e.url for e in self._endpoints)}{user})"

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(e.url for e in self._endpoints)

    # ------------------------------------------------------------------ protocol

    def get(self, key: str) -> KV | None:
        reply, _ = self._call("/v3/kv/range", {"key": b64(key)})
        kvs = reply.get("kvs") or []
        return self._kv(kvs[0]) if kvs else None

    def list(self, prefix: str) -> list[KV]:
        raw = prefix.encode()
        end = b64(prefix_end(raw))
        out: list[KV] = []
        start = raw
        revision = 0
        while True:
            body: dict[str, Any] = {
                "key": b64(start),
                "range_end": end,
                "limit": str(LIST_PAGE_SIZE),
            }
            if revision:
                body["revision"] = str(revision)  # later pages: the first page's snapshot
            reply, _ = self._call("/v3/kv/range", body)
            if not revision:
                revision = self._header_revision(reply)
            kvs = reply.get("kvs") or []
            out.extend(self._kv(kv) for kv in kvs)
            if not reply.get("more") or not kvs:
                return out
            start = base64.b64decode(kvs[-1]["key"]) + b"\0"

    def create(self, key: str, value: str) -> KV:
        k = b64(key)
        txn = {
            "compare": [{"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": {"key": k, "value": b64(value)}}],
            "failure": [{"request_range": {"key": k}}],
        }
        reply, ambiguous = self._call("/v3/kv/txn", txn, write=True)
        if reply.get("succeeded"):
            return KV(key, value, self._header_revision(reply))
        cur = self._failure_kv(reply)
        if ambiguous and cur is not None and cur.value == value:
            return cur  # our earlier, unanswered attempt created it
        raise AlreadyExists(f"{key} already exists")

    def update(self, key: str, value: str, revision: int) -> KV:
        if revision <= 0:
            raise RevisionConflict(f"{key} changed (expected revision {revision})")
        k = b64(key)
        txn = {
            "compare": [
                {"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": str(revision)}
            ],
            "success": [{"request_put": {"key": k, "value": b64(value)}}],
            "failure": [{"request_range": {"key": k}}],
        }
        reply, ambiguous = self._call("/v3/kv/txn", txn, write=True)
        if reply.get("succeeded"):
            return KV(key, value, self._header_revision(reply))
        cur = self._failure_kv(reply)
        if ambiguous and cur is not None and cur.value == value and cur.revision > revision:
            return cur  # our earlier, unanswered attempt wrote it
        if cur is None:
            raise RevisionConflict(f"{key} was deleted (expected revision {revision})")
        raise RevisionConflict(f"{key} changed (expected revision {revision})")

    def delete(self, key: str, revision: int | None = None) -> None:
        k = b64(key)
        if revision is None:
            reply, ambiguous = self._call("/v3/kv/deleterange", {"key": k}, write=True)
            if int(reply.get("deleted", "0")) == 0 and not ambiguous:
                raise NotFound(f"{key} does not exist")
            return
        if revision <= 0:
            raise RevisionConflict(f"{key} changed (expected revision {revision})")
        txn = {
            "compare": [
                {"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": str(revision)}
            ],
            "success": [{"request_delete_range": {"key": k}}],
            "failure": [{"request_range": {"key": k}}],
        }
        reply, ambiguous = self._call("/v3/kv/txn", txn, write=True)
        if reply.get("succeeded"):
            return
        cur = self._failure_kv(reply)
        if cur is None:
            if ambiguous:
                return  # our earlier, unanswered attempt deleted it
            raise RevisionConflict(f"{key} was already deleted")
        raise RevisionConflict(f"{key} changed (expected revision {revision})")

    def txn(self, writes: Writes) -> int:
        """One etcd ``Txn``: a compare per key, the writes on success, a read of every key
        on failure (so a conflict needs no further read, and a retried transaction that
        was applied unanswered recognises itself)."""
        check_writes(writes)
        if not writes:
            return self.current_revision()
        compare: list[dict[str, str]] = []
        success: list[dict[str, Any]] = []
        for w in writes:
            k = b64(w.key)
            if w.revision == 0:
                compare.append(
                    {"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
                )
            else:
                compare.append(
                    {"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": str(w.revision)}
                )
            if w.value is None:
                success.append({"request_delete_range": {"key": k}})
            else:
                success.append({"request_put": {"key": k, "value": b64(w.value)}})
        body = {
            "compare": compare,
            "success": success,
            "failure": [{"request_range": {"key": b64(w.key)}} for w in writes],
        }
        reply, ambiguous = self._call("/v3/kv/txn", body, write=True)
        if reply.get("succeeded"):
            return self._header_revision(reply)
        current = {w.key: self._failure_kv(reply, i) for i, w in enumerate(writes)}
        if ambiguous and all(
            (cur is None) if w.value is None else (cur is not None and cur.value == w.value)
            for w in writes
            for cur in (current[w.key],)
        ):  # our earlier, unanswered attempt applied it
            revs = [kv.revision for kv in current.values() if kv is not None]
            return max(revs) if revs else self._header_revision(reply)
        conflict = conflict_of(writes, current)
        if conflict is None:  # the compares failed, yet every key is as expected: a race
            raise RevisionConflict(
                f"transaction on {writes[0].key} not applied (written meanwhile); try again"
            )
        raise conflict

    def close(self) -> None:
        self._closed = True
        with self._lock:
            conns = [c for pool in self._pool.values() for c in pool]
            self._pool.clear()
        for conn in conns:
            conn.close()

    def __enter__(self) -> EtcdDatastore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ extras

    def current_revision(self) -> int:
        """The store-wide revision now (the revision of the latest write)."""
        reply, _ = self._call("/v3/kv/range", {"key": b64(b"\0"), "count_only": True})
        return self._header_revision(reply)

    def watch(self, prefix: str, start_revision: int) -> Generator[WatchEvent, None, None]:
        """Every change under ``prefix`` from ``start_revision`` (inclusive), forever
        (see ``etcd_watch.watch``)."""
        from tortie.datastore import etcd_watch

        return etcd_watch.watch(self, prefix, start_revision)

    def open_feed(self, prefixes: tuple[str, ...]) -> EtcdFeed:
        """A change feed over ``prefixes``: a watch stream each (``etcd_feed``)."""
        from tortie.datastore.etcd_feed import EtcdFeed

        return EtcdFeed(self, prefixes)

    def wait_for_change(
        self, prefixes: tuple[str, ...], after_revision: int, timeout: float
    ) -> bool:
        from tortie.datastore import etcd_watch

        return etcd_watch.wait_for_change(self, prefixes, after_revision, timeout)

    # ------------------------------------------------------------------ decoding

    def _kv(self, raw: dict[str, Any]) -> KV:
        try:
            return KV(text(raw["key"]), text(raw.get("value", "")), int(raw["mod_revision"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise DatastoreError(f"etcd answered an unreadable key-value: {exc}") from exc

    def _failure_kv(self, reply: dict[str, Any], index: int = 0) -> KV | None:
        try:
            rng = reply["responses"][index]["response_range"]
        except (KeyError, IndexError, TypeError) as exc:
            raise DatastoreError(f"etcd answered an unexpected transaction reply: {exc}") from exc
        kvs = rng.get("kvs") or []
        return self._kv(kvs[0]) if kvs else None

    @staticmethod
    def _header_revision(reply: dict[str, Any]) -> int:
        try:
            return int(reply["header"]["revision"])
        except (KeyError, ValueError, TypeError) as exc:
            raise DatastoreError(f"etcd answered without a revision: {exc}") from exc

    # ------------------------------------------------------------------ transport

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            import ssl  # only for https:// endpoints (~5 ms)

            s = self._settings
            try:
                ctx = ssl.create_default_context(cafile=s.etcd_ca_cert_file or None)
            except (OSError, ssl.SSLError) as exc:
                raise InvalidInput(
                    f"etcd: cannot load CA file {s.etcd_ca_cert_file!r} ({exc}); "
                    "set ETCD_CA_CERT_FILE to a PEM file"
                ) from exc
            if s.etcd_cert_file or s.etcd_key_file:
                try:
                    # A constant password: an encrypted key fails instead of prompting.
                    ctx.load_cert_chain(
                        s.etcd_cert_file, s.etcd_key_file or None, password=lambda: b""
                    )
                except (OSError, ssl.SSLError) as exc:
                    raise InvalidInput(
                        f"etcd: cannot load client certificate {s.etcd_cert_file!r} / key "
                        f"{s.etcd_key_file!r} ({getattr(exc, 'reason', None) or exc}); "
                        "set ETCD_CERT_FILE and ETCD_KEY_FILE to an unencrypted PEM pair"
                    ) from exc
            self._ssl = ctx
        return self._ssl

    def _new_connection(self, ep: Endpoint, timeout: float) -> Connection:
        context = self._ssl_context() if ep.https else None
        return Connection(ep.host, ep.port, timeout, context)

    def _checkout(self, ep: Endpoint, timeout: float) -> tuple[Connection, bool]:
        with self._lock:
            pool = self._pool.get(ep)
            if pool:
                return pool.pop(), True
        return self._new_connection(ep, timeout), False

    def _checkin(self, ep: Endpoint, conn: Connection) -> None:
        with self._lock:
            pool = self._pool.setdefault(ep, [])
            if not self._closed and len(pool) < _POOL_SIZE:
                pool.append(conn)
                return
        conn.close()

    def _headers(self, with_token: bool = True) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Grpc-Metadata-hasleader": "true"}
        if with_token and self._token:
            headers["Authorization"] = self._token
        return headers

    def _post(
        self, ep: Endpoint, path: str, data: bytes, headers: dict[str, str], deadline: float
    ) -> tuple[int, dict[str, Any], bool]:
        """One request on one endpoint; a fresh connection once if a pooled one was stale.

        Returns the HTTP status, the JSON reply and whether the request was sent twice
        (the first copy on a kept-alive connection that broke: it may have arrived)."""
        resent = False
        for _ in range(2):
            timeout = max(0.05, min(self.request_timeout, deadline - time.monotonic()))
            conn, reused = self._checkout(ep, timeout)
            sent = False
            try:
                conn.settimeout(timeout)
                if conn.sock is None:
                    conn.connect()  # TCP_NODELAY (and the TLS handshake)
                sent = True
                resp = conn.request(path, data, headers)  # headers and body in one send
                payload = resp.body
            except (OSError, ProtocolError) as exc:
                conn.close()
                stale = reused and isinstance(
                    exc, (ConnectionResetError, BrokenPipeError, RemoteDisconnected)
                )
                if stale and not resent:
                    resent = True
                    continue  # most likely the server closed an idle kept-alive connection
                reason, permanent = describe(
                    exc, timeout, bool(self._settings.etcd_cert_file), ep.https
                )
                raise Failed(reason, sent or resent, permanent) from exc
            if not resp.will_close:  # (a closing answer has closed the connection)
                self._checkin(ep, conn)
            try:
                reply = json.loads(payload) if payload else {}
            except ValueError:
                reply = None
            if not isinstance(reply, dict):
                if resp.status >= 500:
                    raise Failed(f"HTTP {resp.status} {resp.reason}", True)
                raise DatastoreError(
                    f"etcd at {ep.url} answered HTTP {resp.status} {resp.reason} with no JSON "
                    f"for {path}: is it an etcd v3.4+ client URL?"
                )
            return resp.status, reply, resent
        raise AssertionError("unreachable")  # pragma: no cover

    def _authenticate(self, ep: Endpoint, deadline: float) -> None:
        s = self._settings
        data = json.dumps({"name": s.etcd_username, "password": s.etcd_password}).encode()
        status, reply, _ = self._post(
            ep, "/v3/auth/authenticate", data, self._headers(with_token=False), deadline
        )
        if status == 200 and reply.get("token"):
            self._token = str(reply["token"])
            return
        message = str(reply.get("message") or reply.get("error") or f"HTTP {status}")
        if "not enabled" in message:
            self._auth_disabled = True
            return
        code = reply.get("code")
        if code in _RETRY_CODES or status >= 500:
            raise Failed(f"authentication: {message}", False)
        raise InvalidInput(
            f"etcd at {ep.url}: authentication failed for user {s.etcd_username!r} "
            f"({message.removeprefix('etcdserver: ')}); check ETCD_USERNAME and ETCD_PASSWORD"
        )

    def _attempts(self, deadline: float) -> Iterator[Endpoint]:
        """Endpoints to try, starting with the last good one, round after round."""
        n = len(self._endpoints)
        rounds = 0
        while time.monotonic() < deadline:
            first = self._preferred
            for i in range(n):
                if time.monotonic() >= deadline:
                    return
                yield self._endpoints[(first + i) % n]
            rounds += 1
            pause = min(0.05 * 2**rounds, 0.5, deadline - time.monotonic())
            if pause > 0:
                time.sleep(pause)

    def _call(
        self, path: str, body: dict[str, Any], *, write: bool = False
    ) -> tuple[dict[str, Any], bool]:
        """POST to the first endpoint that answers.  Returns the reply and whether an
        earlier attempt of this (write) request may have been applied."""
        if self._closed:
            raise DatastoreError("etcd datastore used after close()")
        data = json.dumps(body).encode()
        deadline = time.monotonic() + self.total_timeout
        tried: list[str] = []
        reasons: dict[str, str] = {}  # the latest failure of each endpoint, in try order
        ambiguous = False
        reauthed = False
        s = self._settings
        broken: set[Endpoint] = set()  # TLS configuration failures: no use retrying
        for ep in self._attempts(deadline):
            if len(broken) == len(self._endpoints):
                break
            if ep in broken:
                continue
            if ep.url not in tried:
                tried.append(ep.url)
            try:
                if s.etcd_username and self._token is None and not self._auth_disabled:
                    self._authenticate(ep, deadline)
                status, reply, resent = self._post(ep, path, data, self._headers(), deadline)
            except Failed as failure:
                reasons[ep.url] = failure.reason
                ambiguous = ambiguous or (write and failure.sent)
                if failure.permanent:
                    broken.add(ep)
                continue
            ambiguous = ambiguous or (write and resent)
            if status == 200:
                self._preferred = self._endpoints.index(ep)
                return reply, ambiguous
            code = reply.get("code")
            message = str(reply.get("message") or reply.get("error") or f"HTTP {status}")
            short = message.removeprefix("etcdserver: ")
            if code == _UNAUTHENTICATED and s.etcd_username and not reauthed:
                self._token = None  # expired token: log in again once
                reauthed = True
                continue
            if code == _UNAUTHENTICATED or "user name is empty" in message:
                raise InvalidInput(
                    f"etcd at {ep.url} requires authentication ({short}); "
                    "set ETCD_USERNAME and ETCD_PASSWORD"
                )
            if code == _PERMISSION_DENIED:
                raise InvalidInput(
                    f"etcd at {ep.url}: permission denied for user {s.etcd_username!r} "
                    f"({short}); grant it read-write access to the /calico/ prefix"
                )
            if code in _RETRY_CODES or status >= 500:
                reasons[ep.url] = short
                ambiguous = ambiguous or write
                continue
            raise DatastoreError(f"etcd at {ep.url} refused {path}: {short} (code {code})")
        unknown = " (the write may or may not have been applied)" if ambiguous else ""
        if broken and len(broken) == len(self._endpoints):
            raise InvalidInput(f"etcd: TLS failed on every endpoint: {summary(reasons)}{unknown}")
        raise Unavailable(
            f"etcd: no endpoint answered (tried {', '.join(tried) or 'none'}): "
            f"{summary(reasons)}{unknown}; check ETCD_ENDPOINTS and that etcd is running"
        )
