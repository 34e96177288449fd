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
* ``txn(writes)`` applies several compare-and-swap writes together or not at all (one
  SQLite transaction, one etcd ``Txn``) and returns the revision they landed at.  A
  ``Write`` with ``revision=0`` creates (the key must be absent), any other revision
  updates or (``value=None``) deletes the key at exactly that revision.  When any compare
  fails nothing is written and ``TxnConflict`` says which keys differ and holds every
  key as it is now, so the caller can plan again without reading.  An etcd transaction
  whose first attempt may have been applied counts as done when every key holds what it
  wrote.
"""

from __future__ import annotations

from tortie.core.record import record
from tortie.errors import RevisionConflict

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


@record
class Write:
    """One compare-and-swap write of a transaction: ``value`` None deletes; ``revision``
    0 means the key must not exist, anything else the revision it must have."""

    key: str
    value: str | None
    revision: int


Writes = list[Write]  # a name for it: ``list`` is a method of every store class


class TxnConflict(RevisionConflict):
    """A compare of a transaction failed: nothing was written.  ``current`` maps every
    key of the transaction to what it holds now (None: absent)."""

    def __init__(self, message: str, current: dict[str, KV | None]) -> None:
        super().__init__(message)
        self.current = current


def conflict_of(writes: list[Write], current: dict[str, KV | None]) -> TxnConflict | None:
    """The conflict of ``writes`` against the keys as they are (None when all compares
    hold); used by every backend so they word it alike."""
    bad = []
    for w in writes:
        cur = current.get(w.key)
        if w.revision == 0 and cur is not None:
            bad.append(f"{w.key} already exists")
        elif w.revision != 0 and cur is None:
            bad.append(f"{w.key} was deleted (expected revision {w.revision})")
        elif w.revision != 0 and cur is not None and cur.revision != w.revision:
            bad.append(f"{w.key} changed (expected revision {w.revision})")
    if not bad:
        return None
    more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
    return TxnConflict(f"transaction not applied: {bad[0]}{more}", current)


def check_writes(writes: list[Write]) -> None:
    """A transaction names each key once (etcd refuses duplicates)."""
    seen: set[str] = set()
    for w in writes:
        if w.key in seen:
            raise ValueError(f"transaction writes {w.key} twice")
        seen.add(w.key)


class Datastore(Protocol):
    """A revisioned key-value store (see module docstring for the contract)."""

    def get(self, key: str) -> KV | None: ...

    def list(self, prefix: str) -> list[KV]: ...

    def create(self, key: str, value: str) -> KV: ...

    def update(self, key: str, value: str, revision: int) -> KV: ...

    def delete(self, key: str, revision: int | None = None) -> None: ...

    def txn(self, writes: Writes) -> int: ...

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
