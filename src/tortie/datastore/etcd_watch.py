"""etcd watches: the agent's long-lived streams (``watch``) and the change notification of
the datastore protocol (``wait_for_change``).  The only users of ``http.client`` in the
client (imported when a watch starts), kept out of the per-call path."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Generator

from tortie.datastore.etcd_support import (
    Failed,
    WatchCompacted,
    WatchEvent,
    b64,
    common_prefix,
    describe,
    prefix_end,
    summary,
    text,
)
from tortie.errors import DatastoreError, Unavailable

_UNAUTHENTICATED = 16  # gRPC status: the token is no longer valid

TYPE_CHECKING = False
if TYPE_CHECKING:
    import http.client
    import ssl
    from collections.abc import Iterator
    from typing import Any

    from tortie.datastore.config import DatastoreSettings
    from tortie.datastore.etcd import EtcdDatastore
    from tortie.datastore.etcd_support import Endpoint


def watch(
    store: EtcdDatastore, prefix: str, start_revision: int
) -> Generator[WatchEvent, None, None]:
    """Every change under ``prefix`` from ``start_revision`` (inclusive), forever.

    Reconnects (to the next endpoint if need be) and resumes after the last event
    delivered; raises ``Unavailable`` when no endpoint takes the watch within
    ``total_timeout`` and ``WatchCompacted`` when ``start_revision`` is compacted.
    Close the generator (or let it be collected) to stop watching.
    """

    raw = prefix.encode()
    next_rev = max(start_revision, 1)
    failing_since: float | None = None
    while True:
        if failing_since is not None:
            if time.monotonic() - failing_since > store.total_timeout:
                raise Unavailable(
                    f"etcd: watch on {prefix!r} keeps failing (endpoints "
                    f"{', '.join(store.endpoints)}); check that etcd has quorum"
                )
            time.sleep(0.2)
        body = {
            "create_request": {
                "key": b64(raw),
                "range_end": b64(prefix_end(raw)),
                "start_revision": str(next_rev),
                "progress_notify": True,
            }
        }
        conn, resp = store.open_stream("/v3/watch", body)
        opened = time.monotonic()
        delivered = False
        try:
            for event in stream_events(resp, prefix, next_rev):
                yield event
                next_rev = max(next_rev, event.revision + 1)
                delivered = True
        finally:
            conn.close()
        # A stream that worked for a while starts a fresh failure window.
        now = time.monotonic()
        if failing_since is None or delivered or now - opened > store.total_timeout:
            failing_since = now


def stream_events(resp: http.client.HTTPResponse, prefix: str, rev: int) -> Iterator[WatchEvent]:
    """The events of one open watch stream (asked for from ``rev``) until it ends — broken,
    canceled or an error message such as "no leader": the caller opens it again.
    ``WatchCompacted`` when ``rev`` was compacted away."""
    import http.client

    while True:
        try:
            line = resp.readline()
        except (OSError, http.client.HTTPException):
            return
        if not line:
            return
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
        except ValueError as exc:
            raise DatastoreError(f"etcd watch sent unreadable data: {exc}") from exc
        if "error" in msg:
            return
        result = msg.get("result") or {}
        compacted = int(result.get("compact_revision", "0") or 0)
        if compacted:
            raise WatchCompacted(
                f"etcd watch on {prefix!r}: revision {rev} was compacted "
                f"(oldest kept: {compacted}); list again and watch from there",
                compacted,
            )
        if result.get("canceled"):
            return
        for ev in result.get("events") or []:
            kv = ev.get("kv") or {}
            deleted = ev.get("type") == "DELETE"
            yield WatchEvent(
                type="DELETE" if deleted else "PUT",
                key=text(kv.get("key", "")),
                value="" if deleted else text(kv.get("value", "")),
                revision=int(kv.get("mod_revision", "0")),
            )


def wait_for_change(
    store: EtcdDatastore, prefixes: tuple[str, ...], after_revision: int, timeout: float
) -> bool:
    """One watch stream from ``after_revision + 1`` over the prefixes' common prefix;
    True at the first event under one of ``prefixes`` (or when the stream breaks or the
    revision was compacted: re-reading is then the safe answer), False at ``timeout``."""
    import http.client

    deadline = time.monotonic() + max(0.0, timeout)
    common = common_prefix(prefixes).encode()
    key, end = (common, prefix_end(common)) if common else (b"\0", b"\0")
    body = {
        "create_request": {
            "key": b64(key),
            "range_end": b64(end),
            "start_revision": str(max(after_revision + 1, 1)),
        }
    }
    conn, resp = store.open_stream("/v3/watch", body)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if conn.sock is not None:
                conn.sock.settimeout(remaining)
            try:
                line = resp.readline()
            except TimeoutError:
                return False
            except (OSError, http.client.HTTPException):
                return True
            if not line:
                return True
            if not line.strip():
                continue
            try:
                result = json.loads(line).get("result") or {}
            except ValueError:
                return True
            if result.get("compact_revision") not in (None, "0", 0) or result.get("canceled"):
                return True
            for ev in result.get("events") or []:
                if text((ev.get("kv") or {}).get("key", "")).startswith(prefixes):
                    return True
    finally:
        conn.close()


class WatchStreams:
    """Long-lived streaming requests (watches) of the etcd client: a part of
    ``EtcdDatastore`` (which inherits it), kept here with the rest of the watch code."""

    # The client's state this part uses (set by EtcdDatastore.__init__).
    _endpoints: tuple[Endpoint, ...]
    _settings: DatastoreSettings
    _preferred: int
    _token: str | None
    _auth_disabled: bool
    _closed: bool
    total_timeout: float
    request_timeout: float

    if TYPE_CHECKING:

        def _ssl_context(self) -> ssl.SSLContext: ...

        def _attempts(self, deadline: float) -> Iterator[Endpoint]: ...

        def _authenticate(self, ep: Endpoint, deadline: float) -> None: ...

        def _headers(self, with_token: bool = True) -> dict[str, str]: ...

    def _stream_connection(self, ep: Endpoint, timeout: float) -> http.client.HTTPConnection:
        import http.client

        if ep.https:
            return http.client.HTTPSConnection(
                ep.host, ep.port, timeout=timeout, context=self._ssl_context()
            )
        return http.client.HTTPConnection(ep.host, ep.port, timeout=timeout)

    def open_stream(
        self, path: str, body: dict[str, Any]
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Start a streaming request (watch) on the first endpoint that takes it."""
        import http.client

        if self._closed:
            raise DatastoreError("etcd datastore used after close()")
        data = json.dumps(body).encode()
        deadline = time.monotonic() + self.total_timeout
        tried: list[str] = []
        reasons: dict[str, str] = {}  # the latest failure of each endpoint, in try order
        s = self._settings
        for ep in self._attempts(deadline):
            if ep.url not in tried:
                tried.append(ep.url)
            timeout = max(0.05, min(self.request_timeout, deadline - time.monotonic()))
            try:
                if s.etcd_username and self._token is None and not self._auth_disabled:
                    self._authenticate(ep, deadline)
            except Failed as failure:
                reasons[ep.url] = failure.reason
                continue
            conn = self._stream_connection(ep, timeout)
            try:
                conn.connect()
                conn.request("POST", path, body=data, headers=self._headers())
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                reasons[ep.url] = describe(exc, timeout, bool(s.etcd_cert_file), ep.https)[0]
                continue
            if resp.status != 200:
                payload = resp.read()
                conn.close()
                try:
                    reply = json.loads(payload)
                except ValueError:
                    reply = {}
                message = str(reply.get("message") or f"HTTP {resp.status}")
                if reply.get("code") == _UNAUTHENTICATED and s.etcd_username:
                    self._token = None
                reasons[ep.url] = message.removeprefix("etcdserver: ")
                continue
            if conn.sock is not None:
                # Wait for events forever, but notice a dead peer through TCP keepalive.
                conn.sock.settimeout(None)
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                for opt, val in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
                    if hasattr(socket, opt):
                        conn.sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), val)
            self._preferred = self._endpoints.index(ep)
            return conn, resp
        raise Unavailable(
            f"etcd: no endpoint answered (tried {', '.join(tried) or 'none'}): "
            f"{summary(reasons)}; check ETCD_ENDPOINTS and that etcd is running"
        )
