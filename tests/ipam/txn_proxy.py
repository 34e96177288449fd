"""A datastore proxy for the batching tests: counts round trips the way etcd sees them
(``get``/``list``: a Range each; ``txn``/``create``/``update``/``delete``: a Txn each),
keeps the largest transaction, and fails one transaction on demand."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from tortie.datastore.base import KV, Datastore, Writes
from tortie.errors import Unavailable


class TxnCountingStore:
    def __init__(self, inner: Datastore, latency: float = 0.0) -> None:
        self.inner = inner
        self.latency = latency  # each round trip takes this long, as on a network
        self._lock = threading.Lock()
        self.gets: Counter[str] = Counter()  # per key
        self.before_txn: Callable[[Writes], None] | None = None  # runs once, then unset
        self.reads = 0
        self.writes = 0  # write round trips: each is one etcd Txn
        self.largest = 0  # most writes in one transaction
        self.failed = 0
        self._fault: tuple[str, Callable[[Writes], bool]] | None = None

    def __getattr__(self, name: str) -> Any:  # SQLite's atomic(), read_only, ...
        return getattr(self.inner, name)

    def reset(self) -> None:
        with self._lock:
            self.reads = self.writes = self.largest = 0
            self.gets.clear()

    def fail_next_txn(self, when: str, matching: Callable[[Writes], bool] = bool) -> None:
        """The next transaction ``matching`` raises ``Unavailable`` once: ``before`` it is
        applied (nothing written) or ``after`` (written, then the error: an etcd timeout
        whose request had been sent)."""
        self._fault = (when, matching)

    def _count(self, reads: int = 0, writes: int = 0) -> None:
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            self.reads += reads
            self.writes += writes

    def get(self, key: str) -> KV | None:
        self._count(reads=1)
        with self._lock:
            self.gets[key] += 1
        return self.inner.get(key)

    def list(self, prefix: str) -> list[KV]:
        self._count(reads=1)
        return self.inner.list(prefix)

    def txn(self, writes: Writes) -> int:
        self._count(writes=1)
        hook, self.before_txn = self.before_txn, None
        if hook is not None:
            hook(writes)
        with self._lock:
            self.largest = max(self.largest, len(writes))
            fault = self._fault if self._fault and self._fault[1](writes) else None
            if fault is not None:
                self._fault = None
                self.failed += 1
        if fault is not None and fault[0] == "before":
            raise Unavailable("etcd: injected failure before the transaction was sent")
        rev = self.inner.txn(writes)
        if fault is not None:
            raise Unavailable("etcd: injected timeout (the transaction may have been applied)")
        return rev

    def create(self, key: str, value: str) -> KV:
        self._count(writes=1)
        return self.inner.create(key, value)

    def update(self, key: str, value: str, revision: int) -> KV:
        self._count(writes=1)
        return self.inner.update(key, value, revision)

    def delete(self, key: str, revision: int | None = None) -> None:
        self._count(writes=1)
        self.inner.delete(key, revision)

    def current_revision(self) -> int:
        return self.inner.current_revision()

    def wait_for_change(
        self, prefixes: tuple[str, ...], after_revision: int, timeout: float
    ) -> bool:
        return self.inner.wait_for_change(prefixes, after_revision, timeout)

    def close(self) -> None:
        self.inner.close()
