"""The datastore protocol: a revisioned key-value store with two write primitives.

Every backend (memory, SQLite, etcd) implements exactly this.  Keys are strings in
Calico's etcd layout (see ``tortie.datastore.keys``); values are JSON text.  Revisions
are integers that grow with every write to the store (etcd mod revisions), so a
deleted-and-recreated key never reuses an old revision.

Rules every backend keeps (the contract suite in ``tests/datastore`` checks them):

* ``get`` returns ``None`` for a missing key.
* ``list(prefix)`` returns every key starting with ``prefix``, sorted by key.
* ``create`` raises ``AlreadyExists`` when the key is present.
* ``update`` raises ``RevisionConflict`` when the key is missing or its revision differs.
* ``delete`` raises ``RevisionConflict`` likewise; ``delete`` with ``revision=None``
  deletes whatever is there and raises ``NotFound`` when nothing is.
* Unreachable stores raise ``Unavailable``; nothing else escapes but ``TortieError``s.
* ``current_revision()`` is the store-wide revision now (0 for an empty new store).
* ``wait_for_change(prefixes, after_revision, timeout)`` blocks until a write under one of
  ``prefixes`` with a revision above ``after_revision`` may have happened (True) or
  ``timeout`` seconds passed without one (False).  A spurious True is allowed (SQLite
  reports any write); callers re-read what they care about.  Watchers (the node agent)
  read ``current_revision()``, then their data, then wait from that revision: no change
  can slip between the read and the wait.
"""

from __future__ import annotations

from tortie.core.record import record

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object


@record
class KV:
    """One stored key with its JSON value and the revision of its last write."""

    key: str
    value: str
    revision: int


class Datastore(Protocol):
    """A revisioned key-value store (see module docstring for the contract)."""

    def get(self, key: str) -> KV | None: ...

    def list(self, prefix: str) -> list[KV]: ...

    def create(self, key: str, value: str) -> KV: ...

    def update(self, key: str, value: str, revision: int) -> KV: ...

    def delete(self, key: str, revision: int | None = None) -> None: ...

    def current_revision(self) -> int: ...

    def wait_for_change(
        self, prefixes: tuple[str, ...], after_revision: int, timeout: float
    ) -> bool: ...

    def close(self) -> None: ...


def read_only(store: Datastore) -> bool:
    """Whether the store can only serve reads (SQLite on a read-only file, mount or
    immutable file).  Readers skip optional writes then (``ipam check`` does not create
    the cluster identity); backends without the notion are never read-only."""
    return bool(getattr(store, "read_only", False))
