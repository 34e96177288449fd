"""Change feeds: list a few key prefixes once, then receive only what changes under them.

This is how the node agent follows the datastore (Kubernetes calls it list-then-watch):
``load()`` lists every prefix and starts following from that point; ``changes(timeout)``
returns the writes under the prefixes since the last call (waiting up to ``timeout`` for
the first one) and nothing about any other key.  Writes elsewhere in the store — other
nodes' handles, endpoints, blocks' contents — never reach the caller.

Backends:

- etcd: one long-lived watch stream per prefix (``etcd_watch.EtcdFeed``), resumed from
  the revision after the last event when it breaks; costs the datastore nothing while
  nothing changes.
- SQLite and memory (``PollingFeed``): the store-wide revision is polled (one indexed
  read of a single row); when it moved, a per-prefix stamp (count and highest revision
  of the keys under it) says which prefixes changed, and only those are listed and
  compared with what the feed knows.

Both may deliver a change twice or one the caller already listed (a write that landed
between the revision read and the list): callers apply changes by key and revision.
``FeedBroken`` means the feed lost its place (an etcd revision compacted away, a stream
that failed for too long): call ``load()`` again.
"""

from __future__ import annotations

import time

from tortie.core.record import record
from tortie.datastore.base import KV, Datastore
from tortie.errors import DatastoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol
else:
    Protocol = object

POLL_SECONDS = 0.2


@record
class Change:
    """One write under a followed prefix: ``value`` None for a deletion."""

    key: str
    value: str | None
    revision: int


class FeedBroken(DatastoreError):
    """The feed cannot go on from where it was: ``load()`` again."""


class Feed(Protocol):
    """A list-then-watch view of a few prefixes of one store (module docstring)."""

    prefixes: tuple[str, ...]

    def load(self) -> list[KV]: ...

    def changes(self, timeout: float) -> list[Change]: ...

    def close(self) -> None: ...


def open_feed(store: Datastore, prefixes: tuple[str, ...]) -> Feed:
    """The best feed the store offers: its own (etcd watches) or revision polling."""
    own: Callable[[tuple[str, ...]], Feed] | None = getattr(store, "open_feed", None)
    if own is not None:
        return own(prefixes)
    return PollingFeed(store, prefixes)


def prefix_stamp(store: Datastore, prefix: str) -> object:
    """Something that changes whenever anything under ``prefix`` is written: the store's
    own cheap stamp when it has one, else the listing itself."""
    stamp: Callable[[str], object] | None = getattr(store, "prefix_stamp", None)
    if stamp is not None:
        return stamp(prefix)
    return tuple((kv.key, kv.revision) for kv in store.list(prefix))


class PollingFeed:
    """Revision polling for stores without watches (SQLite, memory)."""

    def __init__(
        self, store: Datastore, prefixes: tuple[str, ...], poll: float = POLL_SECONDS
    ) -> None:
        self.store = store
        self.prefixes = prefixes
        self.poll = poll
        self._revision = -1
        self._stamps: dict[str, object] = {}
        self._known: dict[str, dict[str, int]] = {}  # prefix -> key -> revision
        self.lists = 0  # prefix listings made (tests and benchmarks read it)

    def load(self) -> list[KV]:
        self._revision = self.store.current_revision()
        out: list[KV] = []
        for prefix in self.prefixes:
            self._stamps[prefix] = prefix_stamp(self.store, prefix)
            kvs = self._list(prefix)
            self._known[prefix] = {kv.key: kv.revision for kv in kvs}
            out.extend(kvs)
        return out

    def _list(self, prefix: str) -> list[KV]:
        self.lists += 1
        return self.store.list(prefix)

    def changes(self, timeout: float) -> list[Change]:
        if self._revision < 0:
            raise FeedBroken("the feed was not loaded")
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            revision = self.store.current_revision()
            if revision != self._revision:
                if revision < self._revision:  # the store was replaced under us
                    raise FeedBroken(
                        f"store revision went back from {self._revision} to {revision}"
                    )
                self._revision = revision
                found = self._diff()
                if found:
                    return found
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            time.sleep(min(self.poll, left))

    def _diff(self) -> list[Change]:
        out: list[Change] = []
        for prefix in self.prefixes:
            stamp = prefix_stamp(self.store, prefix)
            if stamp == self._stamps.get(prefix):
                continue
            self._stamps[prefix] = stamp
            known = self._known.setdefault(prefix, {})
            now = {kv.key: kv for kv in self._list(prefix)}
            for key, kv in now.items():
                if known.get(key) != kv.revision:
                    out.append(Change(key, kv.value, kv.revision))
            gone = [key for key in known if key not in now]
            for key in gone:
                out.append(Change(key, None, self._revision))
            self._known[prefix] = {key: kv.revision for key, kv in now.items()}
        return sorted(out, key=lambda c: c.revision)

    def close(self) -> None:
        self._revision = -1
