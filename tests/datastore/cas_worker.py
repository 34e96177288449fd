"""A compare-and-swap counter worker, importable by ``multiprocessing`` spawn children."""

from __future__ import annotations

from tortie.datastore.backends import open_datastore
from tortie.datastore.base import Datastore
from tortie.datastore.config import DatastoreSettings
from tortie.errors import RevisionConflict


def increment(ds: Datastore, key: str, times: int) -> int:
    """Add 1 to the integer at ``key`` ``times`` times; returns how many CAS retries it took."""
    retries = 0
    for _ in range(times):
        while True:
            kv = ds.get(key)
            assert kv is not None
            try:
                ds.update(key, str(int(kv.value) + 1), kv.revision)
                break
            except RevisionConflict:
                retries += 1
    return retries


def increment_in_process(settings: DatastoreSettings, key: str, times: int) -> int:
    ds = open_datastore(settings)
    try:
        return increment(ds, key, times)
    finally:
        ds.close()
