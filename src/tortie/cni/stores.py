"""The node service's datastores: one open connection per datastore the network
configurations name, each with its batching allocator (group commit) and warm blocks."""

from __future__ import annotations

import threading

from tortie.datastore.backends import open_datastore
from tortie.datastore.config import DatastoreSettings
from tortie.ipam.batch import GroupCommit
from tortie.ipam.warm import WarmBlocks

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

    from tortie.datastore.base import Datastore
    from tortie.ipam.allocator import Allocator


def settings_key(s: DatastoreSettings) -> tuple[object, ...]:
    return (
        s.datastore_type,
        s.sqlite_path,
        s.etcd_endpoints,
        s.etcd_ca_cert_file,
        s.etcd_cert_file,
        s.etcd_key_file,
        s.etcd_username,
        s.etcd_password,
    )


class Stores:
    """Open datastores by settings, each with its group commit and warm blocks.  The
    agent's own store is handed in already open; others are opened on first use."""

    def __init__(self, log: logging.Logger | None, warm: bool = True) -> None:
        self.log = log
        self.warm = warm
        self._lock = threading.Lock()
        self._stores: dict[tuple[object, ...], Datastore] = {}
        self._owned: list[Datastore] = []
        self._commits: dict[int, GroupCommit] = {}
        self._warm: list[WarmBlocks] = []

    def add(self, settings: DatastoreSettings, store: Datastore) -> None:
        with self._lock:
            self._stores[settings_key(settings)] = store

    def open(self, settings: DatastoreSettings) -> Datastore:
        key = settings_key(settings)
        with self._lock:
            store = self._stores.get(key)
            if store is None:
                store = open_datastore(settings)
                self._stores[key] = store
                self._owned.append(store)
            return store

    def group_commit(self, store: Datastore) -> GroupCommit:
        with self._lock:
            commit = self._commits.get(id(store))
            if commit is None:
                warm = WarmBlocks(store, self.log) if self.warm else None
                if warm is not None:
                    self._warm.append(warm)
                commit = GroupCommit(store, warm.note if warm else None)
                self._commits[id(store)] = commit
            return commit

    def allocator(self, store: Datastore) -> Allocator:
        """The store's batching allocator (an ``AllocatorFor`` for the CNI edge)."""
        return self.group_commit(store)

    def close(self) -> None:
        """Wait for the warm-block claims under way, then close the stores opened here
        (the caller closes the ones it added, after this).  Call it only when no call
        runs any more (``CniService.stop`` says so)."""
        with self._lock:
            owned, self._owned = self._owned, []
            warm, self._warm = self._warm, []
            self._stores.clear()
        for keeper in warm:
            keeper.close()
        for store in owned:
            store.close()
