"""In-memory datastore for unit tests: the reference behaviour of the protocol."""

from __future__ import annotations

import threading

from tortie.datastore.base import KV
from tortie.errors import AlreadyExists, NotFound, RevisionConflict


class MemoryDatastore:
    """A dict with a global revision counter; thread-safe."""

    def __init__(self) -> None:
        self._data: dict[str, KV] = {}
        self._revision = 0
        self._lock = threading.Lock()

    def _next(self) -> int:
        self._revision += 1
        return self._revision

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
            kv = KV(key, value, self._next())
            self._data[key] = kv
            return kv

    def update(self, key: str, value: str, revision: int) -> KV:
        with self._lock:
            cur = self._data.get(key)
            if cur is None or cur.revision != revision:
                raise RevisionConflict(f"{key} changed (expected revision {revision})")
            kv = KV(key, value, self._next())
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
            self._next()

    def close(self) -> None:
        pass
