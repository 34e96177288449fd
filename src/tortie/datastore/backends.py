"""Open the datastore that settings name.  Backends are imported only when used, so the
CNI plugins load only the one they talk to."""

from __future__ import annotations

from tortie.datastore.base import Datastore
from tortie.datastore.config import DatastoreSettings, default_sqlite_path


def open_datastore(settings: DatastoreSettings, *, reading: bool = False) -> Datastore:
    """Open the datastore the settings name.

    ``reading``: the caller only reads (``get``, ``ipam show``, ``ipam check``, export).
    Then a SQLite path given explicitly (SQLITE_PATH, ``sqlitePath``) whose directory
    does not exist is an error naming the path, while the default path (and a new file
    in an existing directory) reads as an empty store: a fresh machine has no pools yet,
    a mistyped directory should not look like one.
    """
    if settings.datastore_type == "memory":
        from tortie.datastore.memory import MemoryDatastore

        return MemoryDatastore()
    if settings.datastore_type == "etcdv3":
        from tortie.datastore.etcd import EtcdDatastore

        return EtcdDatastore(settings)
    from tortie.datastore.sqlite import SqliteDatastore

    path = settings.sqlite_path or default_sqlite_path()
    return SqliteDatastore(path, reading=reading, default_path=not settings.sqlite_path)
