"""The change feed on etcd (``tortie.datastore.feed``): one long-lived watch stream per
prefix, each in its own thread, all feeding one queue.

A stream that breaks (endpoint gone, leader change, connection reset) is opened again on
any endpoint, resuming at the revision after the last event it delivered, so nothing is
missed and nothing is listed again.  Only two things end a stream and reach the caller:
the revision it needs was compacted (``FeedBroken``: list again) and no endpoint taking
the watch for ``total_timeout`` (``Unavailable``).  While nothing changes the streams
cost etcd nothing but an open connection.
"""

from __future__ import annotations

import contextlib
import http.client
import queue
import socket
import threading
import time

from tortie.datastore.etcd_support import WatchCompacted, b64, prefix_end
from tortie.datastore.etcd_watch import stream_events
from tortie.datastore.feed import Change, FeedBroken
from tortie.errors import TortieError, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tortie.datastore.base import KV
    from tortie.datastore.etcd import EtcdDatastore

# What a stream thread hands the reader: its generation and a change or a failure.
_Item = tuple[int, "Change | TortieError"]


class EtcdFeed:
    def __init__(self, store: EtcdDatastore, prefixes: tuple[str, ...]) -> None:
        self.store = store
        self.prefixes = prefixes
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._generation = 0
        self._stop = threading.Event()
        self._conns: set[http.client.HTTPConnection] = set()
        self._threads: list[threading.Thread] = []
        self.streams_opened = 0  # tests and benchmarks read it

    def load(self) -> list[KV]:
        """List every prefix and (re)start the streams just after what was listed."""
        self._stop_streams()
        revision = self.store.current_revision()
        out = [kv for prefix in self.prefixes for kv in self.store.list(prefix)]
        with self._lock:
            self._generation += 1
            self._stop = threading.Event()
            for prefix in self.prefixes:
                thread = threading.Thread(
                    target=self._follow,
                    args=(self._generation, self._stop, prefix, revision + 1),
                    name=f"etcd-watch {prefix}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()
        return out

    def changes(self, timeout: float) -> list[Change]:
        out: list[Change] = []
        try:
            item = self._queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return out
        while True:
            generation, what = item
            if generation == self._generation:
                if isinstance(what, Change):
                    out.append(what)
                else:
                    raise what
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return out

    def close(self) -> None:
        self._stop_streams()

    def _stop_streams(self) -> None:
        with self._lock:
            self._stop.set()
            conns, threads = list(self._conns), self._threads
            self._threads = []
        for conn in conns:
            if conn.sock is not None:
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=5)

    def _follow(self, generation: int, stop: threading.Event, prefix: str, rev: int) -> None:
        """One prefix's stream until ``stop``; failures that end it go to the queue."""
        failing_since: float | None = None
        while not stop.is_set():
            if failing_since is not None:
                if time.monotonic() - failing_since > self.store.total_timeout:
                    self._queue.put(
                        (
                            generation,
                            Unavailable(
                                f"etcd: the watch on {prefix!r} keeps failing (endpoints "
                                f"{', '.join(self.store.endpoints)}); check that etcd has "
                                "quorum"
                            ),
                        )
                    )
                    return
                stop.wait(0.2)
            opened = time.monotonic()
            try:
                rev, delivered = self._stream(generation, stop, prefix, rev)
            except TortieError as exc:
                if not stop.is_set():
                    self._queue.put((generation, exc))
                return
            # A stream that worked (events, or open for a while) starts a new window.
            now = time.monotonic()
            if failing_since is None or delivered or now - opened > self.store.total_timeout:
                failing_since = now

    def _stream(
        self, generation: int, stop: threading.Event, prefix: str, rev: int
    ) -> tuple[int, bool]:
        """Open one stream from ``rev`` and read it until it ends; the next revision to
        ask for and whether any event came."""
        raw = prefix.encode()
        body = {
            "create_request": {
                "key": b64(raw),
                "range_end": b64(prefix_end(raw)),
                "start_revision": str(rev),
            }
        }
        conn, resp = self.store.open_stream("/v3/watch", body)
        with self._lock:
            if stop.is_set():
                conn.close()
                return rev, False
            self._conns.add(conn)
            self.streams_opened += 1
        delivered = False
        try:
            for event in stream_events(resp, prefix, rev):
                if stop.is_set():
                    break
                value = None if event.type == "DELETE" else event.value
                self._queue.put((generation, Change(event.key, value, event.revision)))
                rev = max(rev, event.revision + 1)
                delivered = True
        except WatchCompacted as exc:
            raise FeedBroken(str(exc)) from None
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()
        return rev, delivered
