"""In-memory datastore for unit tests: the reference behaviour of the protocol."""

from __future__ import annotations

import threading

from tortie.datastore.base import KV, Writes, check_writes, conflict_of
from tortie.errors import AlreadyExists, NotFound, RevisionConflict


class MemoryDatastore:
    """A dict with a global revision counter; thread-safe."""

    def __init__(self) -> None:
        self._data: dict[str, KV] = {}
        self._revision = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._touched: dict[str, int] = {}  # key -> revision of its last write or delete

    def _next(self, key: str) -> int:
        self._revision += 1
        self._touched[key] = self._revision
        self._changed.notify_all()
        return self._revision

    def current_revision(self) -> int:
        with self._lock:
            return self._revision

    def wait_for_change(
        self, prefixes: tuple[str, ...], after_revision: int, timeout: float
    ) -> bool:
        def changed() -> bool:
            return any(
                rev > after_revision and key.startswith(prefixes)
                for key, rev in self._touched.items()
            )

        with self._changed:
            return self._changed.wait_for(changed, timeout=max(0.0, timeout))

    def prefix_stamp(self, prefix: str) -> tuple[int, int]:
        """Count and highest revision of the keys under ``prefix`` (see SQLite's)."""
        with self._lock:
            revs = [kv.revision for k, kv in self._data.items() if k.startswith(prefix)]
            return len(revs), max(revs, default=0)

    def get(self, key: str) -> KV | None:
        with self._lock:
            return self._data.get(key)

    def list(self, prefix: str) -> list[KV]:
        with self._lock:
            return [kv for k, kv in sorted(self._data.items()) if k.startswith(prefix)]

    def create(self, key: str, value: str) -> KV:
        with self._lock:
            if key in self._data:
                raise AlreadyExists(f"{key} already exists")
            kv = KV(key, value, self._next(key))
            self._data[key] = kv
            return kv

    def update(self, key: str, value: str, revision: int) -> KV:
        with self._lock:
            cur = self._data.get(key)
            if cur is None or cur.revision != revision:
                raise RevisionConflict(f"{key} changed (expected revision {revision})")
            kv = KV(key, value, self._next(key))
            self._data[key] = kv
            return kv

    def delete(self, key: str, revision: int | None = None) -> None:
        with self._lock:
            cur = self._data.get(key)
            if cur is None:
                if revision is None:
                    raise NotFound(f"{key} does not exist")
                raise RevisionConflict(f"{key} was already deleted")
            if revision is not None and cur.revision != revision:
                raise RevisionConflict(f"{key} changed (expected revision {revision})")
            del self._data[key]
            self._next(key)

    def txn(self, writes: Writes) -> int:
        check_writes(writes)
        with self._lock:
            current = {w.key: self._data.get(w.key) for w in writes}
            conflict = conflict_of(writes, current)
            if conflict is not None:
                raise conflict
            if not writes:
                return self._revision
            self._revision += 1
            for w in writes:
                self._touched[w.key] = self._revision
                if w.value is None:
                    del self._data[w.key]
                else:
                    self._data[w.key] = KV(w.key, w.value, self._revision)
            self._changed.notify_all()
            return self._revision

    def close(self) -> None:
        pass
